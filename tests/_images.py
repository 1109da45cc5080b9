"""Crafted image bytes shared by the test packages (no pixel decoding needed to make them)."""

from __future__ import annotations

import struct
import zlib


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(
        ">I", zlib.crc32(kind + payload))


def bomb_png(width: int = 100_000, height: int = 100_000, *, depth: int = 8,
             color: int = 2) -> bytes:
    """A tiny PNG whose (valid) header claims ``width × height`` pixels (RGB by default;
    ``color=0`` gray) with a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))
