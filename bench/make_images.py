#!/usr/bin/env python3
"""Generated images for the feature-cache step of bench/gpu_check.sh: N RGB PNGs of SIZE x SIZE
pixels (default 227, CaffeNet's input, so that no resize hides in the timing), named
00000.png ... in OUT. Standard library only (the GPU machine may have no numpy or PIL).

Each image is two bands of slanted stripes (random colours, period, duty and slant per band,
deterministic in --seed and the index): cheap to make row by row (a row is a slice of a
periodic strip), varied enough that different channels pick different images.

`treevis demo-gallery` makes the demo's 64-px images instead (the network then upsamples
them); gpu_check.sh falls back to it where there is no python3.

Run:  python3 bench/make_images.py --out DIR [--n 5000] [--size 227] [--seed 0]
"""

import argparse
import os
import random
import struct
import zlib


def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png(width, height, rows):
    """An 8-bit RGB PNG of `rows` (bytes of width*3 each), filter 0, fast deflate."""
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1))
            + chunk(b"IEND", b""))


def strip(rng, size):
    """A periodic row of two colours with a linear ramp between them, `size + period` wide,
    and its period."""
    period = rng.randint(6, 48)
    duty = rng.uniform(0.2, 0.8)
    a = [rng.randint(0, 255) for _ in range(3)]
    b = [rng.randint(0, 255) for _ in range(3)]
    px = bytearray()
    for x in range(size + period):
        t = (x % period) / period
        w = min(1.0, abs(t - duty) * 4.0) if t < duty else 0.0
        px.extend(int(a[c] * w + b[c] * (1.0 - w)) for c in range(3))
    return bytes(px), period


def image(seed, index, size):
    rng = random.Random(seed * 1_000_003 + index)
    split = rng.randint(size // 4, 3 * size // 4)
    rows = []
    for lo, hi in ((0, split), (split, size)):
        s, period = strip(rng, size)
        slant = rng.randint(-3, 3)
        for y in range(lo, hi):
            off = (y * slant) % period * 3
            rows.append(s[off:off + size * 3])
    return png(size, size, rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=227)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for i in range(args.n):
        path = os.path.join(args.out, f"{i:05d}.png")
        with open(path + ".tmp", "wb") as f:
            f.write(image(args.seed, i, args.size))
        os.replace(path + ".tmp", path)
    print(f"wrote {args.n} images of {args.size}x{args.size} to {args.out}")


if __name__ == "__main__":
    main()
