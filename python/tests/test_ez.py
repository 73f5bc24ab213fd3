"""ez pipelines: lifecycle, wiring, meta, xcut, and every fault (exception, SIGKILL, Ctrl-C)."""

import os
import signal
import threading
import time

import pytest

import parafork as pf


class AddX(pf.Stage):
    def setup(self, amount=1):
        self.amount = amount

    def process(self, n):
        self.put(n + self.amount)


def add1(x):
    return x + 1


def mul2(x):
    return x * 2


def test_serial_stages_run_in_their_own_processes():
    class Where(pf.Stage):
        def initialize(self):
            self.parent = os.getpid()  # before the fork, in the caller

        def process(self, x):
            self.put((x, self.parent, os.getpid()))

    out = pf.ez(pf.Iter(range(5)), AddX(10), Where()).list()
    assert [x for x, _, _ in out] == [10, 11, 12, 13, 14]
    assert {p for _, p, _ in out} == {os.getpid()}
    assert len({c for _, _, c in out}) == 1 and out[0][2] != os.getpid()


def test_broadcast_of_parallel_groups_exact_counts():
    n = 100_000
    out = pf.ez(pf.Iter(range(n)), {(add1, add1), (mul2, mul2, mul2)}).list()
    assert len(out) == 2 * n
    assert sorted(out) == sorted([x + 1 for x in range(n)] + [x * 2 for x in range(n)])


def tag(name):
    def f(x):
        return (name, x)
    f.__name__ = name
    return f


def test_broadcast_inside_parallel_and_nested_serial():
    # each item goes to one parallel member: the broadcast (both b1 and b2) or the serial (s)
    out = pf.ez(pf.Iter(range(1000)), (pf.broadcast(tag("b1"), tag("b2")), [add1, tag("s")])).list()
    by = {k: sorted(x for n, x in out if n == k) for k in ("b1", "b2", "s")}
    assert by["b1"] == by["b2"]
    assert sorted(by["b1"] + [x - 1 for x in by["s"]]) == list(range(1000))


def test_teardown_puts_and_items_is_lazy():
    got = list(pf.ez(pf.Iter(range(10)), pf.Batch(4)).items())
    assert got == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_meta_travels_with_each_item():
    class Src(pf.Stage):
        def setup(self):
            for i in range(20):
                self.meta["name"] = f"n{i}"
                self.put(i)

    class Use(pf.Stage):
        def process(self, x):
            self.put((x, self.meta["name"]))

    out = pf.ez(Src(), (AddX(0), AddX(0)), Use()).list()
    assert sorted(out) == [(i, f"n{i}") for i in range(20)]


def test_xcut_feeds_another_graph_started_and_joined_with_this_one(tmp_path):
    path = tmp_path / "log.txt"

    class Task(pf.Stage):
        def process(self, x):
            self.log.put(f"{x}\n")
            self.put(x)

    out = pf.ez(pf.Iter(range(50)), (Task(), Task())).xcut("log", pf.ez(pf.Write(str(path)))).list()
    assert sorted(out) == list(range(50))
    assert sorted(int(line) for line in path.read_text().split()) == list(range(50))


def test_stage_stop_ends_upstream_quietly():
    class Take(pf.Stage):
        def setup(self, n):
            self.n = n

        def process(self, x):
            self.put(x)
            self.n -= 1
            if self.n == 0:
                self.stop()

    out = pf.ez(pf.Const(1), Take(10)).list()  # an endless source
    assert out == [1] * 10


def test_seq_and_zip():
    assert pf.ez(pf.Iter(range(200)), pf.Seq((add1, add1, add1))).list() == [x + 1 for x in range(200)]
    rows = pf.ez(pf.Iter(range(50)), pf.Zip(add1, mul2)).list()
    assert sorted(sorted(r) for r in rows) == sorted(sorted([x + 1, x * 2]) for x in range(50))


def test_exception_in_a_stage_stops_the_graph_with_type_and_traceback():
    class Boom(pf.Stage):
        def process(self, x):
            if x == 500:
                raise ValueError("bad item 500")
            self.put(x)

    with pytest.raises(ValueError, match="bad item 500") as info:
        pf.ez(pf.Iter(range(10**9)), Boom(), add1).list()
    assert isinstance(info.value.__cause__, pf.RemoteTraceback)
    assert "in process" in str(info.value.__cause__)


def test_exception_in_setup_reaches_join():
    class Bad(pf.Stage):
        def setup(self):
            raise KeyError("nope")

    p = pf.ez(pf.Iter(range(10)), Bad()).start()
    with pytest.raises(KeyError):
        p.join()


class Forever(pf.Stage):
    def setup(self):
        while True:
            time.sleep(10)


def test_sigkill_of_a_stage_is_worker_died():
    p = pf.ez(Forever(), add1, (mul2, mul2)).start()
    victim = p.pids()[2]
    time.sleep(0.2)
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(pf.WorkerDied) as info:
        p.join()
    assert info.value.pid == victim and info.value.signal == signal.SIGKILL


def test_ctrl_c_stops_everything():
    p = pf.ez(Forever(), add1, add1).start()
    pids = p.pids()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            p.join()
    finally:
        timer.join()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def proc_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_idle_stages_use_no_cpu():
    go_r, go_w = os.pipe()

    class Slow(pf.Stage):
        def setup(self):
            os.read(go_r, 1)  # until the test has measured
            self.put(1)

    try:
        p = pf.ez(Slow(), add1, (mul2, mul2), pf.broadcast(add1, add1))
        gen = p.items()
        pids = p.pids()
        # Started and asleep (a loaded machine may take a while), then past the spin-then-sleep.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(proc_state(pid) != "S" for pid in pids):
            time.sleep(0.05)
        time.sleep(0.3)
        before = {pid: cpu_ticks(pid) for pid in pids}
        time.sleep(0.6)
        used = {pid: cpu_ticks(pid) - before[pid] for pid in pids}
        os.write(go_w, b"g")
        assert sorted(gen) == [5, 5]
    finally:
        os.close(go_r)
        os.close(go_w)
    assert sum(used.values()) <= 3, used  # clock ticks (10 ms) over 6 idle processes


def test_stop_kills_a_running_graph_and_items_left_early():
    p = pf.ez(Forever(), add1).start()
    p.stop()
    assert p.stopped()
    gen = pf.ez(pf.Const(7), add1).items()
    assert next(gen) == 8
    gen.close()  # leaving early stops the graph


def test_graph_and_layout():
    a, b, c = AddX(), AddX(), AddX()
    p = pf.ez(pf.Iter([1]), (a, b), {c, pf.Print()})
    g = p.graph()
    assert isinstance(g, list) and g[1] == (a, b) and isinstance(g[2], set) and c in g[2]
    assert "in=q0" in p.layout()
    assert sorted(p.list()) == [2, 3]


def test_an_item_does_not_wait_for_its_batch_to_fill():
    class Trickle(pf.Stage):
        def setup(self):
            for i in range(2000):  # fast: the batches grow
                self.put(i)
            time.sleep(0.1)
            self.put(-1)  # alone: must go on without more items behind it
            time.sleep(120)

    gen = pf.ez(Trickle(), add1, (AddX(0), AddX(0))).items()
    got = [next(gen) for _ in range(2001)]
    gen.close()
    assert sorted(got) == list(range(0, 2001))
