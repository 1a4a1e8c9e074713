"""Decode camera photos safely: JPEG and PNG, checked before OpenCV sees them.

An image from a camera or an upload is untrusted. :func:`decode_image` checks it before
decoding, because ``cv2.imdecode`` alone is not safe or strict enough:

- **Size.** More than ``max_bytes`` bytes is refused before the data is read.
- **Dimensions.** Width and height come from the file header: the JPEG frame header (SOF
  marker) or the PNG ``IHDR`` chunk. An image with more than ``max_pixels`` pixels is refused
  there, so a small "decompression bomb" that claims 100000 x 100000 pixels never allocates
  its pixel buffer.
- **Completeness.** ``cv2.imdecode`` may return a partial picture for a truncated JPEG; libjpeg
  only warns on stderr and pads the missing rows with grey. So the JPEG marker structure is
  walked from the start-of-image marker to the end-of-image marker (EOI, ``FF D9``), through
  every entropy-coded scan. The next marker after a scan is the first ``FF`` byte not
  followed by ``00`` (a stuffed byte), ``FF`` (fill) or ``D0``-``D7`` (a restart marker). If
  the data ends before EOI, the JPEG is truncated. Bytes after EOI, such as the zero padding
  some ESP32 camera drivers append, are ignored. A PNG must have its chunks intact up to the
  ``IEND`` chunk.

Only then is the image decoded, to BGR ``uint8``. Grayscale and 16-bit PNGs are converted, an
alpha channel is dropped, and an EXIF orientation tag is applied (as image viewers do, so
ROI boxes drawn in a viewer match).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from gridlens.errors import DataFormatError, NotFoundError, check_param

__all__ = ["ImageInfo", "decode_image", "encode_jpeg", "probe_image"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8\xff"
# Start-of-frame markers that carry the image size (not DHT C4, JPG C8, DAC CC).
_JPEG_SOF = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
)
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image file says, read without decoding the pixels.

    Attributes
    ----------
    format : str
        ``"jpeg"`` or ``"png"``.
    width, height : int
        Size in pixels as stored (before any EXIF rotation).
    """

    format: str
    width: int
    height: int


def probe_image(
    data: bytes | bytearray | memoryview, *, max_pixels: int = 25_000_000, source: str = "the image"
) -> ImageInfo:
    """Check an encoded image's structure and size without decoding its pixels.

    Parameters
    ----------
    data : bytes
        The encoded file content.
    max_pixels : int
        Largest allowed width x height.
    source : str
        How to name the image in error messages (a file name, or "the image").

    Returns
    -------
    ImageInfo
        Format and stored dimensions.

    Raises
    ------
    DataFormatError
        Empty data, not a JPEG/PNG, a corrupt or truncated file, or too many pixels.
    """
    check_param(
        isinstance(max_pixels, int) and max_pixels > 0,
        "max_pixels",
        "probe_image",
        "a positive int",
        max_pixels,
    )
    buf = bytes(data)
    if not buf:
        raise DataFormatError(f"{source} is empty (0 bytes); send a JPEG or PNG photo")
    if buf.startswith(_JPEG_SOI):
        return _walk_jpeg(buf, max_pixels, source)
    if buf.startswith(_PNG_SIGNATURE):
        return _walk_png(buf, max_pixels, source)
    raise DataFormatError(
        f"{source} is not a JPEG or PNG image (it starts with {buf[:12]!r}); "
        "send the camera's JPEG file"
    )


def decode_image(
    data: bytes | bytearray | memoryview | str | os.PathLike[str],
    *,
    max_pixels: int = 25_000_000,
    max_bytes: int = 20_000_000,
) -> npt.NDArray[np.uint8]:
    """Decode a JPEG or PNG photo to a BGR ``uint8`` array of shape (H, W, 3).

    Parameters
    ----------
    data : bytes or path
        The encoded image, or the path of an image file.
    max_pixels : int
        Largest allowed width x height, checked in the file header before decoding.
    max_bytes : int
        Largest allowed encoded size, checked before reading a file.

    Returns
    -------
    numpy.ndarray
        BGR image, ``uint8``, shape (height, width, 3).

    Raises
    ------
    NotFoundError
        ``data`` is a path and no file exists there.
    DataFormatError
        Empty, too large, not a JPEG/PNG, truncated or corrupt image data.
    """
    check_param(
        isinstance(max_bytes, int) and max_bytes > 0,
        "max_bytes",
        "decode_image",
        "a positive int",
        max_bytes,
    )
    if isinstance(data, str | os.PathLike):
        path = Path(data)
        source = str(path)
        if not path.exists():
            raise NotFoundError(f"{path}: no such image file")
        if path.is_dir():
            raise DataFormatError(f"{path} is a folder, not an image file")
        size = path.stat().st_size
        if size > max_bytes:
            raise DataFormatError(
                f"{path} is {size} bytes, more than the limit of {max_bytes}; "
                "send a smaller JPEG (a 640x480 camera frame is about 50 kB)"
            )
        buf = path.read_bytes()
    else:
        source = "the image"
        buf = bytes(data)
    if len(buf) > max_bytes:
        raise DataFormatError(
            f"{source} is {len(buf)} bytes, more than the limit of {max_bytes}; "
            "send a smaller JPEG (a 640x480 camera frame is about 50 kB)"
        )
    info = probe_image(buf, max_pixels=max_pixels, source=source)
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if img is None or img.ndim != 3 or img.shape[2] != 3:
        raise DataFormatError(
            f"{source} could not be decoded (corrupt {info.format.upper()} data); "
            "send the camera's original file"
        )
    if {img.shape[0], img.shape[1]} != {info.height, info.width}:
        raise DataFormatError(
            f"{source} decoded to {img.shape[1]}x{img.shape[0]} pixels but its header says "
            f"{info.width}x{info.height}; the file is corrupt"
        )
    out: npt.NDArray[np.uint8] = np.ascontiguousarray(img, dtype=np.uint8)
    return out


def encode_jpeg(img: npt.NDArray[np.uint8], quality: int = 90) -> bytes:
    """Encode a BGR (H, W, 3) or grayscale (H, W) ``uint8`` image as JPEG.

    Parameters
    ----------
    img : numpy.ndarray
        The image.
    quality : int
        JPEG quality, 1-100.

    Returns
    -------
    bytes
        The JPEG file content.
    """
    check_param(
        isinstance(quality, int) and 1 <= quality <= 100,
        "quality",
        "encode_jpeg",
        "an int in [1, 100]",
        quality,
    )
    arr = np.asarray(img)
    check_param(
        arr.dtype == np.uint8
        and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3)))
        and arr.size > 0,
        "img",
        "encode_jpeg",
        "a non-empty uint8 array of shape (H, W) or (H, W, 3)",
        f"{arr.dtype} array of shape {arr.shape}",
    )
    ok, enc = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - libjpeg does not fail on valid uint8 input
        raise DataFormatError("the image could not be encoded as JPEG")
    return bytes(enc.tobytes())


def _check_dims(width: int, height: int, max_pixels: int, source: str) -> None:
    if width <= 0 or height <= 0:
        raise DataFormatError(
            f"{source} has an invalid size of {width}x{height} pixels in its header; "
            "the file is corrupt"
        )
    if width * height > max_pixels:
        raise DataFormatError(
            f"{source} is {width}x{height} pixels, more than the limit of {max_pixels} pixels; "
            "send a smaller image (a 640x480 camera frame is enough)"
        )


def _walk_jpeg(buf: bytes, max_pixels: int, source: str) -> ImageInfo:
    """Walk the JPEG marker structure from SOI to EOI; return the frame size."""
    end = len(buf)
    truncated = (
        f"{source} is a truncated JPEG (it ends after {end} bytes, before the end-of-image "
        "marker); the transfer was cut short, send the complete file"
    )
    width = height = 0
    scans = 0
    candidates: npt.NDArray[np.intp] | None = None
    pos = 2
    while True:
        if pos >= end:
            raise DataFormatError(truncated)
        if buf[pos] != 0xFF:
            raise DataFormatError(
                f"{source} is a corrupt JPEG (no marker at byte {pos}); "
                "send the camera's original file"
            )
        while pos < end and buf[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= end:
            raise DataFormatError(truncated)
        marker = buf[pos]
        pos += 1
        if marker == _JPEG_EOI:
            break
        if marker in _JPEG_STANDALONE:
            continue
        if pos + 2 > end:
            raise DataFormatError(truncated)
        (length,) = struct.unpack_from(">H", buf, pos)
        seg_end = pos + length
        if length < 2:
            raise DataFormatError(
                f"{source} is a corrupt JPEG (segment length {length} at byte {pos}); "
                "send the camera's original file"
            )
        if seg_end > end:
            raise DataFormatError(truncated)
        if marker in _JPEG_SOF:
            if length < 8:
                raise DataFormatError(f"{source} is a corrupt JPEG (short frame header)")
            height, width = struct.unpack_from(">HH", buf, pos + 3)
            if height == 0:
                raise DataFormatError(
                    f"{source} is a JPEG whose height is defined after the image data "
                    "(DNL marker), which is not supported; re-save it as a baseline JPEG"
                )
            _check_dims(width, height, max_pixels, source)
        if marker == _JPEG_SOS:
            if width == 0:
                raise DataFormatError(
                    f"{source} is a corrupt JPEG (image data before the frame header)"
                )
            scans += 1
            # Entropy-coded data follows the scan header, up to the next real marker.
            if candidates is None:
                arr = np.frombuffer(buf, np.uint8)
                ff = np.flatnonzero(arr[:-1] == 0xFF)
                nxt = arr[ff + 1]
                real = (nxt != 0x00) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7))
                candidates = ff[real]
            k = int(np.searchsorted(candidates, seg_end))
            if k >= len(candidates):
                raise DataFormatError(truncated)
            pos = int(candidates[k])
            if pos == seg_end:
                raise DataFormatError(f"{source} is a corrupt JPEG (a scan without image data)")
            continue
        pos = seg_end
    if scans == 0 or width == 0:
        raise DataFormatError(
            f"{source} is a JPEG without image data (it ends before its first scan); "
            "send the camera's original file"
        )
    return ImageInfo("jpeg", width, height)


def _walk_png(buf: bytes, max_pixels: int, source: str) -> ImageInfo:
    """Walk the PNG chunks from IHDR to IEND; return the image size."""
    end = len(buf)
    truncated = (
        f"{source} is a truncated PNG (it ends after {end} bytes, before the IEND chunk); "
        "the transfer was cut short, send the complete file"
    )
    pos = len(_PNG_SIGNATURE)
    if end < pos + 8 + 13 + 4:
        raise DataFormatError(truncated)
    length, ctype = struct.unpack_from(">I4s", buf, pos)
    if ctype != b"IHDR" or length != 13:
        raise DataFormatError(f"{source} is a corrupt PNG (no IHDR header chunk)")
    ihdr = buf[pos + 4 : pos + 8 + 13]
    (crc,) = struct.unpack_from(">I", buf, pos + 8 + 13)
    if zlib.crc32(ihdr) != crc:
        raise DataFormatError(f"{source} is a corrupt PNG (bad IHDR checksum)")
    width, height = struct.unpack_from(">II", buf, pos + 8)
    _check_dims(width, height, max_pixels, source)
    idat = 0
    while True:
        if pos + 8 > end:
            raise DataFormatError(truncated)
        length, ctype = struct.unpack_from(">I4s", buf, pos)
        pos += 12 + length
        if pos > end:
            raise DataFormatError(truncated)
        if ctype == b"IDAT":
            idat += 1
        elif ctype == b"IEND":
            break
    if idat == 0:
        raise DataFormatError(f"{source} is a PNG without image data (no IDAT chunk)")
    return ImageInfo("png", width, height)
