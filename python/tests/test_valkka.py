"""parafork.valkka: valkka.multiprocess's API, its faults turned into errors instead of hangs."""

import gc
import os
import signal
import time

import pytest
from conftest import interrupted_run

import parafork as pf
from parafork.valkka import (EventGroup, MessageObject, MessageProcess, NotEnoughEvents, SyncIndex,
                             safe_select)


class Echo(MessageProcess):
    def __init__(self, name="echo"):
        super().__init__(name)
        self.eg = EventGroup(4)
        self.count = 0

    def preRun__(self):
        self.count = 1000

    def postRun__(self):
        self.send_out__(MessageObject("bye", count=self.count))

    def c__echo(self, value=None):
        self.count += 1
        self.send_out__(MessageObject("echo", value=value, count=self.count))

    def c__answer(self, value=None):
        self.send_out__(MessageObject("noise"))
        self.return_out__(value * 2)

    def c__fail(self, why="no"):
        raise RuntimeError(why)

    def c__sync(self, sync_index=None, nap=0.0):
        time.sleep(nap)
        self.eg.set(sync_index)

    def c__pid(self):
        self.send_out__(MessageObject("pid", pid=os.getpid()))


def finish(*ps):
    for p in ps:
        p.terminate()
        for e in getattr(p, "eg", EventGroup(0)).events:
            e.close()  # a traceback pytest keeps may hold the process: close its eventfds now


@pytest.mark.timeout(30)
def test_a_bare_select_sees_messages_already_in_the_frontend():
    """valkka programs call select.select on their pipes: a message read off the socket
    together with another (or held by returnFromBack) must still make the pipe readable."""
    import select
    p = Echo()
    pipe = p.getPipe()
    p.start()

    def readable(t=0):
        return select.select([pipe], [], [], t)[0] == [pipe]

    assert not readable()
    p.sendMessageToBack(MessageObject("echo", value=1))
    p.sendMessageToBack(MessageObject("echo", value=2))
    p.sendMessageToBack(MessageObject("answer", value=3))
    assert p.returnFromBack() == 6      # reads both echoes and the noise on the way
    for want in (1, 2):
        assert readable()
        assert pipe.recv()["value"] == want
    assert readable()
    assert pipe.recv()() == "noise"
    assert not readable()
    # Two messages in one read: the socket is empty after the first recv, the pipe is not.
    p.sendMessageToBack(MessageObject("echo", value=4))
    p.sendMessageToBack(MessageObject("echo", value=5))
    assert p.ask("routeMainPipe__", MessageObject("pid")).result(10) is None
    for want in (4, 5):
        assert readable(10)
        assert pipe.recv()["value"] == want
    assert readable(10) and pipe.recv()() == "pid"
    assert not readable()
    p.stop()
    assert readable(10)                 # ended: readable for good, and recv says so
    assert pipe.recv()() == "bye"
    with pytest.raises(pf.Error):
        pipe.recv()
    assert readable()


def test_message_object():
    m = MessageObject("cmd", a=1, b="x")
    assert m() == "cmd" and m["a"] == 1 and m["b"] == "x"
    assert "cmd" in str(m)
    with pytest.raises(KeyError):
        m["c"]


@pytest.mark.timeout(30)
def test_commands_messages_and_the_run_hooks():
    p = Echo()
    pipe = p.getPipe()
    assert p.getPipe() is pipe
    p.start()
    for i in range(5):
        p.sendMessageToBack(MessageObject("echo", value=i))
    got = []
    while len(got) < 5:
        r, _, _ = safe_select([pipe], [], [], timeout=10)
        assert r == [pipe]
        msg = pipe.recv()
        got.append((msg(), msg["value"], msg["count"]))
    assert got == [("echo", i, 1001 + i) for i in range(5)]  # preRun__ ran in the backend
    assert p.count == 0                                        # the frontend's copy did not change
    p.sendMessageToBack(MessageObject("answer", value=21))
    assert p.returnFromBack() == 42
    assert pipe.recv()() == "noise"                            # kept for recv by returnFromBack
    p.sendMessageToBack(MessageObject("no_such_command"))      # logged in the backend, ignored
    p.stop()
    msg = pipe.recv()
    assert msg() == "bye" and msg["count"] == 1005             # postRun__ ran
    finish(p)


@pytest.mark.timeout(30)
def test_a_raising_backend_method_reaches_the_frontend_and_the_backend_keeps_serving():
    p = Echo()
    p.start()
    p.sendMessageToBack(MessageObject("fail", why="broken"))
    p.sendMessageToBack(MessageObject("echo", value="after"))
    with pytest.raises(RuntimeError, match="broken") as info:
        p.getPipe().recv()
    assert isinstance(info.value.__cause__, pf.RemoteTraceback)
    assert p.getPipe().recv()["value"] == "after"
    p.stop()
    finish(p)


@pytest.mark.timeout(30)
def test_sync_index_waits_for_the_backend_and_fails_if_it_dies():
    p = Echo()
    p.start()
    with SyncIndex(p.eg) as i:
        p.sendMessageToBack(MessageObject("sync", sync_index=i, nap=0.1))
    assert len(p.eg.index) == 4  # released
    with pytest.raises(TimeoutError):
        with SyncIndex(p.eg, timeout=0.05) as i:
            p.sendMessageToBack(MessageObject("sync", sync_index=i, nap=0.5))
    p.sendMessageToBack(MessageObject("pid"))
    pid = p.getPipe().recv()["pid"]
    t0 = time.monotonic()
    with pytest.raises(pf.WorkerDied) as info:
        with SyncIndex(p.eg) as i:
            p.sendMessageToBack(MessageObject("sync", sync_index=i, nap=30))
            os.kill(pid, signal.SIGKILL)
    assert time.monotonic() - t0 < 10
    assert info.value.pid == pid and info.value.signal == signal.SIGKILL
    with pytest.raises(pf.WorkerDied):
        p.sendMessageToBack(MessageObject("echo"))
    p.stop()  # a dead backend: nothing to wait for
    finish(p)


def test_event_group_reserve_and_release():
    eg = EventGroup(2)
    a, ea = eg.reserve()
    b, eb = eg.reserve()
    with pytest.raises(NotEnoughEvents):
        eg.reserve()
    eg.set(a)
    assert ea.is_set() and not eb.is_set()
    assert eg.fromIndex(b) is eb and eg.asIndex(ea) == a
    eg.release(ea)
    eg.release_ind(b)
    assert sorted(eg.index) == [0, 1]
    del ea, eb, eg
    gc.collect()


@pytest.mark.timeout(30)
def test_a_killed_backend_makes_its_pipe_readable_and_recv_raise():
    p = Echo()
    p.start()
    p.sendMessageToBack(MessageObject("pid"))
    pid = p.getPipe().recv()["pid"]
    os.kill(pid, signal.SIGKILL)
    r, _, _ = safe_select([p.getPipe()], [], [], timeout=10)
    assert r == [p.getPipe()]
    with pytest.raises(pf.WorkerDied):
        p.getPipe().recv()
    finish(p)


class Worker(MessageProcess):
    def c__work(self, n=0):
        self.send_out__(MessageObject("done", n=n, square=n * n))


@pytest.mark.timeout(60)
def test_a_manager_of_fifty_workers_selects_over_their_pipes():
    workers = [Worker(f"w{i}") for i in range(50)]
    by_pipe = {w.getPipe(): w for w in workers}
    r, wr = os.pipe()
    try:
        for w in workers:
            w.start()
        todo = {w: 3 for w in workers}
        os.write(wr, b"x")  # any other descriptor is selected with the pipes
        for w in workers:
            w.sendMessageToBack(MessageObject("work", n=0))
        results = []
        stopped = False
        while len(results) < 150 or not stopped:
            reads, _, _ = safe_select(list(by_pipe) + [r], [], [], timeout=10)
            assert reads, "no worker answered"
            for pipe in reads:
                if pipe == r:
                    assert os.read(r, 1) == b"x"
                    stopped = True
                    continue
                w = by_pipe[pipe]
                msg = pipe.recv()
                results.append((w.name, msg["n"], msg["square"]))
                todo[w] -= 1
                if todo[w]:
                    w.sendMessageToBack(MessageObject("work", n=msg["n"] + 1))
        assert sorted(results) == sorted((f"w{i}", n, n * n) for i in range(50) for n in range(3))
        for w in workers:
            w.requestStop()
        for w in workers:
            w.waitStop()
            assert w.exitcode == 0
    finally:
        os.close(r)
        os.close(wr)
        finish(*workers)


class Filler(MessageProcess):
    def c__fill(self, value=0):
        self.frame[...] = value
        self.send_out__(MessageObject("filled"))


@pytest.mark.timeout(30)
def test_share_array_before_and_after_start():
    pytest.importorskip("numpy")
    p = Filler()
    early = p.shareArray("frame", (8, 8), "uint8")
    p.start()
    p.sendMessageToBack(MessageObject("fill", value=3))
    assert p.getPipe().recv()() == "filled" and (early == 3).all()
    late = p.shareArray("frame", (2, 3), "float32")  # replaces the backend's too, in send order
    p.sendMessageToBack(MessageObject("fill", value=1.5))
    assert p.getPipe().recv()() == "filled" and (late == 1.5).all() and (early == 3).all()
    p.stop()
    finish(p)


@pytest.mark.timeout(60)
def test_ctrl_c_in_a_manager_loop_stops_every_worker():
    import textwrap
    script = textwrap.dedent("""
        import os
        from parafork.valkka import MessageProcess, MessageObject, safe_select
        class W(MessageProcess):
            def c__work(self):
                import time
                time.sleep(30)
        ws = [W(f"w{i}") for i in range(5)]
        for w in ws:
            w.start()
            w.sendMessageToBack(MessageObject("work"))
        print("ready", flush=True)
        try:
            safe_select([w.getPipe() for w in ws], [], [])
        except KeyboardInterrupt:
            for w in ws:
                w.stop()
            def ppid(x):
                try:
                    return open(f"/proc/{x}/stat").read().rsplit(")", 1)[1].split()[1]
                except OSError:
                    return None
            kids = [x for x in os.listdir("/proc") if x.isdigit() and ppid(x) == str(os.getpid())]
            print("interrupted", len(kids), sum(w.is_alive() for w in ws), flush=True)
    """)
    assert interrupted_run(script, 0.5) == ["interrupted", "0", "0"]


def test_loggers_are_named_as_valkka_names_them():
    import logging

    class Named(MessageProcess):
        pass

    p = Named(name="my-process")
    assert p.logger.name == "Named.my-process" and str(p) == "<Named.my-process>"
    logger = logging.getLogger("Named")
    logger.propagate = False  # pytest's handlers on the root would count as the logger's own
    Named.formatLogger(logging.DEBUG)
    assert logger.level == logging.DEBUG and logger.handlers
    fmt = logger.handlers[0].formatter._fmt
    assert fmt == "%(name)s - %(levelname)s - %(message)s"
    p.setDebug()
    assert p.logger.level == logging.DEBUG
    for h in list(logger.handlers):
        logger.removeHandler(h)
