"""parafork.Process (methods run in a forked backend), select and Selector."""

import os
import signal
import textwrap
import time

import pytest
from conftest import interrupted_run

import parafork as pf


class Worker(pf.Process):
    def __init__(self, name=None):
        super().__init__(name)
        self.base = 0
        self.seen = []

    def pre_run(self):
        self.base = 100
        self.emit(("pre_run", os.getpid()))

    def post_run(self):
        self.emit(("post_run", len(self.seen)))

    def add(self, x, *, plus=0):
        return self.base + x + plus

    def note(self, x):
        self.seen.append(x)

    def seen_so_far(self):
        return list(self.seen)

    def tell(self, x):
        self.emit(("told", x))
        return x * 2

    def fail(self, msg):
        raise ValueError(msg)

    def nap(self, s):
        time.sleep(s)
        return s

    def whoami(self):
        return os.getpid()


@pytest.mark.timeout(30)
def test_call_ask_messages_and_the_run_hooks():
    w = Worker("w1")
    w.start()
    kind, pid = w.receive(timeout=10)
    assert kind == "pre_run" and pid == w.pid != os.getpid()
    assert w.ask("whoami").result(10) == w.pid
    assert w.ask("add", 1, plus=2).result(10) == 103  # pre_run's state, in the backend
    assert w.base == 0                                   # the frontend's copy is untouched
    for i in range(100):
        w.call("note", i)
    assert w.ask("seen_so_far").result(10) == list(range(100))  # calls run in send order
    assert w.ask("tell", 21).result(10) == 42            # an ask that emits before it answers
    assert w.receive(timeout=10) == ("told", 21)
    with pytest.raises(IndexError):
        w.receive(block=False)
    with pytest.raises(TimeoutError):
        w.receive(timeout=0.05)
    assert w.stop() == 0
    assert w.receive() == ("post_run", 100)               # emitted before the end: still there
    assert w.exitcode == 0 and not w.is_alive()
    with pytest.raises(pf.Error):
        w.receive()                                      # nothing left, the backend ended


@pytest.mark.timeout(30)
def test_a_method_that_raises_fails_its_future_and_the_process_keeps_serving():
    w = Worker()
    w.start()
    w.receive(timeout=10)
    f = w.ask("fail", "bad input")
    with pytest.raises(ValueError, match="bad input") as info:
        f.result(10)
    assert isinstance(info.value.__cause__, pf.RemoteTraceback)
    assert "in fail" in str(info.value.__cause__)
    assert f.exception() is info.value  # asked again: the same exception
    with pytest.raises(ValueError):
        f.result()
    assert w.ask("add", 1).result(10) == 101
    # a call has no future: its exception comes out of receive(), in order
    w.call("fail", "in a call")
    w.call("tell", 5)
    with pytest.raises(ValueError, match="in a call"):
        w.receive(timeout=10)
    assert w.receive(timeout=10) == ("told", 5)
    with pytest.raises(AttributeError):
        w.ask("no_such_method").result(10)
    assert w.stop() == 0


@pytest.mark.timeout(30)
def test_future_timeout_and_done():
    w = Worker()
    w.start()
    f = w.ask("nap", 0.5)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.01)
    assert f.result(timeout=10) == 0.5
    assert f.done()
    w.stop()


@pytest.mark.timeout(30)
def test_sigkill_fails_pending_and_later_asks_with_worker_died():
    w = Worker()
    w.start()
    w.receive(timeout=10)
    pending = w.ask("nap", 20)
    t0 = time.monotonic()
    os.kill(w.pid, signal.SIGKILL)
    with pytest.raises(pf.WorkerDied) as info:
        pending.result(timeout=15)
    assert time.monotonic() - t0 < 10  # seen by the pidfd, not by waiting out the nap
    assert info.value.pid == w.pid and info.value.signal == signal.SIGKILL
    with pytest.raises(pf.WorkerDied):
        w.ask("add", 1).result(timeout=5)
    with pytest.raises(pf.WorkerDied):
        w.call("note", 1)
    assert w.exitcode == -signal.SIGKILL
    w.terminate()


@pytest.mark.timeout(30)
def test_an_unstopped_process_is_stopped_when_dropped():
    w = Worker()
    w.start()
    pid = w.pid
    assert w.ask("whoami").result(10) == pid
    del w  # the backend is stopped and reaped (the fixture checks no child is left)
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] != "Z"


@pytest.mark.timeout(30)
def test_not_started_and_started_twice():
    w = Worker()
    with pytest.raises(pf.Error):
        w.call("note", 1)
    w.start()
    with pytest.raises(pf.Error):
        w.start()
    w.stop()


@pytest.mark.timeout(60)
def test_ctrl_c_while_waiting_stops_the_backend():
    script = textwrap.dedent("""
        import os, time, parafork as pf
        class Slow(pf.Process):
            def nap(self, s):
                time.sleep(s)
        w = Slow()
        w.start()
        print("ready", flush=True)
        try:
            w.ask("nap", 30).result()
        except KeyboardInterrupt:
            def ppid(x):
                try:
                    return open(f"/proc/{x}/stat").read().rsplit(")", 1)[1].split()[1]
                except OSError:
                    return None
            kids = [x for x in os.listdir("/proc") if x.isdigit() and ppid(x) == str(os.getpid())]
            print("interrupted", len(kids), w.is_alive(), flush=True)
    """)
    assert interrupted_run(script, 0.5) == ["interrupted", "0", "False"]


# ---- select ---------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_select_over_processes_and_a_pipe():
    ws = [Worker(f"s{i}") for i in range(4)]
    for w in ws:
        w.start()
    for w in ws:
        w.receive(timeout=10)  # pre_run's message
    r, wr = os.pipe()
    try:
        assert pf.select(ws + [r], timeout=0.05) == []
        ws[2].call("tell", 7)
        assert pf.select(ws + [r], timeout=10) == [ws[2]]
        assert ws[2].receive(block=False) == ("told", 7)
        os.write(wr, b"x")
        assert pf.select(ws + [r], timeout=10) == [r]
        os.read(r, 1)

        sel = pf.Selector()
        for w in ws:
            sel.register(w)
        sel.register(r)
        ws[0].call("tell", 1)
        ws[3].call("tell", 3)
        got = set()
        while len(got) < 2:
            for w in sel.select(timeout=10):
                got.add(w.receive(block=False)[1])
        assert got == {1, 3}
        # Two messages read off the socket together: the second is ready though the
        # socket is empty by then.
        ws[1].call("tell", 10)
        ws[1].call("tell", 11)
        assert ws[1].ask("whoami").result(10) == ws[1].pid  # both messages are in the frontend now
        assert ws[1].receive(block=False) == ("told", 10)
        assert sel.select(timeout=0.5) == [ws[1]]
        assert ws[1].receive(block=False) == ("told", 11)
        # a dead backend is ready: receive says why
        os.kill(ws[0].pid, signal.SIGKILL)
        assert sel.select(timeout=10) == [ws[0]]
        with pytest.raises(pf.WorkerDied):
            ws[0].receive(block=False)
        sel.unregister(ws[0])
        assert len(sel) == 4
    finally:
        os.close(r)
        os.close(wr)
        for w in ws:
            w.terminate()


class Painter(pf.Process):
    def paint(self, attr, value):
        getattr(self, attr)[...] = value

    def total(self, attr):
        return float(getattr(self, attr).sum())


@pytest.mark.timeout(30)
def test_shared_arrays_made_before_and_after_start_are_the_backends_too():
    np = pytest.importorskip("numpy")
    w = Painter()
    w.share("before", pf.SharedArray((4, 5), dtype="float64"))
    w.start()
    w.ask("paint", "before", 2.0).result(10)
    assert (w.before == 2.0).all()
    a = w.share("after", pf.SharedArray((3, 7), dtype="int32"))
    a[...] = 5
    assert w.ask("total", "after").result(10) == 5 * 21  # the backend reads the frontend's writes
    w.call("paint", "after", np.int32(9))
    w.flush()
    assert w.ask("total", "after").result(10) == 9 * 21
    assert (a == 9).all()                                 # and the frontend reads the backend's
    with pytest.raises(TypeError):
        w.share("slice", pf.SharedArray((10,))[2:5])
    w.stop()
