"""The cat-species seed's `/score` clients, unmodified: its request body and (opt-in) its answer."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydantic import ValidationError
from scoring_service.parsing import unwrap_bytes_repr
from scoring_service.settings import Settings
from unit.scoring.scoring_models import CLASSIFIER_LABELS, b64
from unit.scoring.test_scoring_app import error_of

pytestmark = pytest.mark.unit

# Where the lit pixel is -> the label the test classifier gives (see scoring_models.classifier_model).
LIT = {"top-left": (0, 0), "top-right": (1, 0), "bottom-left": (0, 1)}
COMPUTED = re.compile(r"Computed in \d+(\.\d+)? ms")


def write_png(folder: Path, label: str) -> bytes:
    """A 2x2 grayscale PNG written to disk with Pillow, read back as the seed's client reads its files."""
    image = Image.new("L", (2, 2))
    image.putpixel(LIT[label], 255)
    path = folder / f"{label}.png"
    image.save(path, format="PNG")
    return path.read_bytes()


def seed_body(items: list[str]) -> dict[str, str]:
    """The seed client's body: `input` is a *string*, the JSON text of a list (as json.dumps makes it)."""
    return {"input": json.dumps(items)}


def error_400(response: Any) -> str:
    assert response.status_code == 400, response.text
    return error_of(response)


@pytest.fixture
def classifier(model_dir: Path, make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(model_dir, default_model="classifier")


@pytest.fixture
def seed_classifier(model_dir: Path, make_client: Callable[..., TestClient]) -> TestClient:
    return make_client(model_dir, default_model="classifier", score_response="seed")


@pytest.fixture
def pngs(tmp_path: Path) -> dict[str, bytes]:
    return {label: write_png(tmp_path, label) for label in LIT}


# -- the request -----------------------------------------------------------------------------


def test_the_seeds_exact_body(classifier: TestClient, pngs: dict[str, bytes]) -> None:
    items = [
        str(base64.b64encode(pngs["top-right"])),  # "b'iVBOR...'", as the seed's client sends it
        b64(pngs["bottom-left"]),  # plain base64
        'b"' + b64(pngs["top-left"]) + '"',
    ]
    assert items[0][:2] + items[0][-1] == "b''"
    response = classifier.post("/score", json=seed_body(items))
    assert response.status_code == 200, response.text
    assert [row[0]["label"] for row in response.json()["result"]] == ["top-right", "bottom-left", "top-left"]


@pytest.mark.parametrize("text", ["  [{}]", "\n\t[{}]\r\n", "[ {} ]"])
def test_json_whitespace_around_the_list(classifier: TestClient, pngs: dict[str, bytes], text: str) -> None:
    body = {"input": text.replace("{}", json.dumps(b64(pngs["top-right"])))}
    response = classifier.post("/score", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["result"][0][0]["label"] == "top-right"


@pytest.mark.parametrize(
    "payload",
    [
        lambda png: b64(png),  # one string
        lambda png: [b64(png)],  # a list of strings
        lambda png: f"data:image/png;base64,{b64(png)}",
        lambda png: str(base64.b64encode(png)),  # the seed's item wrapping, outside a JSON list too
        lambda png: [str(base64.b64encode(png))],
    ],
)
def test_the_earlier_forms_still_work(
    classifier: TestClient, pngs: dict[str, bytes], payload: Callable[[bytes], Any]
) -> None:
    response = classifier.post("/score", json={"input": payload(pngs["bottom-left"])})
    assert response.status_code == 200, response.text
    assert response.json()["result"][0][0]["label"] == "bottom-left"


GOOD = b64(Image.new("L", (2, 2)).tobytes())  # valid base64, but of raw pixels: not a PNG


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[", "must be a JSON list of base64 images"),
        ('["abc",]', "must be a JSON list of base64 images"),
        ("[abc]", "must be a JSON list of base64 images"),
        ('[] ["x"]', "must be a JSON list of base64 images"),
        ("[" * 5000 + "]" * 5000, "must be a JSON list of base64 images"),
        ("[]", "input: no images"),
        ('[["x"]]', "input[0]: must be a base64 string"),
        ("[1]", "input[0]: must be a base64 string"),
        ("[null]", "input[0]: must be a base64 string"),
        ('[{"b64": "x"}]', "input[0]: must be a base64 string"),
        ('["%%%"]', "input[0]: not valid base64"),
        ("[\"b'%%%'\"]", "input[0]: not valid base64"),
        ('["b\'abc"]', "input[0]: not valid base64"),  # unclosed: not unwrapped
        ("[\"b''\"]", "input[0]: not a readable PNG or JPEG image"),
        (json.dumps([GOOD]), "input[0]: not a readable PNG or JPEG image"),
        (json.dumps(["bm90IGFuIGltYWdl"]), "input[0]: not a readable PNG or JPEG image"),
    ],
)
def test_malformed_seed_bodies_are_400(classifier: TestClient, text: str, message: str) -> None:
    assert message in error_400(classifier.post("/score", json={"input": text}))


def test_image_count_is_limited_before_decoding(
    model_dir: Path, make_client: Callable[..., TestClient], pngs: dict[str, bytes]
) -> None:
    strict = make_client(model_dir, default_model="classifier", max_images=2)
    ok = strict.post("/score", json=seed_body([b64(pngs["top-left"])] * 2))
    assert ok.status_code == 200, ok.text
    message = error_400(strict.post("/score", json=seed_body(["%%%"] * 3)))  # not decoded: no base64 error
    assert message == "input: 3 images exceed the limit of 2 per request"


@pytest.mark.parametrize(
    ("text", "inner"),
    [("b'QUJD'", "QUJD"), ('b"QUJD"', "QUJD"), ("b''", ""), ("QUJD", "QUJD"), ("b'QUJD", "b'QUJD"),
     ("b'QUJD\"", "b'QUJD\""), ("b'", "b'"), ("bQUJD", "bQUJD"), ("B'QUJD'", "B'QUJD'")],
)  # fmt: skip
def test_unwrap_bytes_repr(text: str, inner: str) -> None:
    assert unwrap_bytes_repr(text) == inner


# -- the answer ------------------------------------------------------------------------------


def test_the_default_answer_is_unchanged(classifier: TestClient, pngs: dict[str, bytes]) -> None:
    response = classifier.post("/score", json=seed_body([b64(pngs["top-left"]), b64(pngs["top-right"])]))
    result = response.json()["result"]
    assert len(result) == 2
    for row in result:
        assert len(row) == 3  # SCORING_TOP_K (5), capped at the 3 labels
        assert all(set(entry) == {"label", "probability"} for entry in row)
        assert 0 <= row[0]["probability"] <= 1
    assert [row[0]["label"] for row in result] == ["top-left", "top-right"]


def test_the_seeds_answer(seed_classifier: TestClient, pngs: dict[str, bytes]) -> None:
    order = ["bottom-left", "top-left", "top-right", "top-left"]
    items = [str(base64.b64encode(pngs[label])) for label in order]
    response = seed_classifier.post("/score", json=seed_body(items))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"result"}
    per_image, computed = body["result"]
    assert COMPUTED.fullmatch(computed), computed
    assert len(per_image) == len(order)
    for label, pairs in zip(order, per_image, strict=True):
        assert len(pairs) == 3
        assert all(len(pair) == 2 and isinstance(pair[0], str) for pair in pairs)
        assert {pair[0] for pair in pairs} == set(CLASSIFIER_LABELS)
        percents = [pair[1] for pair in pairs]
        assert all(isinstance(p, float) and 0 <= p <= 100 for p in percents)
        assert percents == sorted(percents, reverse=True)
        assert sum(percents) <= 100 + 1e-3  # float32 probabilities: 1 within rounding
        assert pairs[0][0] == label
        assert pairs[0][1] > 50


def test_the_seeds_answer_is_in_percent(
    classifier: TestClient, seed_classifier: TestClient, pngs: dict[str, bytes]
) -> None:
    body = {"input": b64(pngs["top-right"]), "top_k": 2}
    default = classifier.post("/score", json=body).json()["result"][0]
    seed = seed_classifier.post("/score", json=body).json()["result"][0][0]
    assert [pair[0] for pair in seed] == [entry["label"] for entry in default]  # the request's top_k too
    np.testing.assert_allclose([pair[1] for pair in seed], [100 * e["probability"] for e in default])


def test_the_seeds_answer_leaves_models_without_labels_alone(
    model_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    default = make_client(model_dir, default_model="linear")
    seed = make_client(model_dir, default_model="linear", score_response="seed")
    body = {"data": [[1.0, 2.0, 3.0]]}
    assert seed.post("/score", json=body).json() == default.post("/score", json=body).json()


def test_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().score_response == "default"
    monkeypatch.setenv("SCORING_SCORE_RESPONSE", "seed")
    assert Settings().score_response == "seed"
    monkeypatch.setenv("SCORING_SCORE_RESPONSE", "cats")
    with pytest.raises(ValidationError):
        Settings()
