"""A model directory as the scorer serves it: which folders are bundles, and each one read and verified."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from modelapp_bundle.folder import verify_files
from modelapp_bundle.layout import CONTRACT_FILE, MANIFEST_FILE, MODEL_FILE, BundleError
from modelapp_bundle.manifest import Manifest


class Bundle(BaseModel):
    """A bundle found on disk (verification happens in ``verify_bundle``)."""

    model_config = ConfigDict(frozen=True)

    path: Path
    name: str
    version: str
    manifest: Manifest | None = None

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def contract_path(self) -> Path | None:
        if self.manifest is not None and self.manifest.contract:
            return self.path / self.manifest.contract
        default = self.path / CONTRACT_FILE
        return default if default.is_file() else None


def is_bundle(path: Path) -> bool:
    return (path / MODEL_FILE).is_file() or (path / MANIFEST_FILE).is_file()


def discover(model_dir: Path) -> list[Path]:
    """``model_dir`` itself if it is a bundle, else its immediate sub-folders that are bundles."""
    if not model_dir.is_dir():
        raise BundleError(f"model directory {model_dir} does not exist")
    if is_bundle(model_dir):
        return [model_dir]
    return sorted(p for p in model_dir.iterdir() if p.is_dir() and is_bundle(p))


def read_bundle(path: Path) -> Bundle:
    """Parse the manifest if present (no hashing yet); a bare model.onnx is ``<folder>`` version 1."""
    manifest_path = path / MANIFEST_FILE
    if not manifest_path.is_file():
        return Bundle(path=path, name=path.resolve().name, version="1")
    try:
        manifest = Manifest.parse(manifest_path.read_bytes())
    except BundleError as exc:
        raise BundleError(f"{manifest_path}: {exc}") from None
    return Bundle(path=path, name=manifest.name, version=manifest.version, manifest=manifest)


def verify_bundle(bundle: Bundle) -> None:
    """Check the model is there and every listed file's sha256 and size; raise BundleError naming the folder."""
    if not bundle.model_path.is_file():
        raise BundleError(f"{bundle.path}: {MODEL_FILE} is missing")
    if bundle.manifest is None:
        return
    try:
        verify_files(bundle.path, bundle.manifest)
    except BundleError as exc:
        raise BundleError(f"{bundle.path}: {exc}") from None
