"""Minimal PNG writer/reader for uint8 RGB strips (report images, `world show` previews).

PNG is zlib-compressed scanlines plus CRC'd chunks, so the standard library is enough; this
keeps image output free of heavy dependencies and of a display (pygame needs neither, but its
surfarray insists on (W, H) layout and a video subsystem in some builds).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import torch
from torch import Tensor

from worldplay.errors import WorldplayError
from worldplay.fileio import atomic_write_bytes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ZLIB_LEVEL = 6        # zlib's default: small files without a slow write
COLOR_RGB = 2         # PNG colour type for 8-bit truecolour


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(img: Tensor) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes."""
    if img.dtype != torch.uint8 or img.dim() != 3 or img.shape[-1] != 3:
        raise WorldplayError(f"PNG writer takes a uint8 (H, W, 3) image, got {img.dtype} {tuple(img.shape)}")
    h, w, _ = img.shape
    rows = torch.cat([torch.zeros(h, 1, dtype=torch.uint8), img.contiguous().reshape(h, w * 3)], 1)  # filter 0
    header = struct.pack(">IIBBBBB", w, h, 8, COLOR_RGB, 0, 0, 0)
    return (PNG_MAGIC + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(rows.numpy().tobytes(), ZLIB_LEVEL)) + _chunk(b"IEND", b""))


def write_png(path: str | Path, img: Tensor) -> Path:
    """Write atomically; returns the path."""
    atomic_write_bytes(path, encode_png(img.cpu()))
    return Path(path)


def decode_png(data: bytes) -> Tensor:
    """Inverse of `encode_png` (filter type 0 only): for tests and round trips."""
    if not data.startswith(PNG_MAGIC):
        raise WorldplayError("not a PNG file")
    pos, w, h, idat = len(PNG_MAGIC), 0, 0, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = torch.frombuffer(bytearray(zlib.decompress(idat)), dtype=torch.uint8).reshape(h, 1 + w * 3)
    return raw[:, 1:].reshape(h, w, 3).clone()


def tile(rows: list[list[Tensor]], gap: int = 4) -> Tensor:
    """Grid of uint8 (H, W, 3) images (all the same size) with `gap` px dark separators."""
    h, w, _ = rows[0][0].shape
    ncol = max(len(r) for r in rows)
    out = torch.full((len(rows) * (h + gap) - gap, ncol * (w + gap) - gap, 3), 24, dtype=torch.uint8)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            out[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = im
    return out


def downscale(img: Tensor, factor: int) -> Tensor:
    """uint8 (H, W, 3) -> area-averaged (H/f, W/f, 3), for compact strips."""
    if factor <= 1:
        return img
    x = img.permute(2, 0, 1)[None].float()                                 # (1, 3, H, W)
    x = torch.nn.functional.avg_pool2d(x, factor)
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
