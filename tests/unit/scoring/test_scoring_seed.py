"""The cat-species seed's `/score` clients, unmodified: its request body."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from scoring_service.parsing import unwrap_bytes_repr
from unit.scoring.scoring_models import b64
from unit.scoring.test_scoring_app import error_of

pytestmark = pytest.mark.unit

# Where the lit pixel is -> the label the test classifier gives (see scoring_models.classifier_model).
LIT = {"top-left": (0, 0), "top-right": (1, 0), "bottom-left": (0, 1)}


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
