"""Image bytes (PNG/JPEG) -> model input tensor, as a bundle's `preprocess` block specifies."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from modelapp_bundle import Preprocess
from PIL import Image

from scoring_service.errors import BadRequest
from scoring_service.runtime import TensorSpec

# Only these decoders run on client bytes: fewer formats, less attack surface.
ALLOWED_FORMATS = ("PNG", "JPEG")


def decode_image(data: bytes, spec: Preprocess, max_pixels: int, where: str) -> npt.NDArray[np.float32]:
    """One image -> float32 HWC array, resized, scaled and normalised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise BadRequest(
                    f"{where}: image of {width}x{height} pixels exceeds the limit of {max_pixels}"
                )
            image = image.convert("L" if spec.color == "grayscale" else "RGB")
    except BadRequest:
        raise
    except (OSError, ValueError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
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
    images: Sequence[bytes], spec: Preprocess, target: TensorSpec, max_pixels: int, where: str
) -> npt.NDArray[Any]:
    """A batch of encoded images -> the tensor `target` expects (NCHW/NHWC, or flattened if rank 2)."""
    if not images:
        raise BadRequest(f"{where}: no images")
    batch = np.stack([decode_image(b, spec, max_pixels, f"{where}[{i}]") for i, b in enumerate(images)])
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
