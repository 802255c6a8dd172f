"""A bundle folder on disk: scan it, build its manifest (from a local template when publishing), write
the manifest last, and verify the files against it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from modelapp_bundle.hashing import FileEntry, check_entry, sha256_file
from modelapp_bundle.layout import (
    CONTRACT_FILE,
    MANIFEST_FILE,
    MANIFEST_TMP,
    MODEL_FILE,
    BundleError,
    ChecksumMismatch,
    ManifestError,
    validate_bundle_path,
)
from modelapp_bundle.manifest import Batching, Manifest, Preprocess, build_manifest


def scan_bundle(directory: Path) -> dict[str, FileEntry]:
    """Digest every regular file under ``directory`` except the manifest itself (and its temporary file)."""
    if not directory.is_dir():
        raise BundleError(f"{directory} is not a directory")
    files: dict[str, FileEntry] = {}
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(directory).as_posix()
        if rel in (MANIFEST_FILE, MANIFEST_TMP):
            continue
        files[validate_bundle_path(rel)] = sha256_file(path)
    if MODEL_FILE not in files:
        raise BundleError(f"{directory} has no {MODEL_FILE}")
    return files


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Raise ChecksumMismatch for the first listed file under ``directory`` that is missing or differs in
    sha256 or size."""
    for path, entry in sorted(manifest.files.items()):
        local = directory / path
        if not local.is_file():
            raise ChecksumMismatch(path, entry.sha256, "missing")
        check_entry(path, entry, sha256_file(local))


def write_manifest(
    bundle_dir: Path,
    name: str,
    version: str,
    *,
    metrics: Mapping[str, float] | None = None,
    labels: list[str] | None = None,
    preprocess: Preprocess | Mapping[str, Any] | None = None,
    contract: str | None = None,
    created: datetime | None = None,
    batching: Batching | Mapping[str, Any] | None = None,
) -> Manifest:
    """Hash every file in ``bundle_dir`` and write its ``modelapp.json``, last and atomically, so a reader
    that waits for the manifest never sees a half-written bundle."""
    manifest = build_manifest(
        scan_bundle(bundle_dir),
        name=name,
        version=version,
        created=created or datetime.now(UTC),
        metrics=metrics,
        labels=labels,
        preprocess=preprocess,
        contract=contract,
        batching=batching,
    )
    tmp = bundle_dir / MANIFEST_TMP
    tmp.write_bytes(manifest.to_json())
    tmp.replace(bundle_dir / MANIFEST_FILE)
    return manifest


def read_manifest_template(directory: Path) -> dict[str, Any]:
    """The local ``modelapp.json`` of a bundle being published, if any: only its descriptive fields matter."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path} must be a JSON object")
    return raw


def manifest_for_directory(
    directory: Path,
    *,
    version: str,
    name: str | None = None,
    metrics: Mapping[str, float] | None = None,
    created: datetime | None = None,
) -> Manifest:
    """Build the manifest to publish ``directory`` as ``version``.

    Labels, preprocess, batching, contract and metrics come from a local modelapp.json if present (files, digests,
    version and created are always recomputed); ``metrics`` overrides or adds to its metrics. The name
    defaults to the local manifest's, then to the directory name; the contract to contract.json if present.
    """
    template = read_manifest_template(directory)
    files = scan_bundle(directory)
    template_metrics = template.get("metrics") or {}
    if not isinstance(template_metrics, dict):
        raise ManifestError("metrics in the local modelapp.json must be an object")
    contract = template.get("contract")
    if contract is None and CONTRACT_FILE in files:
        contract = CONTRACT_FILE
    return build_manifest(
        files,
        name=name or template.get("name") or directory.resolve().name,
        version=version,
        created=created or datetime.now(UTC),
        metrics={**template_metrics, **(metrics or {})},
        labels=template.get("labels"),
        preprocess=template.get("preprocess"),
        contract=contract,
        batching=template.get("batching"),
    )
