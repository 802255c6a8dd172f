"""Stage 0, admit: a ModelApp may only name the images the operator allows (its defaults and the patterns a
platform team configured). Creating a ModelApp must not be a way to run any image with the namespace's
Secrets (the build's push Secret, the store's)."""

from __future__ import annotations

from fnmatch import fnmatchcase

from modelapp_operator.draft import Context, Draft
from modelapp_operator.names import Reason
from modelapp_operator.snapshot import Stalled

# (spec field, operator setting that widens it)
_SERVE = ("serve.image", "allowedServeImages")
_BASE = ("build.baseImage", "allowedBaseImages")
_KANIKO = ("build.kanikoImage", "allowedKanikoImages")


def admit(ctx: Context, d: Draft) -> Draft:
    spec, images = ctx.obs.spec, ctx.images
    checks = [(_SERVE, spec.image, images.scorer, images.allowed.serve)]
    if spec.build is not None:
        checks += [
            (_BASE, spec.build.base_image, images.base, images.allowed.base),
            (_KANIKO, spec.build.kaniko_image, images.kaniko, images.allowed.kaniko),
        ]
    refused = [
        _refusal(field, setting, image, default, patterns)
        for (field, setting), image, default, patterns in checks
        if image and image != default and not any(fnmatchcase(image, p) for p in patterns)
    ]
    if not refused:
        return d
    return d.replace(refused=Stalled(Reason.IMAGE_NOT_ALLOWED, "; ".join(refused)))


def _refusal(field: str, setting: str, image: str, default: str, patterns: tuple[str, ...]) -> str:
    allowed = ", ".join([default, *patterns])
    return (
        f"spec.{field} {image} is not allowed by this operator (allowed: {allowed}); nothing is built or rolled "
        f"with it. A platform admin can allow it with the chart value {setting}"
    )
