"""The Dockerfile rendered for the image build context."""

from __future__ import annotations

import pytest
from modelapp_bundle import DOCKERIGNORE, ManifestError, render_dockerfile

pytestmark = pytest.mark.unit

SHA = "ab" * 32


def test_dockerfile_bakes_the_bundle_with_oci_labels() -> None:
    text = render_dockerfile(
        "reg.example/scorer:1.0", "diabetes", "1.2.0", SHA, "https://acct/models/d/1.2.0/"
    )
    lines = text.splitlines()
    assert lines[0] == "FROM reg.example/scorer:1.0"
    assert lines[1] == "COPY . /models/diabetes"
    for label in (
        'org.opencontainers.image.title="diabetes"',
        'org.opencontainers.image.version="1.2.0"',
        'org.opencontainers.image.source="https://acct/models/d/1.2.0/"',
        'dev.modelapp.model.version="1.2.0"',
        f'dev.modelapp.model.sha256="{SHA}"',
        'dev.modelapp.model.source="https://acct/models/d/1.2.0/"',
    ):
        assert label in text
    # Same inputs, same bytes: the build Job name is a hash of what it builds.
    assert text == render_dockerfile(
        "reg.example/scorer:1.0", "diabetes", "1.2.0", SHA, "https://acct/models/d/1.2.0/"
    )


def test_label_values_are_quoted_and_not_expanded() -> None:
    text = render_dockerfile("base", "m", "1", SHA, 'https://x/$HOME/"q"')
    assert r'dev.modelapp.model.source="https://x/\$HOME/\"q\""' in text


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("base", "../etc", "1", SHA, "s"), ManifestError),
        (("base image", "m", "1", SHA, "s"), ValueError),
        (("base", "m", "1", SHA, "line\nRUN evil"), ValueError),
    ],
)
def test_unsafe_inputs_are_rejected(args: tuple[str, str, str, str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        render_dockerfile(*args)


def test_dockerignore_keeps_build_files_out_of_the_image() -> None:
    assert DOCKERIGNORE.split() == ["Dockerfile", ".dockerignore"]
