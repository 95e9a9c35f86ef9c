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


def jpeg_claiming(data: bytes, width: int, height: int) -> bytes:
    """The JPEG ``data`` with its frame header (SOF0/SOF2) patched to claim width x height pixels."""
    offset = 2
    while data[offset] == 0xFF and data[offset + 1] not in (0xC0, 0xC1, 0xC2):
        offset += 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
    return data[: offset + 5] + struct.pack(">HH", height, width) + data[offset + 9 :]


def cut_points(size: int, head: int = 2048, n_after: int = 20) -> list[int]:
    """Every length below ``head`` (capped by the file) and ``n_after`` lengths spread over the rest."""
    after = np.linspace(head, size - 1, n_after).astype(int).tolist() if size > head else []
    return list(range(min(head, size))) + sorted(set(after))


def make_cut_files(folder: Path, originals: dict[str, bytes], head: int = 2048, n_after: int = 20) -> list[Path]:
    """Write every original and its cuts (see :func:`cut_points`) into ``folder``; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in originals.items():
        stem, suffix = name.rsplit(".", 1)
        written.append(folder / name)
        written[-1].write_bytes(data)
        for cut in cut_points(len(data), head, n_after):
            written.append(folder / f"{stem}_cut{cut:07d}.{suffix}")
            written[-1].write_bytes(data[:cut])
    return written


def make_hostile_files(folder: Path, photo: Path) -> dict[str, Path]:
    """Entries a user's folder brings besides images: a FIFO, links to nothing or to themselves, a folder and
    an undecodable name among good files, and JPEGs from the real ``photo`` that decoders fill with grey."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    data = photo.read_bytes()
    files = {"good": folder / "good.jpg", "bad_name": Path(os.fsdecode(os.fsencode(folder) + b"/bad\xff\xfe.jpg"))}
    files["good"].write_bytes(data)
    files["bad_name"].write_bytes(data)
    files["fifo"] = folder / "pipe.jpg"
    os.mkfifo(files["fifo"])
    files["broken_link"] = folder / "gone.jpg"
    files["broken_link"].symlink_to(folder / "missing.jpg")
    files["link_loop"] = folder / "loop.jpg"
    files["link_loop"].symlink_to(files["link_loop"])
    files["header_cut"] = folder / "header_cut.jpg"  # inside its EXIF segment, as the Flickr photo of the issue
    files["header_cut"].write_bytes(data[:2000])
    files["eoi_cut"] = folder / "eoi_cut.jpg"  # coded data cut, then closed by an end-of-image marker
    files["eoi_cut"].write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    files["too_many_pixels"] = folder / "too_many_pixels.jpg"
    files["too_many_pixels"].write_bytes(jpeg_claiming(data, 8000, 8000))
    return files
