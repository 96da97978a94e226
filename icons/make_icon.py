#!/usr/bin/env python3
"""Draws the Onstage app icon (icons/icon.png): a spotlight falling on a stage.

Standard library only (zlib + struct), so any machine can regenerate it:
    python3 icons/make_icon.py
Tauri needs an RGBA PNG; the corners are transparent.
"""
import math
import os
import struct
import zlib

SIZE = 256


def pixel(x, y):
    # Rounded square with an anti-aliased edge: coverage from the distance to the shape.
    r = SIZE * 0.18
    cx = min(max(x, r), SIZE - 1 - r)
    cy = min(max(y, r), SIZE - 1 - r)
    d = math.hypot(x - cx, y - cy) - r
    alpha = max(0.0, min(1.0, 0.5 - d))
    if alpha == 0.0:
        return (0, 0, 0, 0)
    t = y / SIZE
    # Night-blue to violet background.
    bg = (int(30 + 60 * t), int(24 + 10 * t), int(70 + 60 * t))
    col = bg
    # The spotlight: a cone from the top centre widening towards the floor.
    top, floor = SIZE * 0.12, SIZE * 0.72
    if top <= y <= floor:
        half = 8 + (y - top) / (floor - top) * SIZE * 0.30
        dx = abs(x - SIZE / 2)
        if dx < half:
            k = 0.35 * (1 - dx / half) + 0.15
            col = tuple(int(c + (255 - c) * k) for c in col)
    # The lit ellipse on the floor.
    ex, ey = (x - SIZE / 2) / (SIZE * 0.33), (y - floor) / (SIZE * 0.07)
    if ex * ex + ey * ey <= 1.0:
        col = (255, 214, 120)
    # The stage edge.
    if floor + SIZE * 0.08 <= y <= floor + SIZE * 0.13 and SIZE * 0.12 <= x <= SIZE * 0.88:
        col = (240, 240, 250)
    return (*col, int(255 * alpha))


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def main():
    rows = bytearray()
    for y in range(SIZE):
        rows.append(0)  # filter: none
        for x in range(SIZE):
            rows.extend(pixel(x + 0.5, y + 0.5))
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(bytes(rows), 9))
    png += chunk(b"IEND", b"")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "icon.png")
    with open(out, "wb") as f:
        f.write(png)


if __name__ == "__main__":
    main()
