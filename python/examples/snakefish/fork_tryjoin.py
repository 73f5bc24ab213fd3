"""Poll a thread with try_join until it is done."""
import time

from parafork import snakefish


def f():
    time.sleep(0.5)
    return list(range(200))


t = snakefish.Thread(f)
t.start()
start, tries = time.time(), 0
while not t.try_join():
    tries += 1
    print("not done yet, sleeping 100 ms")
    time.sleep(0.1)
print("joined after %.2f s and %d tries" % (time.time() - start, tries))
assert tries >= 1
assert t.get_exit_status() == 0
assert t.get_result() == list(range(200))
t.dispose()
