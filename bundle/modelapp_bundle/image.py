"""The Dockerfile that bakes a fetched bundle into the scorer's image, where the scorer finds it."""

from __future__ import annotations

import json
from typing import Final

from modelapp_bundle.layout import validate_segment

DOCKERIGNORE: Final = "Dockerfile\n.dockerignore\n"
"""Written next to the Dockerfile so ``COPY .`` copies the bundle only."""


def _label_value(value: str) -> str:
    if any(c in value for c in "\r\n"):
        raise ValueError(f"label value {value!r} must be a single line")
    # JSON string quoting is valid Dockerfile quoting; "$" is escaped so the builder does not expand it.
    return json.dumps(value).replace("$", "\\$")


def render_dockerfile(base_image: str, bundle_name: str, version: str, sha256: str, source: str) -> str:
    """Dockerfile baking a fetched bundle (the build context) into ``base_image`` at ``/models/<name>``."""
    validate_segment(bundle_name, "bundle name")
    if not base_image or any(c.isspace() for c in base_image):
        raise ValueError(f"invalid base image {base_image!r}")
    labels = {
        "org.opencontainers.image.title": bundle_name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.source": source,
        "org.opencontainers.image.base.name": base_image,
        "dev.modelapp.model.name": bundle_name,
        "dev.modelapp.model.version": version,
        "dev.modelapp.model.sha256": sha256,
        "dev.modelapp.model.source": source,
    }
    label_lines = " \\\n      ".join(f"{key}={_label_value(value)}" for key, value in labels.items())
    return f"FROM {base_image}\nCOPY . /models/{bundle_name}\nLABEL {label_lines}\n"
