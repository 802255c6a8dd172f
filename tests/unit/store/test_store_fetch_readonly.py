"""`modelapp fetch` as the fetch init containers run it: uid 10001, a read-only root filesystem, no writable
HOME, cwd or TMPDIR; only --out (an emptyDir) is writable."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from modelapp_bundle import manifest_for_directory
from modelapp_operator.cli import CliSettings, main, store_commands
from modelapp_operator.store import InMemoryStore

pytestmark = pytest.mark.unit

FETCH_UID = 10001  # the images' user (builders.RUN_AS)


@pytest.fixture
def read_only_root() -> Iterator[tuple[Path, Path]]:
    """(a read-only directory standing in for `/`, a writable `workspace` emptyDir inside it).

    Not under pytest's tmp_path, whose parents only root may enter: as root the test drops to the
    fetch user, for whom mode bits count."""
    base = Path(tempfile.mkdtemp(prefix="modelapp-ro-"))
    base.chmod(0o755)
    root = base / "root"
    workspace = root / "workspace"
    workspace.mkdir(parents=True)
    if os.geteuid() == 0:
        os.chown(workspace, FETCH_UID, FETCH_UID)
    root.chmod(0o555)
    try:
        yield root, workspace
    finally:
        root.chmod(0o755)
        import shutil

        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def as_fetch_user(warm_up: Callable[[], object]) -> Iterator[None]:
    """Run as the fetch container's user when the tests run as root (root ignores mode bits).
    ``warm_up`` runs first, as root, so that lazy imports find their files (the interpreter may live
    where only root can read)."""
    if os.geteuid() != 0:
        yield
        return
    warm_up()
    os.seteuid(FETCH_UID)
    try:
        yield
    finally:
        os.seteuid(0)


def test_fetch_writes_nothing_outside_out_even_with_no_writable_home_cwd_or_tmp(
    read_only_root: tuple[Path, Path],
    bundle_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, workspace = read_only_root
    store = InMemoryStore()
    manifest = manifest_for_directory(bundle_dir, version="1.0")
    asyncio.run(store.upload_version("diabetes/", bundle_dir, manifest))
    monkeypatch.setattr(store_commands, "open_store", lambda args, settings: (store, "diabetes/"))
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", str(root))  # what TMPDIR would give, read-only

    argv = ["fetch", "--version", "1.0", "--dockerfile", "--base-image", "scorer:1", "--out"]
    with as_fetch_user(lambda: main([*argv, str(tmp_path / "warm-up")], settings=CliSettings())):
        code = main([*argv, str(workspace)], settings=CliSettings())

    assert code == 0
    names = sorted(p.relative_to(workspace).as_posix() for p in workspace.rglob("*"))
    assert names == [
        ".dockerignore",
        "Dockerfile",
        "contract.json",
        "extra",
        "extra/vocab.txt",
        "model.onnx",
        "modelapp.json",
    ]
    assert sorted(p.name for p in root.iterdir()) == ["workspace"]
