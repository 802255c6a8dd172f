"""The model bundle format, defined once for `modelapp publish/fetch`, the operator and the scorer.

A bundle is a folder: ``model.onnx``, optional ``contract.json``, any other files, and ``modelapp.json``
(the manifest), written last. The rules, whoever reads or writes:

- every file is listed with its sha256 and size; the bundle digest is the sha256 of one
  ``"<path> <sha256>\\n"`` line per file, paths sorted; verifying a folder checks the presence, sha256 and
  size of every listed file (``verify_files``), so publish, fetch and the scorer refuse the same bundles;
- names and versions are one path segment; file paths are relative, without ``..``, never the manifest;
- ``preprocess`` is the typed ``Preprocess`` block: a block the scorer would refuse is refused when the
  manifest is built, i.e. at ``modelapp publish``, with the same message (checks that need the model,
  such as its input's shape, still happen when the scorer loads it);
- ``created`` is written in UTC, to the second, and a writer refuses a time without a timezone; a manifest
  written by hand without one (older ones may be) is read as UTC rather than refused;
- versions order by SemVer precedence (``1.0.0-rc.1`` before ``1.0.0``), see ``versions``;
- unknown manifest keys are kept, so a newer publisher does not break an older reader.

Only pydantic, orjson and the standard library are imported here: the scorer image installs neither the
Kubernetes nor the Azure client, and the operator's pure core imports this package.
"""

from __future__ import annotations

from modelapp_bundle.discovery import Bundle, discover, is_bundle, read_bundle, verify_bundle
from modelapp_bundle.folder import (
    manifest_for_directory,
    read_manifest_template,
    scan_bundle,
    verify_files,
    write_manifest,
)
from modelapp_bundle.hashing import (
    FileEntry,
    Sha256Stream,
    bundle_digest,
    check_entry,
    sha256_bytes,
    sha256_file,
)
from modelapp_bundle.image import DOCKERIGNORE, render_dockerfile
from modelapp_bundle.layout import (
    CONTRACT_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    SCHEMA_VERSION,
    BundleError,
    ChecksumMismatch,
    ManifestError,
    validate_bundle_path,
    validate_segment,
)
from modelapp_bundle.manifest import Batching, Manifest, Preprocess, build_manifest
from modelapp_bundle.versions import SemVer, newest_first

__all__ = [
    "CONTRACT_FILE",
    "DOCKERIGNORE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "SCHEMA_VERSION",
    "Batching",
    "Bundle",
    "BundleError",
    "ChecksumMismatch",
    "FileEntry",
    "Manifest",
    "ManifestError",
    "Preprocess",
    "SemVer",
    "Sha256Stream",
    "build_manifest",
    "bundle_digest",
    "check_entry",
    "discover",
    "is_bundle",
    "manifest_for_directory",
    "newest_first",
    "read_bundle",
    "read_manifest_template",
    "render_dockerfile",
    "scan_bundle",
    "sha256_bytes",
    "sha256_file",
    "validate_bundle_path",
    "validate_segment",
    "verify_bundle",
    "verify_files",
    "write_manifest",
]
