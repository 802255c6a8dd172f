"""A ModelApp names only the images the operator allows: its defaults and the configured patterns."""

from __future__ import annotations

import dataclasses

import pytest
from modelapp_operator.names import Reason
from modelapp_operator.planner import plan
from modelapp_operator.settings import OperatorSettings
from modelapp_operator.snapshot import AllowedImages, Images
from modelapp_operator.spec import Build
from unit.operator.conftest import (
    IMAGES,
    after,
    cond,
    deployment,
    deployments,
    make_app,
    make_spec,
    observe,
    serving_status,
    store,
    template_for,
)
from unit.operator.test_gates import SPEC, obs, serving_app

pytestmark = pytest.mark.unit

STRICT = dataclasses.replace(IMAGES, allowed=AllowedImages())
EVIL = "evil.example/steal-secrets:1"


@pytest.mark.parametrize(
    ("build", "serve_image", "allowed", "refused"),
    [
        (None, None, AllowedImages(), None),
        (None, IMAGES.scorer, AllowedImages(), None),  # the default by name
        (None, EVIL, AllowedImages(), "serve.image"),
        (
            None,
            "myacr.azurecr.io/scoring/custom:2",
            AllowedImages(serve=("myacr.azurecr.io/scoring/*",)),
            None,
        ),
        (Build("acr/d", "push", kaniko_image=EVIL), None, AllowedImages(), "build.kanikoImage"),
        (Build("acr/d", "push", base_image=EVIL), None, AllowedImages(kaniko=("*",)), "build.baseImage"),
        (Build("acr/d", "push", base_image="acr/base:2"), None, AllowedImages(base=("acr/base:*",)), None),
    ],
)
def test_admission(
    build: Build | None, serve_image: str | None, allowed: AllowedImages, refused: str | None
) -> None:
    packaging = "Image" if build else "InitContainer"
    spec = make_spec(packaging=packaging, build=build, image=serve_image)
    images = dataclasses.replace(IMAGES, allowed=allowed)
    p = plan(observe(make_app(), store("1.0.0"), None, spec=spec), images)
    if refused is None:
        assert cond(p, "Stalled")["status"] == "False"
        return
    assert cond(p, "Stalled")["reason"] == Reason.IMAGE_NOT_ALLOWED
    assert f"spec.{refused}" in cond(p, "Stalled")["message"]
    assert cond(p, "Ready")["reason"] == Reason.IMAGE_NOT_ALLOWED
    assert p.create == []
    assert deployments(p) == []


def test_a_refused_image_never_replaces_what_serves() -> None:
    app, t = serving_app("1.0.0")
    spec = dataclasses.replace(SPEC, build=dataclasses.replace(SPEC.build, kaniko_image=EVIL))  # type: ignore[arg-type]
    p = plan(obs(app, store("1.0.0", "1.1.0"), deployment(t, last_good=t), spec=spec), STRICT)
    assert p.create == []
    assert deployments(p) == []
    assert p.body["servingVersion"]["version"] == "1.0.0"
    assert "still serving 1.0.0" in cond(p, "Ready")["message"]
    # Once the spec is fixed, 1.1.0 builds.
    fixed = plan(obs(after(app, p), store("1.0.0", "1.1.0"), deployment(t, last_good=t)), STRICT)
    assert [j["metadata"]["labels"]["app.kubernetes.io/component"] for j in fixed.create] == ["build"]


def test_initcontainer_serve_image_change_to_a_refused_image_is_not_rolled() -> None:
    t = template_for("1.0.0", make_spec())
    app = make_app(serving_status("1.0.0", t))
    p = plan(observe(app, store("1.0.0"), deployment(t, last_good=t), spec=make_spec(image=EVIL)), STRICT)
    assert deployments(p) == []
    assert cond(p, "Stalled")["reason"] == Reason.IMAGE_NOT_ALLOWED


def test_settings_read_the_patterns_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELAPP_OPERATOR_ALLOWED_SERVE_IMAGES", "a.example/*, b.example/x:1")
    images: Images = OperatorSettings().images
    assert images.allowed.serve == ("a.example/*", "b.example/x:1")
    assert images.allowed.kaniko == ()
