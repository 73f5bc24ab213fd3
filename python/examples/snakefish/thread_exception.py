"""A thread that raises: join succeeds (exit status 0), get_result raises, globals still merge."""
import time

from parafork import snakefish

a = 1


def f():
    global a
    a = [[42]]
    raise Exception("triggered")


def extract(child_globals):
    return {"a": child_globals["a"]}


def merge(parent_globals, extracted):
    parent_globals.update(extracted)


t = snakefish.Thread(f, extract, merge)
t.start()
while not t.try_join():
    time.sleep(0.1)
assert t.get_exit_status() == 0
try:
    t.get_result()
    raise AssertionError("get_result should have raised")
except Exception as e:
    print("exception from f():", type(e).__name__, e)
    assert type(e) is Exception and str(e) == "triggered"
print("a after:", a)
assert a == [[42]]
t.dispose()
