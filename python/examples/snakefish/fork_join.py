"""A thread changes a global; extract/merge bring the change back at join."""
from typing import Any, Dict, List

from parafork import snakefish

a = 1


def f() -> List[int]:
    global a
    a = list(range(10))
    return list(range(200))


def extract(child_globals: Dict[str, Any]) -> Dict[str, Any]:
    return {"a": child_globals["a"]}


def merge(parent_globals: Dict[str, Any], extracted: Dict[str, Any]) -> None:
    parent_globals.update(extracted)


print("a before:", a)
t = snakefish.Thread(f, extract, merge)
print("alive before start?", t.is_alive())
t.start()
print("alive after start?", t.is_alive())
t.join()
print("alive after join?", t.is_alive())
assert not t.is_alive()

assert t.get_exit_status() == 0
assert t.get_result() == list(range(200))
print("result:", len(t.get_result()), "items")
print("a after:", a)
assert a == list(range(10))
t.dispose()
