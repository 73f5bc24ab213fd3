"""An endless generator in a child: values blocking and not, then try_join stops it."""
import random
import time

from parafork import snakefish

a = 1


def f():
    global a
    a = [42]
    while True:
        time.sleep(0.1)
        yield random.random()


def extract(child_globals):
    return {"a": child_globals["a"]}


def merge(parent_globals, extracted):
    parent_globals.update(extracted)


print("a before:", a)
g = snakefish.Generator(f, extract, merge)
g.start()

values = [g.next(True) for _ in range(3)]
print("blocking:", values)

for _ in range(3):
    while True:
        try:
            values.append(g.next(False))
            break
        except IndexError:
            print("nothing yet, sleeping 100 ms")
            time.sleep(0.1)
print("all:", values)
assert len(values) == 6 and all(0 <= v < 1 for v in values)
assert len(set(values)) == 6

while not g.try_join():
    time.sleep(0.1)
assert g.get_exit_status() == 0
print("a after:", a)
assert a == [42]
g.dispose()
