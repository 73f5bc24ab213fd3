"""Every test runs bounded (pytest-timeout) and must leave no child, no descriptor and nothing
in /dev/shm behind."""

import os
import signal
import subprocess
import sys
import time

import pytest


def alive(pid):
    """Whether pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def interrupted_run(script, settle):
    """Runs `script` in a fresh interpreter; once it prints "ready", waits `settle` seconds,
    sends it Ctrl-C and returns the words it printed after. Bounded: 30 s for the rest."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(settle)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return out.split()


def children_of(ppid):
    """(pid, state) of every process whose parent is ppid (state Z: a zombie)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[1] == str(ppid):
            found.append((int(entry), fields[0]))
    return found


def children():
    return children_of(os.getpid())


def fds():
    return set(os.listdir("/proc/self/fd"))


def shm():
    return set(os.listdir("/dev/shm"))


@pytest.fixture(autouse=True)
def leaves_nothing_behind():
    fds_before, shm_before = fds(), shm()
    yield
    # A worker killed at the end of a call is reaped before the call returns: nothing to wait for.
    assert children() == [], "children left behind (pid, state)"
    # listdir's own descriptor is closed by the time it returns
    assert fds() - fds_before == set(), "descriptors left open"
    assert shm() - shm_before == set(), "files left in /dev/shm"
