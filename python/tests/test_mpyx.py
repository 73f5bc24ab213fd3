"""parafork.mpyx: mpyx's names and semantics, and the faults mpyx hung on."""

import os
import signal
import time

import pytest

import parafork as pf
from parafork.mpyx import EZ, F, Iter, Map, Write, As


class Double(F):
    def do(self, x):
        self.put(2 * x)


def test_f_lifecycle_and_args():
    class Life(F):
        def initialize(self, k):
            self.where = os.getpid()

        def setup(self, k):
            self.k = k
            self.seen = 0

        def do(self, x):
            self.seen += 1
            self.put(x * self.k)

        def teardown(self):
            self.put(("seen", self.seen, self.where))

    out = EZ(Iter(range(5)), Life(3)).list()
    assert out[:5] == [0, 3, 6, 9, 12] and out[5] == ("seen", 5, os.getpid())


def test_exception_reaches_join_instead_of_a_deadlock():
    class Bad(F):
        def do(self, x):
            if x == 3:
                raise ZeroDivisionError("stage failed")
            self.put(x)

    with pytest.raises(ZeroDivisionError) as info:
        EZ(Iter(range(100)), Bad(), Double()).start().join()
    assert "stage failed" in str(info.value.__cause__)


def test_catch_handles_an_item_and_goes_on():
    class Careful(F):
        def do(self, x):
            self.put(10 // x)

        def catch(self, exc):
            self.put(type(exc).__name__)

    assert EZ(Iter([1, 0, 2]), Careful()).list() == [10, "ZeroDivisionError", 5]


def test_killed_stage_is_worker_died():
    class Wait(F):
        def setup(self):
            time.sleep(60)

    e = EZ(Wait(), As(2, Double)).start()
    victim = e.pids()[1]
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(pf.WorkerDied) as info:
        e.join()
    assert info.value.pid == victim


def test_write_writes(tmp_path):
    path = tmp_path / "out.txt"
    EZ(Iter(["a\n", "b\n"]), Write(str(path))).join()
    assert path.read_text() == "a\nb\n"


def test_user_subclass_of_a_builtin_keeps_its_do():
    class Loud(Map):
        def do(self, x):
            self.put(("loud", self.fn(x)))

    assert EZ(Iter([1, 2]), Loud(abs)).list() == [("loud", 1), ("loud", 2)]


def test_stop_and_stopped():
    class Wait(F):
        def setup(self):
            time.sleep(60)

    e = EZ(Wait(), Double()).start()
    e.stop()
    assert e.stopped()
