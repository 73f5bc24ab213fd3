"""The dashboard= keyword (options::dashboard): map and friends and Pool show on the live
dashboard at the address given. Each check runs in a fresh interpreter: the dashboard's server
lives as long as the program, and its URL is printed once, on stderr."""

import json
import os
import subprocess
import sys

import pytest

import parafork

# Runs in the child: fd 2 goes to a file so the script can read its own URL, then it asks
# /api/state while the pool (if any) is still alive, and prints the document.
PRELUDE = r"""
import json, os, re, tempfile, urllib.request
import parafork
log = tempfile.TemporaryFile()
os.dup2(log.fileno(), 2)
def state():
    log.seek(0)
    m = re.search(rb"parafork: dashboard at (http://[^ \n]+)", log.read())
    assert m, "no URL printed"
    with urllib.request.urlopen(m.group(1).decode() + "api/state", timeout=10) as r:
        return json.load(r)
def square(x):
    return x * x
"""


def run(script, env_dashboard=""):
    out = subprocess.run([sys.executable, "-c", PRELUDE + script], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PARAFORK_DASHBOARD=env_dashboard))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_map_and_imap_show_as_calls_at_the_address_given():
    doc = run(r"""
assert parafork.map(square, range(30), jobs=2, name="py-map", dashboard="127.0.0.1:0") == [x * x for x in range(30)]
assert sorted(parafork.imap_unordered(square, range(5), jobs=2, name="py-imap", dashboard="127.0.0.1:0")) == \
    [(i, i * i) for i in range(5)]
print(json.dumps(state()))
""")
    calls = {p["name"]: p for p in doc["pools"]}
    assert calls["py-map"]["kind"] == "map"
    assert calls["py-map"]["done"] == 30
    assert calls["py-map"]["state"] == "finished"
    assert calls["py-imap"]["done"] == 5


def test_pool_shows_its_workers_and_tasks_while_it_runs():
    doc = run(r"""
with parafork.Pool(2, name="py-pool", dashboard="127.0.0.1:0") as pool:
    assert pool.map(square, range(40)) == [x * x for x in range(40)]
    print(json.dumps(state()))
""")
    (p,) = [p for p in doc["pools"] if p["name"] == "py-pool"]
    assert p["kind"] == "pool"
    assert p["state"] == "running"
    assert p["workers"] == 2
    assert p["done"] >= 1  # tasks are chunks: 40 items in at least one
    assert len(p["worker_list"]) == 2


def test_without_the_keyword_there_is_no_dashboard():
    out = subprocess.run([sys.executable, "-c", "import parafork\nparafork.map(abs, [-1], jobs=1)"],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ, PARAFORK_DASHBOARD=""))
    assert out.returncode == 0, out.stderr
    assert "dashboard" not in out.stderr


def test_an_address_that_is_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="dashboard"):
        parafork.map(abs, [1], dashboard=8765)
    with pytest.raises(TypeError, match="dashboard"):
        parafork.Pool(1, dashboard=8765)


# ---- ez and mpyx pipelines --------------------------------------------------------------------
# The script starts the dashboard with a small map call (baseline()), then counts its own descriptors,
# children and /dev/shm: the pipeline must leave none of them behind (the dashboard's server,
# which lives as long as the program, is the only child allowed). A gate (a file) holds the
# sink on its first item while the script reads the state; every wait is bounded.
PIPE_PRELUDE = r"""
import signal, time, urllib.request
import parafork.mpyx as mpyx
def text(path):
    log.seek(0)
    m = re.search(rb"parafork: dashboard at (http://[^ \n]+)", log.read())
    with urllib.request.urlopen(m.group(1).decode() + path, timeout=10) as r:
        return r.read().decode()
def kids():
    me, out = str(os.getpid()), []
    for e in os.listdir("/proc"):
        try:
            with open(f"/proc/{e}/stat") as f:
                st = f.read()
        except OSError:
            continue
        if e.isdigit() and st[st.rindex(")") + 2:].split()[1] == me:
            out.append(int(e))
    return sorted(out)
def wait_for(pred, what, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        doc = state()
        got = pred(doc)
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: {json.dumps(doc)}"
        time.sleep(0.05)
def call(doc, name):
    got = [p for p in doc["pools"] if p["name"] == name]
    return got[0] if got else None
GATE = tempfile.mktemp(prefix="pf-gate-")
def gated(item):
    deadline = time.monotonic() + 30  # bounded: the script opens the gate long before
    while not os.path.exists(GATE) and time.monotonic() < deadline:
        time.sleep(0.01)
    return item
class Gated(parafork.Stage):
    def process(self, item):
        gated(item)
class GatedF(mpyx.F):
    def do(self, item):
        gated(item)
class Inc(mpyx.F):
    def do(self, item):
        self.put(item + 1)
def baseline():
    global kids0, fds0, shm0
    assert parafork.map(abs, [-1], jobs=1, dashboard=os.environ.get("PARAFORK_DASHBOARD") or "127.0.0.1:0") == [1]
    kids0, fds0, shm0 = kids(), set(os.listdir("/proc/self/fd")), set(os.listdir("/dev/shm"))
def left_nothing():
    assert kids() == kids0, (kids(), kids0)
    assert set(os.listdir("/proc/self/fd")) - fds0 == set()
    assert set(os.listdir("/dev/shm")) - shm0 == set()
"""


def run_pipe(script, env_dashboard=""):
    return run(PIPE_PRELUDE + script, env_dashboard)


def test_an_ez_pipeline_shows_its_graph_queues_and_stages_while_it_runs():
    doc = run_pipe(r"""
baseline()
pipe = parafork.ez(parafork.Iter(range(200)), lambda x: x * 2, Gated(), name="py-ez",
                   dashboard="127.0.0.1:0").start()
pids = pipe.pids()
# The source and the map are done with all 200; the sink holds the first batch at the gate.
during = wait_for(lambda d: (p := call(d, "py-ez")) and p["graph"] and
                  p["graph"]["stages"][1]["out"] == 200 and p["graph"]["stages"][2]["in"] >= 1 and d,
                  "the map's 200 items")
metrics = text("metrics")
open(GATE, "w").close()
pipe.join()
# What the program reads of the output (list(), items()) leaves the graph through its queue.
assert parafork.ez(parafork.Iter(range(30)), abs, dashboard="127.0.0.1:0").named("py-list").list() == list(range(30))
after = state()
os.unlink(GATE)
left_nothing()
print(json.dumps({"during": during, "metrics": metrics, "after": after, "pids": pids}))
""")
    p = next(p for p in doc["during"]["pools"] if p["name"] == "py-ez")
    assert p["kind"] == "pipeline" and p["state"] == "running" and p["workers"] == 3
    g = p["graph"]
    assert [s["name"].split("-")[0] for s in g["stages"]] == ["Iter", "Map(<lambda>)", "Gated"]
    assert sorted(s["pid"] for s in g["stages"]) == sorted(doc["pids"])
    assert all(s["state"] == "running" for s in g["stages"])
    assert g["stages"][0]["out"] == 200 and g["stages"][1]["in"] == 200
    # Two queues: Iter -> Map, Map -> Gated; the second holds what the gated sink has not taken.
    assert [(q["from"], q["to"], q["to_parent"]) for q in g["queues"]] == [([0], [1], False), ([1], [2], False)]
    q = g["queues"][1]
    assert q["sent"] == 200 and q["received"] == g["stages"][2]["in"]
    assert q["depth"] == 200 - q["received"] > 0
    assert p["queued"] == q["depth"] and p["done"] == g["stages"][2]["in"]
    assert any(p["worker_list"][i]["pid"] == g["stages"][i]["pid"] for i in range(3))

    m = doc["metrics"]
    assert 'parafork_pipeline_queue_depth{pool="%d",name="py-ez",kind="pipeline",queue="1"' % p["id"] in m
    depth_line = next(line for line in m.splitlines()
                      if line.startswith("parafork_pipeline_queue_depth") and 'name="py-ez"' in line
                      and 'queue="1"' in line)
    assert float(depth_line.rsplit(" ", 1)[1]) > 0
    for family in ("parafork_pipeline_stage_items_in_total", "parafork_pipeline_stage_items_out_total",
                   "parafork_pipeline_stage_items_per_second"):
        assert any(line.startswith(family) and 'name="py-ez"' in line and 'stage="1"' in line
                   for line in m.splitlines()), family

    (p,) = [p for p in doc["after"]["pools"] if p["name"] == "py-ez"]
    assert p["state"] == "finished" and p["done"] == 200 and p["failed"] == 0
    assert [s["state"] for s in p["graph"]["stages"]] == ["exited"] * 3
    assert [s["in"] for s in p["graph"]["stages"]] == [0, 200, 200]
    assert p["graph"]["queues"][1]["depth"] == 0
    (p,) = [p for p in doc["after"]["pools"] if p["name"] == "py-list"]
    assert p["state"] == "finished" and p["done"] == 30
    assert [(q["from"], q["to"], q["to_parent"], q["received"]) for q in p["graph"]["queues"]] == \
        [([0], [1], False, 30), ([1], [], True, 30)]


def test_an_mpyx_pipeline_shows_through_the_variable_and_its_stages_are_not_calls_of_their_own():
    doc = run_pipe(r"""
# The first pipeline starts the dashboard itself: its server, forked then, holds no end of the
# pipeline's queues (they would never end: the run would hang).
assert mpyx.EZ(mpyx.Iter(range(1000)), Inc(), name="first").list() == list(range(1, 1001))
baseline()
pipe = mpyx.EZ(mpyx.Iter(range(50)), (Inc(), Inc()), GatedF())
pipe.start()
during = wait_for(lambda d: (p := call(d, "mpyx")) and p["graph"] and
                  sum(s["in"] for s in p["graph"]["stages"][1:3]) == 50 and d, "the two Incs' 50 items")
open(GATE, "w").close()
pipe.join()
after = state()
os.unlink(GATE)
left_nothing()
print(json.dumps({"during": during, "after": after}))
""", env_dashboard="127.0.0.1:0")
    p = next(p for p in doc["during"]["pools"] if p["name"] == "mpyx")
    assert p["kind"] == "pipeline" and p["state"] == "running"
    g = p["graph"]
    assert [s["name"].split("-")[0] for s in g["stages"]] == ["Iter", "Inc", "Inc", "GatedF"]
    # The parallel Incs share their input queue and write into the same one.
    assert [(q["from"], q["to"]) for q in g["queues"]] == [([0], [1, 2]), ([1, 2], [3])]
    assert g["queues"][0]["sent"] == 50 and g["queues"][1]["sent"] == 50
    # The stages run in parafork threads: with the variable set they are the pipeline's only.
    assert all(c["kind"] != "thread" for c in doc["during"]["pools"] + doc["after"]["pools"])
    (p,) = [p for p in doc["after"]["pools"] if p["name"] == "mpyx"]
    assert p["state"] == "finished" and p["done"] == 50


def test_an_ez_stage_killed_shows_as_an_error_with_its_pid_and_signal():
    doc = run_pipe(r"""
baseline()
pipe = parafork.ez(parafork.Iter(range(20)), parafork.Map(gated), Gated(), name="py-kill",
                   dashboard="127.0.0.1:0").start()
victim = pipe.pids()[1]
wait_for(lambda d: (p := call(d, "py-kill")) and p["graph"] and p["graph"]["stages"][1]["in"] >= 1,
         "the map's first item")
os.kill(victim, signal.SIGKILL)
try:
    pipe.join()
    raise AssertionError("join did not raise")
except parafork.WorkerDied as e:
    assert e.pid == victim and e.signal == signal.SIGKILL
def bad(x):
    if x == 3:
        raise ValueError("three")
    return x
raiser = parafork.ez(parafork.Iter(range(5)), bad, name="py-raise", dashboard="127.0.0.1:0").start()
raiser_pid = raiser.pids()[1]
try:
    raiser.join()
    raise AssertionError("join did not raise")
except ValueError:
    pass
after = state()
left_nothing()
print(json.dumps({"after": after, "victim": victim, "raiser": raiser_pid}))
""")
    (p,) = [p for p in doc["after"]["pools"] if p["name"] == "py-kill"]
    assert p["state"] == "finished" and p["failed"] == 1 and p["deaths"] == 1
    stage = p["graph"]["stages"][1]
    assert stage["pid"] == doc["victim"] and stage["state"] == "dead"
    (err,) = [e for e in doc["after"]["errors"] if e["pool"] == p["id"]]
    assert err["kind"] == "died" and err["pid"] == doc["victim"] and err["signal"] == 9
    assert "Map(gated)" in err["message"]
    # A stage's exception: the call's error too, with the stage's pid.
    (p,) = [p for p in doc["after"]["pools"] if p["name"] == "py-raise"]
    assert p["state"] == "finished" and p["failed"] == 1 and p["deaths"] == 0
    (err,) = [e for e in doc["after"]["errors"] if e["pool"] == p["id"]]
    assert err["kind"] == "exception" and err["pid"] == doc["raiser"]
    assert err["type"] == "builtins.ValueError" and "three" in err["message"]


def test_an_ez_dashboard_address_that_is_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="dashboard"):
        parafork.ez(parafork.Iter(range(5)), dashboard=8765)
