"""Camera image codecs: raw ``sensor_msgs/Image`` bytes and JPEG / PNG ``CompressedImage`` bytes
<-> ``(H, W, 3)`` uint8 RGB arrays.

``decode_image_msg`` decodes an image message of either kind; it reads fields only, so rclpy
messages (the live node) and ``rosbags`` messages (offline replay) go through the same code.

A JPEG much larger than the network input can be decoded at 1/2, 1/4 or 1/8 of its size directly
(libjpeg's DCT scaling: each output pixel covers ``f x f`` input pixels, so intrinsics scale by
``1/f`` exactly); ``jpeg_reduction`` picks the factor that keeps the image at least as large as
the network input. A 1600x900 JPEG for a 352x198 network decodes ~2x faster and needs a ~6x
cheaper resize afterwards (``docs/BENCHMARKS.md``).
``encode_raw_image`` / ``encode_compressed_image`` are the inverse (tests, bag writers).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .errors import ImageDecodeError, UnsupportedEncodingError

__all__ = [
    "COMPRESSED_FORMATS",
    "RAW_ENCODINGS",
    "decode_compressed_image",
    "decode_image_msg",
    "decode_raw_image",
    "encode_compressed_image",
    "encode_raw_image",
    "jpeg_reduction",
]

RAW_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8")
"""``sensor_msgs/Image`` encodings the node accepts (8-bit, 3 channels)."""

COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")
"""``sensor_msgs/CompressedImage`` formats the node accepts (``format`` names one of them)."""


def _as_u8(data) -> NDArray[np.uint8]:
    """A read-only uint8 view of bytes / bytearray / memoryview / array.array / ndarray."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


def decode_raw_image(data, encoding: str, width: int, height: int, step: int | None = None,
                     camera: str = "camera", is_bigendian: bool = False, copy: bool = True) -> NDArray[np.uint8]:
    """``(height, width, 3)`` uint8 RGB array of a raw ``sensor_msgs/Image`` payload.

    Args:
        data: the image bytes (``bytes``, ``array.array('B')``, memoryview or uint8 ndarray).
        encoding: ``"rgb8"`` or ``"bgr8"`` (other encodings raise ``UnsupportedEncodingError``).
        width, height: image size in pixels.
        step: bytes per row (``>= 3 * width``; row padding is skipped); default ``3 * width``.
        camera: name used in error messages.
        is_bigendian: ignored for 8-bit encodings (kept for the message's field).
        copy: True (default): always a new contiguous array (the message buffer is not referenced
            afterwards). False: an ``rgb8`` image without row padding comes back as a **read-only
            view** of ``data`` (no copy; writing to it raises), anything else as a new array. Only
            for callers that keep the message unchanged while they use the image (the node's
            per-set pipeline: ``CameraSetProcessor``).
    """
    enc = (encoding or "").strip().lower()
    if enc not in RAW_ENCODINGS:
        raise UnsupportedEncodingError(
            camera, f"unsupported image encoding {encoding!r}",
            f"publish one of {', '.join(RAW_ENCODINGS)} (raw) or set image_transport to 'compressed' "
            "for JPEG/PNG",
        )
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ImageDecodeError(camera, f"image size {width}x{height} is empty", "check the camera driver")
    row = 3 * width
    step = row if not step else int(step)
    if step < row:
        raise ImageDecodeError(camera, f"step {step} is smaller than 3 x width = {row} bytes ({enc})",
                               "the image header does not match its encoding; check the camera driver")
    buf = _as_u8(data)
    if buf.size < step * (height - 1) + row:
        raise ImageDecodeError(
            camera, f"{buf.size} data bytes for a {width}x{height} {enc} image with step {step} "
            f"(need {step * height})", "the message is truncated or its header is wrong",
        )
    if buf.size >= step * height:
        rows = buf[: step * height].reshape(height, step)
    else:  # last row without its padding
        rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row), strides=(step, 1))
    img = rows[:, :row].reshape(height, width, 3)
    if enc == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_BGR2RGB)
    if not copy and img.flags.c_contiguous:
        view = img.view()
        view.flags.writeable = False
        return view
    return np.array(img, dtype=np.uint8, copy=True, order="C")


def _compressed_kind(fmt: str, buf: NDArray[np.uint8]) -> str | None:
    """``"jpeg"``/``"png"`` from a CompressedImage ``format`` string, else from magic bytes."""
    f = (fmt or "").lower()
    # image_transport writes e.g. "bgr8; jpeg compressed bgr8" or "rgb8; png compressed rgb8"
    if "compresseddepth" in f:
        return "compressedDepth"
    for word in ("jpeg", "jpg", "png"):
        if word in f:
            return "jpeg" if word == "jpg" else word
    if f.strip():
        return None
    if buf.size >= 3 and buf[0] == 0xFF and buf[1] == 0xD8 and buf[2] == 0xFF:
        return "jpeg"
    if buf.size >= 8 and bytes(buf[:8]) == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


_JPEG_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                 8: cv2.IMREAD_REDUCED_COLOR_8}


def jpeg_reduction(image_hw: tuple[int, int], target_hw: tuple[int, int]) -> int:
    """The largest JPEG decode reduction ``f`` in 8, 4, 2 (else 1) whose output,
    ``ceil(H / f) x ceil(W / f)`` pixels, is still at least ``target_hw`` (H, W) in both
    dimensions: the resize to the network input then only shrinks, as it would from full size."""
    h, w = int(image_hw[0]), int(image_hw[1])
    th, tw = int(target_hw[0]), int(target_hw[1])
    for f in (8, 4, 2):
        if -(-h // f) >= th and -(-w // f) >= tw:
            return f
    return 1


def decode_compressed_image(data, fmt: str = "", camera: str = "camera", reduce: int = 1) -> NDArray[np.uint8]:
    """``(H, W, 3)`` uint8 RGB array of a ``sensor_msgs/CompressedImage`` (JPEG or PNG).

    ``fmt`` is the message's ``format`` field (``"jpeg"``, ``"png"``, or image_transport's
    ``"bgr8; jpeg compressed bgr8"``); when empty the kind is read from the magic bytes. Grey or
    alpha images are converted to 3-channel RGB. Other formats raise
    ``UnsupportedEncodingError``; undecodable bytes raise ``ImageDecodeError``.
    ``reduce`` (1, 2, 4 or 8): a JPEG is decoded at ``ceil(H / reduce) x ceil(W / reduce)``
    pixels (module doc); a PNG always at full size. The caller tells which from the shape.
    """
    if reduce not in _JPEG_REDUCED:
        raise ValueError(f"reduce must be one of {sorted(_JPEG_REDUCED)}, got {reduce!r}")
    buf = _as_u8(data)
    kind = _compressed_kind(fmt, buf)
    if kind not in COMPRESSED_FORMATS:
        raise UnsupportedEncodingError(
            camera, f"unsupported compressed image format {fmt!r}",
            "publish JPEG or PNG CompressedImage messages, or set image_transport to 'raw'",
        )
    if buf.size == 0:
        raise ImageDecodeError(camera, f"empty {kind} payload", "check the camera driver / compression")
    bgr = cv2.imdecode(buf, _JPEG_REDUCED[reduce] if kind == "jpeg" else cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ImageDecodeError(camera, f"{buf.size} bytes do not decode as {kind}",
                               "the message is truncated or corrupt")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)  # in place: no second full-size array


def encode_raw_image(rgb: NDArray[np.uint8], encoding: str = "rgb8") -> bytes:
    """Bytes of an ``(H, W, 3)`` uint8 RGB image in ``encoding`` (``rgb8`` or ``bgr8``), step 3 W."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    enc = encoding.lower()
    if enc == "rgb8":
        return np.ascontiguousarray(rgb).tobytes()
    if enc == "bgr8":
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR).tobytes()
    raise ValueError(f"cannot encode {encoding!r}; supported: {', '.join(RAW_ENCODINGS)}")


def encode_compressed_image(rgb: NDArray[np.uint8], fmt: str = "jpeg", quality: int = 90) -> bytes:
    """JPEG (``quality`` 0-100) or PNG bytes of an ``(H, W, 3)`` uint8 RGB image."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    f = fmt.lower()
    if f in ("jpeg", "jpg"):
        ext, params = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif f == "png":
        ext, params = ".png", []
    else:
        raise ValueError(f"cannot compress to {fmt!r}; supported: jpeg, png")
    ok, out = cv2.imencode(ext, cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {f}")
    return out.tobytes()


def decode_image_msg(msg: Any, camera: str = "camera", copy: bool = True, reduce: int = 1) -> NDArray[np.uint8]:
    """``(H, W, 3)`` uint8 RGB of a ``sensor_msgs/Image`` or ``CompressedImage`` (rclpy or rosbags).

    A message with a ``format`` field is a ``CompressedImage``; anything else is read as a raw
    ``Image``. Raises ``UnsupportedEncodingError`` / ``ImageDecodeError`` naming ``camera``.
    ``copy=False``: an unpadded ``rgb8`` image is a read-only view of ``msg.data``
    (``decode_raw_image``); the caller must not change the message while it uses the image.
    ``reduce``: JPEG decode reduction (``decode_compressed_image``); raw images ignore it.
    """
    if hasattr(msg, "format"):
        return decode_compressed_image(msg.data, msg.format, camera=camera, reduce=reduce)
    return decode_raw_image(msg.data, msg.encoding, msg.width, msg.height, msg.step, camera=camera,
                            is_bigendian=bool(msg.is_bigendian), copy=copy)
