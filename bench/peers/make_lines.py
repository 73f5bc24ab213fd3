#!/usr/bin/env python3
"""Writes the line-filter input: 2,000,000 random printable lines, about 63 MB (lengths 1..61,
a fixed seed, so every run filters the same bytes). Usage: make_lines.py PATH [LINES]"""
import random
import string
import sys

path = sys.argv[1]
lines = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000_000
rng = random.Random(20260425)
alphabet = string.ascii_letters + string.digits + " .,;:-_"
pool = "".join(rng.choice(alphabet) for _ in range(1 << 16))  # sliced, for speed
with open(path, "w") as f:
    buf = []
    for i in range(lines):
        n = rng.randint(1, 61)
        at = rng.randrange(len(pool) - n)
        buf.append(pool[at:at + n])
        if len(buf) == 65536:
            f.write("\n".join(buf) + "\n")
            buf.clear()
    if buf:
        f.write("\n".join(buf) + "\n")
