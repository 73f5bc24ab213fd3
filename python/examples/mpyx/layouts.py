# The graph shapes of mpyx's API reference, each run with exact counts.
from parafork.mpyx import EZ, As, B, F, Iter, P, S


class Tag(F):
    def setup(self, name):
        self.name_ = name

    def do(self, item):
        self.put(item)


class Data(F):
    def setup(self, n=20):
        for i in range(n):
            self.put(i)


def count(*graph):
    return len(EZ(*graph).list())


assert count(Data(), Tag("a"), Tag("b"), Tag("c")) == 20
assert count([Data(), Tag("a"), Tag("b")]) == 20
assert count([Data(), (Tag("p"), Tag("p")), Tag("end")]) == 20
# two broadcast members: the last stage gets twice the items
assert count(Data(), {Tag("x"), Tag("y")}, Tag("twice")) == 40
assert count(Data(), {Tag("d"), S(Tag("e"), Tag("f"))}) == 40
assert count(Data(), B(Tag("log"), S(Tag("got"), As(4, Tag, "m"), As(2, Tag, "r")), B(Tag("l2"), Tag("c")))) == 80
assert count(Data(), P(Tag("p1"), Tag("p2")), B(Tag("b1"), Tag("b2"))) == 40

g = EZ(Data(), (Tag("p"), Tag("q")), {Tag("x"), Tag("y")}).graph()
assert isinstance(g, list) and isinstance(g[1], tuple) and isinstance(g[2], set)
EZ(Data(), (Tag("p"), Tag("q"))).printLayout()
