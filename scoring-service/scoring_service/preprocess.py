"""Image bytes (PNG/JPEG) -> model input tensor, as a bundle's `preprocess` block specifies."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from modelapp_bundle import Preprocess
from PIL import Image, UnidentifiedImageError

from scoring_service.errors import BadRequest
from scoring_service.runtime import TensorSpec

# Only these decoders run on client bytes: fewer formats, less attack surface.
ALLOWED_FORMATS = ("PNG", "JPEG")


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """How much image decoding one request may ask for (from the settings)."""

    max_images: int = 64
    max_image_pixels: int = 16_000_000
    max_request_pixels: int = 64_000_000


def open_images(data: Sequence[bytes], limits: ImageLimits, where: str) -> list[Image.Image]:
    """Each image opened (its header read, not its pixels), within the request's budgets.

    The budgets are checked before anything is decoded: 144 PNGs of 4000x4000 pixels fit in 3 MB
    and took 14 s to decode.
    """
    if not data:
        raise BadRequest(f"{where}: no images")
    if len(data) > limits.max_images:
        raise BadRequest(f"{where}: {len(data)} images exceed the limit of {limits.max_images} per request")
    images, total = [], 0
    for i, item in enumerate(data):
        image = _open(item, limits.max_image_pixels, f"{where}[{i}]")
        total += image.size[0] * image.size[1]
        if total > limits.max_request_pixels:
            raise BadRequest(
                f"{where}: the images hold more than {limits.max_request_pixels} pixels in all (the limit per request)"
            )
        images.append(image)
    return images


def pixels(images: Sequence[Image.Image]) -> int:
    return sum(image.size[0] * image.size[1] for image in images)


def _open(data: bytes, max_pixels: int, where: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:  # its message names the BytesIO object, at a memory address
        raise BadRequest(f"{where}: not a readable PNG or JPEG image") from None
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise BadRequest(f"{where}: not a readable PNG or JPEG image ({exc})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadRequest(f"{where}: image of {width}x{height} pixels exceeds the limit of {max_pixels}")
    return image


def decode_image(image: Image.Image, spec: Preprocess, where: str) -> npt.NDArray[np.float32]:
    """One opened image -> float32 HWC array, resized, scaled and normalised."""
    try:
        image = image.convert("L" if spec.color == "grayscale" else "RGB")
    except (OSError, ValueError) as exc:  # the pixel data is truncated or corrupt
        raise BadRequest(f"{where}: not a readable PNG or JPEG image ({exc})") from None
    height, width = spec.size
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr *= np.float32(spec.scale)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    arr -= mean
    arr /= std
    return arr


def images_to_tensor(
    images: Sequence[Image.Image], spec: Preprocess, target: TensorSpec, where: str
) -> npt.NDArray[Any]:
    """Opened images -> the tensor `target` expects (NCHW/NHWC, or flattened if rank 2)."""
    batch = np.stack([decode_image(image, spec, f"{where}[{i}]") for i, image in enumerate(images)])
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    if len(target.shape) == 2:
        batch = batch.reshape(len(images), -1)
    batch = np.ascontiguousarray(batch, dtype=target.dtype)
    if not target.accepts_shape(batch.shape):
        raise BadRequest(
            f"{where}: preprocessed images have shape {list(batch.shape)}, model input "
            f"{target.name!r} expects {list(target.shape)}; check the manifest's preprocess block"
        )
    return batch


def validate_spec(spec: Preprocess, target: TensorSpec) -> None:
    """Load-time check that the preprocess block can feed `target` at all."""
    if target.datatype not in ("FP32", "FP64", "FP16"):
        raise ValueError(f"preprocess feeds input {target.name!r} of type {target.datatype}; need a float")
    channels = spec.channels  # Preprocess itself checked that mean and std have 1 or `channels` values
    height, width = spec.size
    if len(target.shape) == 2:
        expected: tuple[int, ...] = (-1, channels * height * width)
    elif spec.layout == "NCHW":
        expected = (-1, channels, height, width)
    else:
        expected = (-1, height, width, channels)
    if len(expected) != len(target.shape) or not all(
        t in (-1, e) or e == -1 for t, e in zip(target.shape, expected, strict=True)
    ):
        raise ValueError(
            f"preprocess produces {list(expected)} but input {target.name!r} has shape {list(target.shape)}"
        )
