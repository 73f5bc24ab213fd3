"""A generator that raises: next() raises it in the caller, then the generator is exhausted."""
import random

from parafork import snakefish

a = 1


def f():
    global a
    a = [[42]]
    yield random.random()
    raise Exception("triggered")


def extract(child_globals):
    return {"a": child_globals["a"]}


def merge(parent_globals, extracted):
    parent_globals.update(extracted)


g = snakefish.Generator(f, extract, merge)
g.start()
seen = []
while True:
    try:
        seen.append(g.next(True))
    except StopIteration:
        print("exhausted")
        break
    except Exception as e:
        print("exception:", type(e).__name__, e)
        seen.append(e)
assert len(seen) == 2 and isinstance(seen[0], float)
assert type(seen[1]) is Exception and str(seen[1]) == "triggered"

g.join()
assert g.get_exit_status() == 0
print("a after:", a)
assert a == [[42]]
g.dispose()
