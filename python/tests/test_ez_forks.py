"""ez pipelines whose stages fork processes of their own (os.fork, subprocess): such a
grandchild inherits the stage's queue ends, yet the end of the stream, a stage's exception and
a stage's death still reach the caller at once, not when the grandchild exits."""

import os
import signal
import subprocess
import time

import pytest

import parafork as pf
from conftest import alive

LINGER = 60  # seconds a grandchild sleeps: far longer than any of these graphs may take
PROMPT = 20  # what "at once" is allowed on a loaded machine


def add1(x):
    return x + 1


class Grandchildren:
    """Where stages report the pids of the processes they fork; kills them all at the end
    (they are not the library's children, nor the test's)."""

    def __init__(self):
        self.r, self.w = os.pipe()
        self.seen = []

    def note(self, pid):  # in the stage
        os.write(self.w, pid.to_bytes(4, "little"))

    def pids(self):
        os.set_blocking(self.r, False)
        try:
            while True:
                b = os.read(self.r, 4)
                if not b:
                    break
                self.seen.append(int.from_bytes(b, "little"))
        except BlockingIOError:
            pass
        return list(self.seen)

    def close(self):
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)  # the caller's own child (the others are not its to reap)
            except ChildProcessError:
                pass
        os.close(self.r)
        os.close(self.w)


@pytest.fixture
def grandchildren():
    g = Grandchildren()
    yield g
    g.close()


def fork_sleeper(g):
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(LINGER)
        finally:
            os._exit(0)
    g.note(pid)


def gone(pids):
    return [p for p in pids if alive(p)] == []


class ForksThenPasses(pf.Stage):
    """Forks a sleeping grandchild at its first item (os.fork, or a subprocess), passes items on."""

    def setup(self, g, how):
        self.g, self.how, self.forked = g, how, False

    def process(self, x):
        if not self.forked:
            self.forked = True
            if self.how == "fork":
                fork_sleeper(self.g)
            else:
                self.proc = subprocess.Popen(["sleep", str(LINGER)])
                self.g.note(self.proc.pid)
        self.put(x)


@pytest.mark.parametrize("how", ["fork", "subprocess"])
def test_the_stream_ends_though_a_stage_forked_a_process_that_lives_on(grandchildren, how):
    p = pf.ez(pf.Iter(range(1000)), ForksThenPasses(grandchildren, how), add1, (add1, add1))
    t = time.monotonic()
    out = p.list()
    took = time.monotonic() - t
    assert sorted(out) == [x + 2 for x in range(1000)]
    assert took < PROMPT, f"the end of the stream waited {took:.1f} s for the grandchild"
    kids = grandchildren.pids()
    assert len(kids) == 1 and alive(kids[0])  # it still lives: the end did not wait for it


def test_a_source_that_forked_a_process_ends_the_stream(grandchildren):
    class Source(pf.Stage):
        def setup(self, g):
            fork_sleeper(g)
            for i in range(100):
                self.put(i)

    t = time.monotonic()
    out = pf.ez(Source(grandchildren), add1).list()
    assert sorted(out) == list(range(1, 101))
    assert time.monotonic() - t < PROMPT


def test_an_exception_after_forking_reaches_the_caller_at_once(grandchildren):
    class Boom(pf.Stage):
        def setup(self, g):
            self.g = g

        def process(self, x):
            if x == 10:
                fork_sleeper(self.g)
                raise ValueError("bad item 10")
            self.put(x)

    p = pf.ez(pf.Iter(range(100)), Boom(grandchildren), add1).start()
    pids = p.pids()
    t = time.monotonic()
    with pytest.raises(ValueError, match="bad item 10"):
        p.join()
    assert time.monotonic() - t < PROMPT
    assert gone(pids)
    assert all(alive(k) for k in grandchildren.pids()[:1])


def test_a_stage_killed_after_forking_is_worker_died_at_once(grandchildren):
    class Dies(pf.Stage):
        def setup(self, g):
            self.g = g

        def process(self, x):
            if x == 10:
                fork_sleeper(self.g)
                os.kill(os.getpid(), signal.SIGKILL)
            self.put(x)

    p = pf.ez(pf.Iter(range(100)), Dies(grandchildren), add1, (add1, add1)).start()
    pids = p.pids()
    t = time.monotonic()
    with pytest.raises(pf.WorkerDied) as info:
        p.join()
    assert time.monotonic() - t < PROMPT
    assert info.value.pid == pids[1] and info.value.signal == signal.SIGKILL
    assert gone(pids)


def test_items_from_a_graph_whose_middle_stage_forked_end_at_once(grandchildren):
    gen = pf.ez(pf.Iter(range(50)), ForksThenPasses(grandchildren, "fork"), add1).items()
    t = time.monotonic()
    assert sorted(gen) == list(range(1, 51))
    assert time.monotonic() - t < PROMPT


def test_the_caller_forking_while_it_reads_does_not_hold_the_stream_open(grandchildren):
    gen = pf.ez(pf.Iter(range(100)), add1).items()
    first = next(gen)
    fork_sleeper(grandchildren)  # in the caller, which holds the graph's output queue
    t = time.monotonic()
    assert sorted([first] + list(gen)) == list(range(1, 101))
    assert time.monotonic() - t < PROMPT


def test_a_stage_may_use_the_library_to_fork_and_multiprocessing_too():
    import multiprocessing

    def square(x):
        return x * x

    class Inner(pf.Stage):
        def process(self, x):
            t = pf.Thread(square, args=(x,))  # the library's own fork, inside a stage
            t.start()
            t.join()
            p = multiprocessing.get_context("fork").Process(target=square, args=(x,))
            p.start()
            p.join()
            self.put((t.result(), p.exitcode))

    out = pf.ez(pf.Iter(range(5)), Inner(), pf.Map(lambda r: r)).list()
    assert sorted(out) == [(x * x, 0) for x in range(5)]
