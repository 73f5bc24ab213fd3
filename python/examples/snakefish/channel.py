"""Three threads talk through one channel: two send, the third receives, blocking and not."""
import time

from parafork import snakefish

channel = snakefish.Channel()


def sender_one():
    print("sender 1: sending a list")
    channel.send_pyobj([42])
    time.sleep(0.5)
    print("sender 1: sending a dict after 500 ms")
    channel.send_pyobj({"1": 1})


def sender_two():
    print("sender 2: sending a tuple")
    channel.send_pyobj((42,))


def receiver():
    got = [channel.receive_pyobj(True), channel.receive_pyobj(True)]
    print("receiver: got", got[0], "and", got[1])
    start = time.time()
    while True:  # the third message comes late: poll without blocking
        try:
            got.append(channel.receive_pyobj(False))
            break
        except IndexError:
            print("receiver: nothing yet, sleeping 100 ms")
            time.sleep(0.1)
    print("receiver: got", got[2], "after %.2f s" % (time.time() - start))
    return got


threads = [snakefish.Thread(f) for f in (sender_one, sender_two, receiver)]
for t in threads:
    t.start()
for i, t in enumerate(threads, 1):
    t.join()
    assert t.get_exit_status() == 0
    print("thread", i, "exit status", t.get_exit_status(), "result", t.get_result())

got = threads[2].get_result()
assert sorted(map(repr, got)) == sorted(map(repr, [[42], (42,), {"1": 1}]))
assert got[2] == {"1": 1}  # sent 500 ms after the others

channel.dispose()
for t in threads:
    t.dispose()
