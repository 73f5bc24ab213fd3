"""Two threads timestamp their events; a third orders them by timestamp."""
import random
import time

from parafork import snakefish

channel = snakefish.Channel()


def first():
    if random.random() < 0.5:
        time.sleep(0.1)
    channel.send_pyobj((snakefish.get_timestamp_serialized(), "explosion"))


def second():
    channel.send_pyobj((snakefish.get_timestamp_serialized(), "implosion"))


def orderer():
    events = sorted([channel.receive_pyobj(True), channel.receive_pyobj(True)])
    print("%s happened before %s" % (events[0][1], events[1][1]))
    return events


threads = [snakefish.Thread(f) for f in (first, second, orderer)]
before = snakefish.get_timestamp()
for t in threads:
    t.start()
for t in threads:
    t.join()
    assert t.get_exit_status() == 0
events = threads[2].get_result()
after = snakefish.get_timestamp()
assert {e[1] for e in events} == {"explosion", "implosion"}
assert before < events[0][0] <= events[1][0] < after  # one clock across the processes
channel.dispose()
for t in threads:
    t.dispose()
