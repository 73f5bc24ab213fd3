# mpyx's built-in stages: Const, Iter, Filter, Map, Batch, Zip, Seq, Print, Stamp, Read, Write.
import tempfile
from pathlib import Path

from parafork.mpyx import EZ, Batch, Const, Filter, Iter, Map, Print, Read, Seq, Stamp, Write, Zip


def square(x):
    return x * x


def neg(x):
    return -x


assert EZ(Const("x", 5)).list() == ["x"] * 5
assert EZ(Iter(range(10)), Filter(lambda x: x % 2), Map(square)).list() == [1, 9, 25, 49, 81]
assert EZ(Iter(range(7)), Batch(3)).list() == [[0, 1, 2], [3, 4, 5], [6]]
assert EZ(Iter(range(50)), Seq((square, square, square))).list() == [x * x for x in range(50)]
rows = EZ(Iter(range(20)), Zip(square, neg)).list()
assert sorted(sorted(r) for r in rows) == sorted(sorted([x * x, -x]) for x in range(20))
assert EZ(Iter(["a", "b"]), Print("item:"), Stamp()).list() == ["a", "b"]

with tempfile.TemporaryDirectory() as d:
    src, dst = Path(d, "in.txt"), Path(d, "out.txt")
    src.write_text("".join(f"line {i}\n" for i in range(100)))
    EZ(Read(str(src)), Map(str.upper), Write(str(dst))).join()
    assert dst.read_text() == src.read_text().upper()
