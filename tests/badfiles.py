"""A generated corpus of bad and odd image files, as real data brings them."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import write_image


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, with a few bytes of pixel data: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def make_bad_files(folder: Path) -> dict[str, Path]:
    """Write the corpus; return name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_image(folder / "good.jpg", seed=1, size=(120, 90))
    files = {"good": good}
    whole = good.read_bytes()
    files["truncated"] = folder / "truncated.jpg"
    files["truncated"].write_bytes(whole[: len(whole) // 2])
    files["empty"] = folder / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["garbage"] = folder / "garbage.png"
    files["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["bomb"] = folder / "bomb.png"
    files["bomb"].write_bytes(png_header_only(100_000, 100_000))
    rgb = np.asarray(Image.open(good).convert("RGB"))
    files["cmyk"] = folder / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(files["cmyk"])
    files["gray16"] = folder / "gray16.png"
    Image.fromarray((np.linspace(0, 65535, 90 * 120).reshape(90, 120)).astype(np.uint16)).save(files["gray16"])
    files["rgba"] = folder / "rgba.png"
    alpha = np.zeros((90, 120, 1), np.uint8)  # fully transparent: must come out white
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA").save(files["rgba"])
    files["palette"] = folder / "palette.gif"
    Image.fromarray(rgb).convert("P").save(files["palette"])
    files["webp"] = folder / "image.webp"
    Image.fromarray(rgb).save(files["webp"])
    files["bmp"] = folder / "image.bmp"
    Image.fromarray(rgb).save(files["bmp"])
    files["tiff"] = folder / "image.tiff"
    Image.fromarray(rgb).save(files["tiff"])
    return files
