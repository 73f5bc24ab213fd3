"""parafork.mpyx: the rest of mpyx's API, each call checked for what it does: watch /
unwatch, printLayout, daemonize, started / stopped / finished, myAsync / async, a failing
teardown, and Ctrl-C."""

import io
import os
import textwrap
import time

import pytest
from conftest import interrupted_run

import parafork as pf
from parafork.mpyx import EZ, By, F, Filter, Iter, Map, Read, Stamp


def inc(x):
    return x + 1


def test_watch_prints_the_queues_while_the_graph_runs_and_unwatch_stops_it():
    class Slow(F):
        def do(self, x):
            time.sleep(0.05)
            self.put(x)

    out = io.StringIO()
    e = EZ(Iter(range(10)), Slow(), Map(inc)).watch(0.05, file=out)
    assert sorted(e.list()) == list(range(1, 11))
    lines = [line for line in out.getvalue().splitlines() if line]
    assert lines and all(line.startswith("parafork.ez watch: q0=") and "sink=" in line for line in lines)
    e.unwatch()
    n = len(out.getvalue())
    time.sleep(0.2)
    assert len(out.getvalue()) == n  # nothing printed after unwatch


def test_print_layout_names_every_stage_and_its_queues(capsys):
    e = EZ(Iter([1]), (Map(inc), Map(inc)), By(2, Stamp, None))
    e.printLayout()
    text = capsys.readouterr().out
    assert text.count("Map(") == 2 and text.count("Stamp") == 2 and "Iter" in text
    assert "in=q0" in text and "in=-" in text
    assert e.info() == e.layout()


def test_started_stopped_finished():
    class Wait(F):
        def setup(self):
            time.sleep(0.3)
            self.put(1)

    w = Wait()
    e = EZ(w, Map(inc))
    assert not w.started() and not w.finished()
    e.start()
    assert w.started() and not e.stopped()
    e.join()
    assert w.finished() and e.stopped()


def test_my_async_and_async_wait_on_coroutines_in_the_stage():
    import asyncio

    class Awaits(F):
        def do(self, x):
            async def twice():
                await asyncio.sleep(0)
                return 2 * x
            self.put(self.myAsync(twice) + getattr(self, "async")(twice()))

    assert EZ(Iter([1, 2, 3]), Awaits()).list() == [4, 8, 12]


def test_an_exception_in_teardown_reaches_join():
    class Bad(F):
        def teardown(self):
            raise OSError("cannot close")

    with pytest.raises(OSError, match="cannot close"):
        EZ(Iter(range(3)), Bad(), Map(inc)).list()


def test_read_and_filter(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("".join(f"{i}\n" for i in range(10)))
    assert EZ(Read(str(path)), Map(int), Filter(lambda x: x > 6)).list() == [7, 8, 9]


@pytest.mark.timeout(60)
def test_a_daemonized_graph_left_running_is_stopped_when_the_program_ends(tmp_path):
    import subprocess
    import sys
    script = textwrap.dedent("""
        import time
        from parafork.mpyx import EZ, F, Map
        class Forever(F):
            def setup(self):
                while True:
                    time.sleep(10)
        e = EZ(Forever(), Map(abs)).daemonize()
        e.start()
        print(*e.pids(), flush=True)
    """)
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t < 40
    for pid in map(int, r.stdout.split()):
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.timeout(60)
def test_ctrl_c_stops_every_stage():
    script = textwrap.dedent("""
        import os, time
        from parafork.mpyx import EZ, F, Map, As
        class Forever(F):
            def setup(self):
                while True:
                    time.sleep(10)
        e = EZ(Forever(), As(3, Map, abs))
        e.start()
        pids = e.pids()
        print("ready", flush=True)
        try:
            e.join()
        except KeyboardInterrupt:
            alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
            print("interrupted", len(pids), len(alive), flush=True)
    """)
    assert interrupted_run(script, 0.5) == ["interrupted", "4", "0"]
