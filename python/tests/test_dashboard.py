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


def run(script):
    out = subprocess.run([sys.executable, "-c", PRELUDE + script], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, PARAFORK_DASHBOARD=""))
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
