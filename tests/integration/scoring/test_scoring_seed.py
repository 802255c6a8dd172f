"""The cat-species seed's client, unmodified, against a real scorer process serving the digits example."""

from __future__ import annotations

import base64
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from integration.scoring.conftest import Server
from PIL import Image

pytestmark = pytest.mark.integration


def seed_client(url: str, image_files: list[Path]) -> tuple[int, Any]:
    """What the seed's client does: read image files, send `str(b64encode(...))` of each, JSON-encoded
    as one string, and read the JSON answer (here with the standard library, as `requests` would)."""
    images = [str(base64.b64encode(path.read_bytes())) for path in image_files]
    body = json.dumps({"input": json.dumps(images)}).encode()
    request = urllib.request.Request(
        url + "/score", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def seed_server(start_server: Callable[..., Server], models_dir: Path) -> Server:
    return start_server(models_dir, env={"SCORING_DEFAULT_MODEL": "digits", "SCORING_SCORE_RESPONSE": "seed"})


def test_the_seeds_client_gets_labels(
    seed_server: Server, example_bundles: dict[str, Path], tmp_path: Path
) -> None:
    sample = orjson.loads((example_bundles["digits"] / "contract.json").read_bytes())["samples"][0]
    expected_labels = [str(label) for label in sample["expected"]["outputs"][0]["data"]]
    files = []
    for i, text in enumerate(sample["request"]["inputs"][0]["data"]):
        path = tmp_path / f"digit-{i}.png"
        Image.open(io.BytesIO(base64.b64decode(text))).save(path, format="PNG")  # files, as the seed's
        files.append(path)

    status, body = seed_client(seed_server.url, files)

    assert status == 200, body
    per_image, computed = body["result"]
    assert re.fullmatch(r"Computed in \d+(\.\d+)? ms", computed)
    assert [pairs[0][0] for pairs in per_image] == expected_labels
    for pairs in per_image:
        assert len(pairs) == 3
        assert all(0 <= percent <= 100 for _, percent in pairs)
        assert sum(percent for _, percent in pairs) <= 100 + 1e-3


def test_the_seeds_client_is_told_what_is_wrong(seed_server: Server, tmp_path: Path) -> None:
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not an image")
    status, body = seed_client(seed_server.url, [not_an_image])
    assert status == 400
    assert body == {"error": "input[0]: not a readable PNG or JPEG image"}
