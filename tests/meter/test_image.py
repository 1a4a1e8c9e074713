"""Image decoding: JPEG/PNG accepted, truncated, fake, empty and oversized data refused."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from gridlens.errors import DataFormatError, NotFoundError, ParameterError
from gridlens.meter.image import decode_image, encode_jpeg, probe_image
from gridlens.meter.synth import render_reference


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img, _ = render_reference(6, 1, reading=4711.3, jpeg_quality=None)
    return img


@pytest.fixture(scope="module")
def jpeg(photo: np.ndarray) -> bytes:
    return encode_jpeg(photo, 90)


def _png(img: np.ndarray) -> bytes:
    ok, enc = cv2.imencode(".png", img)
    assert ok
    return enc.tobytes()


def _chunk(ctype: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data))


def test_decodes_jpeg_close_to_the_original(photo: np.ndarray, jpeg: bytes) -> None:
    img = decode_image(jpeg)
    assert img.shape == (480, 640, 3) and img.dtype == np.uint8
    assert np.abs(img.astype(int) - photo.astype(int)).mean() < 3.0
    assert probe_image(jpeg).format == "jpeg"
    assert (probe_image(jpeg).width, probe_image(jpeg).height) == (640, 480)


def test_decodes_png_exactly(photo: np.ndarray) -> None:
    img = decode_image(_png(photo))
    assert np.array_equal(img, photo)


def test_grayscale_png_becomes_bgr(photo: np.ndarray) -> None:
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    img = decode_image(bytearray(_png(gray)))
    assert img.shape == (480, 640, 3)
    assert np.array_equal(img[:, :, 0], gray) and np.array_equal(img[:, :, 2], gray)


def test_progressive_jpeg_is_decoded(photo: np.ndarray) -> None:
    ok, enc = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok
    assert decode_image(enc.tobytes()).shape == (480, 640, 3)


def test_zero_padding_after_end_of_image_is_accepted(jpeg: bytes) -> None:
    # some ESP32 camera drivers pad the frame buffer with zeros after FF D9
    img = decode_image(jpeg + b"\x00" * 517)
    assert img.shape == (480, 640, 3)


def test_path_input_and_missing_file(tmp_path: Path, jpeg: bytes) -> None:
    p = tmp_path / "meter.jpg"
    p.write_bytes(jpeg)
    assert decode_image(p).shape == (480, 640, 3)
    assert decode_image(str(p)).shape == (480, 640, 3)
    with pytest.raises(NotFoundError, match="no such image file"):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(DataFormatError, match="folder"):
        decode_image(tmp_path)


def test_rejects_empty_data() -> None:
    with pytest.raises(DataFormatError, match="empty"):
        decode_image(b"")


def test_rejects_text() -> None:
    with pytest.raises(DataFormatError, match="not a JPEG or PNG"):
        decode_image(b"hello, this is not an image at all\n")


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("fraction", [0.6, 0.95])
def test_rejects_truncated_jpeg(photo: np.ndarray, progressive: bool, fraction: float) -> None:
    _, enc = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    data = enc.tobytes()
    cut = data[: int(len(data) * fraction)]
    with pytest.raises(DataFormatError, match="truncated JPEG"):
        decode_image(cut)
    # zero padding does not hide the truncation
    with pytest.raises(DataFormatError, match="truncated JPEG"):
        decode_image(cut + b"\x00" * 64)


def test_rejects_jpeg_missing_only_its_end_marker(jpeg: bytes) -> None:
    assert jpeg.endswith(b"\xff\xd9")
    with pytest.raises(DataFormatError, match="truncated"):
        decode_image(jpeg[:-2])


def test_rejects_truncated_png(photo: np.ndarray) -> None:
    data = _png(photo)
    with pytest.raises(DataFormatError, match="truncated PNG"):
        decode_image(data[: int(len(data) * 0.6)])


def test_rejects_corrupt_jpeg_header(jpeg: bytes) -> None:
    # the segment after APP0 (FF E0, length 16) must start with a marker byte FF
    assert jpeg[2:4] == b"\xff\xe0" and jpeg[4:6] == b"\x00\x10" and jpeg[20] == 0xFF
    bad = jpeg[:20] + b"\x12" + jpeg[21:]
    with pytest.raises(DataFormatError, match=r"corrupt JPEG .no marker at byte 20"):
        decode_image(bad)


def test_png_bomb_header_is_refused_before_decoding() -> None:
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    data = (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )
    t0 = time.perf_counter()
    with pytest.raises(DataFormatError, match="100000x100000 pixels"):
        decode_image(data)
    assert time.perf_counter() - t0 < 0.5


def test_jpeg_bomb_header_is_refused_before_decoding() -> None:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 100_000 % 65536, 60_000, 1) + b"\x01\x11\x00"
    data = b"\xff\xd8" + sof + b"\xff\xd9"
    with pytest.raises(DataFormatError, match="60000x34464 pixels"):
        decode_image(data)
    # the limit is configurable: a small header image passes the size check, then fails as
    # a JPEG without image data
    with pytest.raises(DataFormatError, match="without image data"):
        decode_image(data, max_pixels=3_000_000_000)


def test_max_pixels_and_max_bytes(tmp_path: Path, jpeg: bytes) -> None:
    with pytest.raises(DataFormatError, match="640x480 pixels, more than the limit of 1000"):
        decode_image(jpeg, max_pixels=1000)
    with pytest.raises(DataFormatError, match="more than the limit of 1000"):
        decode_image(jpeg, max_bytes=1000)
    p = tmp_path / "big.jpg"
    p.write_bytes(jpeg)
    with pytest.raises(DataFormatError, match=r"big.jpg is .* bytes"):
        decode_image(p, max_bytes=1000)
    with pytest.raises(ParameterError, match="max_pixels"):
        decode_image(jpeg, max_pixels=0)


def test_encode_jpeg_round_trip_and_validation(photo: np.ndarray) -> None:
    small = encode_jpeg(photo, 30)
    large = encode_jpeg(photo, 95)
    assert small.startswith(b"\xff\xd8") and len(small) < len(large)
    gray = encode_jpeg(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))
    assert decode_image(gray).shape == (480, 640, 3)
    with pytest.raises(ParameterError, match="quality"):
        encode_jpeg(photo, 0)
    with pytest.raises(ParameterError, match="img"):
        encode_jpeg(photo.astype(np.float32))
