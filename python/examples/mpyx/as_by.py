# As and By: several instances of a stage in parallel (As) or each given every item (By).
from parafork.mpyx import EZ, As, By, F, Iter


class SomeTask(F):
    def setup(self, arg1, arg2):
        self.arg1, self.arg2 = arg1, arg2

    def do(self, item):
        self.put((self.arg1, self.arg2, item))


out = EZ(Iter(range(100)), As(8, SomeTask, "arg1", "arg2")).list()
assert sorted(x for _, _, x in out) == list(range(100))
assert {(a, b) for a, b, _ in out} == {("arg1", "arg2")}

out = EZ(Iter(range(100)), By(3, SomeTask, "a", "b")).list()
assert sorted(x for _, _, x in out) == sorted(list(range(100)) * 3)
print(len(out))
