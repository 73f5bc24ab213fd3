"""Every wait sleeps until its event: a blocked receive or next() does not wake on a timer.
(A wait in slices woke 10 to 20 times a second; the limits leave room for a noisy machine.)"""

import threading
import time

import pytest

import parafork as pf


def voluntary_switches():
    with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def test_a_receive_with_a_timeout_sleeps_until_it_runs_out():
    ch = pf.Channel(4096)
    holder = pf.Thread(time.sleep, args=(60,))  # a process that could still send
    holder.start()
    before = voluntary_switches()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        ch.receive(timeout=1.5)
    assert time.monotonic() - t0 >= 1.4
    assert voluntary_switches() - before < 5
    del holder  # stops and reaps it


def slow_value():
    time.sleep(1.5)
    yield 42


def test_next_on_a_generator_sleeps_until_its_value_comes():
    g = pf.Generator(slow_value)
    g.start()
    try:
        before = voluntary_switches()
        assert g.next() == 42
        assert voluntary_switches() - before < 5
    finally:
        g.join()


def test_a_pool_waiting_for_a_long_task_sleeps_until_it_answers():
    with pf.Pool(1) as pool:
        pool.apply(abs, (1,))  # the worker is up
        before = voluntary_switches()
        pool.apply(time.sleep, (1.5,))  # this thread drives the engine
        assert voluntary_switches() - before < 5
        r = pool.apply_async(time.sleep, (1.5,))  # the handler thread may drive
        before = voluntary_switches()
        r.get()
        assert voluntary_switches() - before < 5
