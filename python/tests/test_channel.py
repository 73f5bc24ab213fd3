"""parafork.Channel: pickled objects through a shared-memory ring shared by forked processes."""

import os
import signal
import time

import pytest

import parafork as pf

pytestmark = pytest.mark.timeout(30)


def test_round_trip_in_one_process():
    ch = pf.Channel(1 << 16)
    ch.send({"a": [1, 2.5, None]})
    ch.send(b"raw")
    assert ch.receive() == {"a": [1, 2.5, None]}
    assert ch.receive() == b"raw"


def test_child_to_parent_and_parent_to_child():
    up, down = pf.Channel(), pf.Channel()

    def echo():
        x = down.receive()
        up.send(("echo", x))

    t = pf.Thread(echo)
    t.start()
    down.send(41)
    assert up.receive() == ("echo", 41)
    t.join()


def test_message_larger_than_the_channel_streams():
    ch = pf.Channel(4096)
    payload = os.urandom(3 << 20)  # 768 times the ring

    t = pf.Thread(lambda: ch.send(payload))
    t.start()
    assert ch.receive() == payload
    t.join()
    assert ch.size == 4096


def test_many_senders_every_message_once_and_whole():
    ch = pf.Channel(1 << 14)
    senders = [pf.Thread(lambda k=k: [ch.send((k, i, bytes(i % 3000))) for i in range(200)]) for k in range(4)]
    for t in senders:
        t.start()
    got = [ch.receive() for _ in range(800)]
    for t in senders:
        t.join()
    assert sorted((k, i) for k, i, _ in got) == [(k, i) for k in range(4) for i in range(200)]
    assert all(len(b) == i % 3000 for _, i, b in got)


def test_nonblocking_receive_on_empty_is_index_error():
    ch = pf.Channel()
    with pytest.raises(IndexError):
        ch.receive(block=False)
    ch.send(1)
    assert ch.receive(block=False) == 1


def holder():
    """A child holding every channel made before it (both ends), until it is dropped."""
    t = pf.Thread(time.sleep, args=(60,))
    t.start()
    return t


def test_receive_timeout():
    ch = pf.Channel()
    h = holder()  # a process that could still send: the wait is a real one
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        ch.receive(timeout=0.1)
    assert time.monotonic() - start >= 0.09
    del h


def test_waiting_with_no_sender_left_is_channel_closed_not_a_hang():
    ch = pf.Channel()
    with pytest.raises(pf.ChannelClosed):
        ch.receive()  # the caller receives first, so it is no sender, and there is no other


def test_full_channel_try_send_and_send_timeout():
    ch = pf.Channel(4096)
    h = holder()  # a process that could still receive
    assert ch.send(bytes(3000), block=False) is True
    assert ch.send(bytes(3000), block=False) is False  # no room now
    with pytest.raises(TimeoutError):
        ch.send(bytes(3000), timeout=0.1)
    assert len(ch.receive()) == 3000
    del h


def test_send_into_a_full_channel_nobody_reads_is_channel_closed():
    ch = pf.Channel(4096)
    ch.send(bytes(3000))
    with pytest.raises(pf.ChannelClosed):
        ch.send(bytes(3000))  # would wait forever: the sender gave its receive end up


def test_closed_when_every_sender_is_gone():
    ch = pf.Channel()
    t = pf.Thread(lambda: ch.send("last"))
    t.start()
    t.join()
    ch.close()  # the caller gives its own end up too
    assert ch.receive() == "last"
    with pytest.raises(pf.ChannelClosed):
        ch.receive()


def test_dead_sender_does_not_wedge_the_channel():
    ch = pf.Channel(4096)

    def stuck():
        ch.send(bytes(1 << 20))  # streams, and waits for room: nobody reads

    t = pf.Thread(stuck)
    t.start()
    time.sleep(0.2)
    os.kill(t.pid, signal.SIGKILL)
    with pytest.raises(pf.WorkerDied):
        t.join()
    t = pf.Thread(lambda: ch.send("after"))
    t.start()
    assert ch.receive() == "after"  # the half-sent message was dropped, never delivered torn
    t.join()


def test_dispose_and_bad_sizes():
    ch = pf.Channel(100)
    ch.dispose()
    with pytest.raises(pf.ChannelClosed):
        ch.send(1)
    with pytest.raises(ValueError):
        pf.Channel(0)


def test_channel_does_not_pickle():
    import pickle
    with pytest.raises(TypeError):
        pickle.dumps(pf.Channel())


def interrupt_in(seconds):
    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, raise_interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return old


def test_ctrl_c_while_receiving_is_keyboard_interrupt():
    ch = pf.Channel()
    h = holder()
    old = interrupt_in(0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            ch.receive()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    del h


def test_ctrl_c_while_a_generator_computes_is_keyboard_interrupt():
    def slow():
        time.sleep(60)
        yield 1

    g = pf.Generator(slow)
    g.start()
    old = interrupt_in(0.2)
    try:
        with pytest.raises(KeyboardInterrupt):
            g.next()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    del g  # its child is stopped and reaped
