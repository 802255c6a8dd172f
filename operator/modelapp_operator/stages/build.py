"""Stage 4, build: Image packaging bakes the candidate into an image with a Kaniko Job (InitContainer
packaging needs no build: the scorer image is the target)."""

from __future__ import annotations

import re

from modelapp_operator import builders
from modelapp_operator.conditions import Condition
from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Cond, Reason
from modelapp_operator.snapshot import ManifestInfo, SourceState, Stalled, Target
from modelapp_operator.stages.jobs import BUILD, await_job, fail, finished, pod_rejected, tail
from modelapp_operator.status import ImageRecord

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def image_packaging(ctx: Context) -> bool:
    """The model is baked into the serving image (built here, or taken from a followed ModelApp)."""
    return ctx.obs.spec.packaging == "Image"


def build(ctx: Context, d: Draft) -> Draft:
    info, spec = d.candidate, ctx.obs.spec
    if info is None:
        return d
    if d.refused is not None:
        return d.replace(candidate=None)
    if not image_packaging(ctx):
        return d.replace(target=Target(info.version, info.sha256, spec.image or ctx.images.scorer))
    source = ctx.obs.source
    if source is not None and source.bakes:
        return _from_source(d, info, source)
    if spec.build is None or spec.source is None:
        assert source is not None  # the CRD: packaging Image without build only when following
        why = (
            f"ModelApp {source.key} does not bake images (packaging InitContainer), so there is no image to "
            "take: set spec.build and model.source to build one here, or use packaging: InitContainer"
        )
        return d.replace(candidate=None, stalled=Stalled(Reason.SOURCE_IMAGE_MISSING, why)).condition(
            Condition(Cond.IMAGE_BUILT, "False", Reason.SOURCE_IMAGE_MISSING, why)
        )
    bh = builders.build_hash(spec, ctx.images, info.version, info.sha256, d.status.attempt(info.version))
    built = (d.status.images or {}).get(bh)
    if built is not None and built.failed:
        # This exact build (or its contract test) already failed for the serving version: do not
        # loop on it; a change to the build settings (a new hash) tries again.
        cond, reason = (
            (Cond.VERIFIED, Reason.CONTRACT_FAILED)
            if built.image
            else (Cond.IMAGE_BUILT, Reason.BUILD_FAILED)
        )
        return d.replace(candidate=None).condition(Condition(cond, "False", reason, built.message or ""))
    if built is None:
        d = _run_build(ctx, d, info, bh)
        built = (d.status.images or {}).get(bh)
        if built is None or built.failed:
            return d.replace(candidate=None)
    note = " (by tag: the build reported no digest)" if built.by_tag else ""
    d = d.replace(image=built, build_hash=bh)
    return d.condition(Condition(Cond.IMAGE_BUILT, "True", Reason.BUILT, f"{built.image}{note}"))


def _from_source(d: Draft, info: ManifestInfo, source: SourceState) -> Draft:
    """Build once, promote the same artifact: the image the followed ModelApp built and verified, by digest."""
    serving = source.serving
    assert serving is not None  # the followed view holds only the version it serves
    note = " (by tag: its build reported no digest)" if serving.image_by_tag else ""
    message = f"{serving.image}{note}, built and contract-tested by ModelApp {source.key}"
    d = d.replace(target=Target(info.version, info.sha256, serving.image, baked=True))
    d = d.condition(Condition(Cond.IMAGE_BUILT, "True", Reason.FROM_SOURCE, message))
    return d.condition(Condition(Cond.VERIFIED, "True", Reason.FROM_SOURCE, message))


def source_url(ctx: Context, version: str) -> str:
    src = ctx.obs.spec.store
    prefix = src.prefix.strip("/")
    return f"{src.account_url}/{src.container}/{prefix + '/' if prefix else ''}{version}/"


def _run_build(ctx: Context, d: Draft, info: ManifestInfo, bh: str) -> Draft:
    """The build Job of ``info``; once it succeeded, its image is in ``status.images[bh]``."""
    obs, attempt = ctx.obs, d.status.attempt(info.version)
    job = builders.build_job(
        obs.app, obs.spec, ctx.images, info.version, info.sha256, source_url(ctx, info.version), attempt
    )
    name = job["metadata"]["name"]
    state = obs.jobs.get(name)
    if state is None or not finished(state):
        return await_job(ctx, d, BUILD, info, job, f"building {info.version} in Job {name}")
    if state.failed and state.rejected:
        # The deadline passed with every pod refused: nothing was built and the model is not at
        # fault, so a new attempt (a new Job) waits for the namespace to admit its pod.
        d = d.replace(status=d.status.with_attempt(info.version, attempt + 1))
        return pod_rejected(ctx, d, BUILD, info, name, state.rejected, expired=True)
    if state.failed:
        msg = f"build Job {name} of {info.version} failed: {tail(state)}"
        d = d.observe("build_failures", 1.0)
        failed = ImageRecord(version=info.version, failed=True, message=msg)
        remembered = d.replace(status=d.status.with_image(bh, failed)) if serves(d, info) else None
        return fail(ctx, d, BUILD, info, msg, remembered)
    return _built(ctx, d, info, bh, state.message.strip())


def serves(d: Draft, info: ManifestInfo) -> bool:
    """The version serves already (built with other settings)."""
    return d.status.serving_version is not None and d.status.serving_version.version == info.version


def _built(ctx: Context, d: Draft, info: ManifestInfo, bh: str, digest: str) -> Draft:
    by_tag = _DIGEST.fullmatch(digest) is None
    assert ctx.obs.spec.build is not None
    destination = ctx.obs.spec.build.destination
    tag = builders.image_tag(info.version, info.sha256)
    image = f"{destination}:{tag}" if by_tag else f"{destination}@{digest}"
    record = ImageRecord(version=info.version, image=image, by_tag=by_tag, verified=False)
    d = d.replace(status=d.status.with_image(bh, record))
    took = d.pending_seconds(ctx)
    d = d.record(ctx, Reason.BUILT, info.version, image=image, duration=took)
    if took is not None:
        d = d.observe("build_seconds", took)
    return d.emit("Normal", Reason.BUILT, f"built {image} for model version {info.version}")
