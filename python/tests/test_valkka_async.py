"""parafork.valkka.AsyncBackMessageProcess: valkka's asyncio backend (c__ coroutines on an
event loop that keeps running between messages), its faults errors instead of hangs."""

import asyncio
import gc
import os
import select
import signal
import threading
import time

import pytest

import parafork as pf
from parafork.valkka import AsyncBackMessageProcess, MessageObject, safe_select


class Loop(AsyncBackMessageProcess):
    def __init__(self, name="loop", log=None):
        super().__init__(name)
        self.log = log

    def note(self, what):
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(what + "\n")

    def preRun__(self):
        self.note("preRun__")

    async def asyncPre__(self):
        self.note("asyncPre__")
        self.ticks = 0

        async def tick():  # runs on the loop between and during messages
            while True:
                await asyncio.sleep(0.01)
                self.ticks += 1
        self.ticker = asyncio.get_running_loop().create_task(tick())

    async def asyncPost__(self):
        self.note("asyncPost__")
        await self.send_out__(MessageObject("bye"))

    def postRun__(self):
        self.note("postRun__")

    async def c__nap(self, n=0, seconds=0.0):
        await asyncio.sleep(seconds)
        self.note(f"c__nap {n}")
        await self.send_out__(MessageObject("napped", n=n, ticks=self.ticks))

    async def c__ticks(self):
        await self.send_out__(MessageObject("ticks", ticks=self.ticks))

    async def c__answer(self, value=None):
        await self.send_out__(MessageObject("noise", value=value))
        await asyncio.sleep(0.01)
        self.return_out__(value * 2)

    async def c__fail(self, why="no"):
        await asyncio.sleep(0.01)
        raise RuntimeError(why)

    async def c__later(self, value=None, seconds=0.1):
        async def after():  # a task: the message is handled, the task goes on
            await asyncio.sleep(seconds)
            await self.send_out__(MessageObject("later", value=value))
        asyncio.get_running_loop().create_task(after())

    async def c__pid(self):
        await self.send_out__(MessageObject("pid", pid=os.getpid()))

    async def c__hang(self):
        await asyncio.sleep(3600)

    async def c__fds(self):
        fds = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
        await self.send_out__(MessageObject("fds", fds=fds))

    def c__plain(self, value=None):  # not a coroutine: runs all the same
        self.return_out__(value)


def wait_readable(pipe, timeout=20):
    r, _, _ = safe_select([pipe], [], [], timeout=timeout)
    return r == [pipe]


def test_coroutine_methods_run_one_at_a_time_in_send_order_and_the_loop_runs_between(tmp_path):
    log = tmp_path / "log"
    p = Loop(log=str(log))
    pipe = p.getPipe()
    p.start()
    for n, seconds in enumerate([0.2, 0.05, 0.0]):  # the slowest first: order is still kept
        p.sendMessageToBack(MessageObject("nap", n=n, seconds=seconds))
    got = [pipe.recv() for _ in range(3)]
    assert [(m(), m["n"]) for m in got] == [("napped", 0), ("napped", 1), ("napped", 2)]
    # While no message comes, the loop's own task goes on.
    p.sendMessageToBack(MessageObject("ticks"))
    before = pipe.recv()["ticks"]
    time.sleep(0.5)
    p.sendMessageToBack(MessageObject("ticks"))
    after = pipe.recv()["ticks"]
    assert after >= before + 5, (before, after)
    p.stop()
    assert pipe.recv()() == "bye"  # sent by asyncPost__, read after the stop
    assert p.exitcode == 0
    assert log.read_text().split("\n") == ["preRun__", "asyncPre__", "c__nap 0", "c__nap 1",
                                           "c__nap 2", "asyncPost__", "postRun__", ""]


def test_return_from_back_and_send_message_to_back_as_valkka():
    p = Loop()
    pipe = p.getPipe()
    p.start()
    p.sendMessageToBack(MessageObject("answer", value=21))
    assert p.returnFromBack() == 42
    noise = pipe.recv()  # the message sent before the answer waited for recv()
    assert noise() == "noise" and noise["value"] == 21
    pipe.send(MessageObject("plain", value="x"))  # the pipe sends too; a plain c__ method runs
    assert p.returnFromBack() == "x"
    p.sendMessageToBack(MessageObject("later", value=7, seconds=0.1))
    p.sendMessageToBack(MessageObject("answer", value=1))
    assert p.returnFromBack() == 2  # the task's message comes after, from the loop
    assert pipe.recv()() == "noise"
    later = pipe.recv()
    assert later() == "later" and later["value"] == 7
    p.sendMessageToBack(MessageObject("no_such_thing"))  # logged, as in valkka
    p.sendPing([1])
    assert pipe.recv()["lis"] == [1, 2, 3]
    p.stop()


def test_an_exception_in_a_coroutine_fails_that_message_and_the_loop_keeps_serving():
    p = Loop()
    pipe = p.getPipe()
    p.start()
    p.sendMessageToBack(MessageObject("fail", why="bad thing"))
    with pytest.raises(RuntimeError, match="bad thing") as info:
        pipe.recv()
    assert isinstance(info.value.__cause__, pf.RemoteTraceback)
    assert "c__fail" in str(info.value.__cause__)
    p.sendMessageToBack(MessageObject("nap", n=5))
    assert pipe.recv()["n"] == 5
    p.sendMessageToBack(MessageObject("fail", why="again"))
    p.sendMessageToBack(MessageObject("nap", n=6))
    with pytest.raises(RuntimeError, match="again"):
        pipe.recv()
    assert pipe.recv()["n"] == 6
    p.stop()
    assert p.exitcode == 0
    del info, p, pipe
    gc.collect()  # the tracebacks pytest.raises kept hold the process in a cycle


def test_select_on_the_pipe_and_its_read_fd():
    p = Loop()
    pipe = p.getPipe()
    fd = pipe.getReadFd()  # before start, as valkka's documentation does
    p.start()
    assert pipe.getReadFd() == fd
    assert safe_select([pipe], [], [], timeout=0.05)[0] == []
    p.sendMessageToBack(MessageObject("nap", n=1))
    p.sendMessageToBack(MessageObject("nap", n=2))
    r, _, _ = select.select([pipe.getReadFd()], [], [], 20)
    assert r == [pipe.getReadFd()] and pipe.getReadFd() == p.getReadFd()
    assert pipe.recv()["n"] == 1
    # The second may have been read off the pipe with the first: the pipe still says so.
    assert wait_readable(pipe)
    assert pipe.recv()["n"] == 2
    assert safe_select([pipe], [], [], timeout=0.05)[0] == []
    p.stop()


def test_sigkill_makes_recv_and_return_from_back_raise_worker_died():
    p = Loop()
    pipe = p.getPipe()
    p.start()
    p.sendMessageToBack(MessageObject("pid"))
    pid = pipe.recv()["pid"]
    p.sendMessageToBack(MessageObject("hang"))
    killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(pf.WorkerDied) as info:
            p.returnFromBack()  # waits for an answer that will never come
    finally:
        killer.join()
    assert info.value.pid == pid and info.value.signal == signal.SIGKILL
    assert wait_readable(pipe)  # ended: readable for good, and recv says why
    with pytest.raises(pf.Error):
        pipe.recv()
    p.stop()

    q = Loop()
    q.start()
    q.sendMessageToBack(MessageObject("pid"))
    pid = q.getPipe().recv()["pid"]
    os.kill(pid, signal.SIGKILL)
    assert wait_readable(q.getPipe())
    with pytest.raises(pf.WorkerDied):
        q.getPipe().recv()
    q.stop()
    del info, p, q, pipe
    gc.collect()  # the tracebacks pytest.raises kept hold the processes in a cycle


def test_the_backend_holds_only_its_write_end_and_nothing_is_left():
    a, b = Loop("a"), Loop("b")
    a.start()
    b.start()  # forked after a: must not hold a's pipe either
    a.sendMessageToBack(MessageObject("fds"))
    b.sendMessageToBack(MessageObject("fds"))
    a_fds, b_fds = a.getPipe().recv()["fds"], b.getPipe().recv()["fds"]
    mine = {os.readlink(f"/proc/self/fd/{a.getPipe()._r}"), os.readlink(f"/proc/self/fd/{b.getPipe()._r}")}
    a_pipes = [t for t in a_fds.values() if t in mine]
    b_pipes = [t for t in b_fds.values() if t in mine]
    assert len(a_pipes) == 1 and len(b_pipes) == 1 and a_pipes != b_pipes  # each its write end
    a.stop()
    b.stop()


def test_a_frontend_that_stops_without_reading_does_not_hang_the_stop():
    class Chatty(AsyncBackMessageProcess):
        async def c__flood(self, n=0):
            for i in range(n):
                await self.send_out__(MessageObject("x", i=i, data=b"y" * 1000))

    p = Chatty("chatty")
    pipe = p.getPipe()
    p.start()
    p.sendMessageToBack(MessageObject("flood", n=300))  # more than the pipe holds
    time.sleep(0.3)  # the loop now waits in send_out__ for the frontend to read
    p.stop()
    assert p.exitcode == 0
    assert [pipe.recv()["i"] for _ in range(300)] == list(range(300))  # kept for recv()
    with pytest.raises(pf.Error):
        pipe.recv()


@pytest.mark.timeout(60)
def test_ctrl_c_while_the_frontend_waits_stops_the_backend():
    import textwrap

    from conftest import interrupted_run
    script = textwrap.dedent("""
        import asyncio, os
        from parafork.valkka import AsyncBackMessageProcess, MessageObject
        class W(AsyncBackMessageProcess):
            async def c__work(self):
                await asyncio.sleep(30)
        w = W("w")
        w.start()
        w.sendMessageToBack(MessageObject("work"))
        print("ready", flush=True)
        try:
            w.getPipe().recv()
        except KeyboardInterrupt:
            print("interrupted", w.is_alive(), w.exitcode, flush=True)
    """)
    words = interrupted_run(script, 0.5)
    assert words[:2] == ["interrupted", "False"] and words[2] in ("-15", "-9"), words  # SIGTERM, or killed after the grace
