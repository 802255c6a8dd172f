"""Stage 5, verify: the contract-test Job runs the new image's `scoring-service smoke` before any traffic."""

from __future__ import annotations

from dataclasses import replace

from modelapp_operator import builders
from modelapp_operator.conditions import Condition
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Cond, Reason
from modelapp_operator.snapshot import ManifestInfo, Target
from modelapp_operator.stages.build import serves
from modelapp_operator.stages.jobs import VERIFY, await_job, fail, finished, pod_rejected, tail
from modelapp_operator.status import ImageRecord


def verify(ctx: Context, d: Draft) -> Draft:
    info, built, bh = d.candidate, d.image, d.build_hash
    if info is None or built is None or bh is None or not built.image:
        return d
    image = built.image
    target = Target(info.version, info.sha256, image, baked=True)
    if not ctx.obs.spec.contract_test:
        skipped = Condition(Cond.VERIFIED, "True", Reason.SKIPPED, "rollout.contractTest is false")
        return d.replace(target=target).condition(skipped)
    passed = Condition(Cond.VERIFIED, "True", Reason.CONTRACT_PASSED, f"{image} passed its contract test")
    if built.verified:
        return d.replace(target=target).condition(passed)
    d = _run_verify(ctx, d, info, bh, built, image)
    if (d.status.images or {}).get(bh, built).verified:
        return d.replace(target=target).condition(passed)
    return d.replace(candidate=None)


def _update(d: Draft, bh: str, record: ImageRecord) -> Draft:
    return d.replace(status=d.status.with_image(bh, record), image=record)


def _run_verify(ctx: Context, d: Draft, info: ManifestInfo, bh: str, built: ImageRecord, image: str) -> Draft:
    """The contract-test Job of ``image``; once it passed, ``status.images[bh]`` says it is verified."""
    obs, attempt = ctx.obs, d.status.attempt(info.version)
    retry = built.verify_retry or 0
    job = builders.verify_job(obs.app, obs.spec, image, info.version, info.sha256, attempt, retry)
    name = job["metadata"]["name"]
    state = obs.jobs.get(name)
    if state is None or not finished(state):
        return await_job(ctx, d, VERIFY, info, job, f"contract test of {image} in Job {name}", image=image)
    if state.failed and state.rejected:
        d = _update(d, bh, replace(built, verify_retry=retry + 1))  # as for a build: a new Job, no verdict
        return pod_rejected(ctx, d, VERIFY, info, name, state.rejected, expired=True, image=image)
    if state.failed:
        msg = f"contract test of {info.version} ({image}) failed: {tail(state)}"
        remembered = _update(d, bh, replace(built, failed=True, message=msg)) if serves(d, info) else None
        return fail(ctx, d, VERIFY, info, msg, remembered, image=image)
    d = _update(d, bh, replace(built, verified=True))
    took = d.pending_seconds(ctx)
    d = d.record(ctx, Reason.VERIFIED, info.version, image=image, duration=took)
    if took is not None:
        d = d.observe("verify_seconds", took)
    return d.emit(
        "Normal", Reason.VERIFIED, f"{image} passed the contract test of model version {info.version}"
    )
