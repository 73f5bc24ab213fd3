#!/usr/bin/env python3
"""Runs every benchmark program and every peer, alternating, and writes OUT/results.json;
then bench/report.py turns that into the table and docs/performance.md. Called by bench/run
(which builds first); see docs/benchmarks.md.

Each round runs every Google Benchmark program of the goal table once (one repetition) and then
every peer once, so slow phases of a shared machine hit both sides alike; medians, minima and
maxima are taken over the rounds. The sweeps (bench_costs, bench_scaling) run once, with
Google Benchmark's own repetitions.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SWEEPS = ("bench_costs", "bench_scaling")  # run once, not per round


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def loadavg():
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = next((l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines()
                if l.startswith("MemTotal")), "0")
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return {
        "cpu": cpu,
        "cpus_online": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": " ".join(platform.uname()[i] for i in (0, 2, 4)),
        "uname": " ".join(platform.uname()),
        "mem_gib": round(int(mem) / 2**20, 1),
        "thp": thp.read_text().strip() if thp.exists() else "n/a",
        "compiler": subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout.splitlines()[0],
        "python": sys.version.split()[0],
    }


class Runner:
    def __init__(self, args):
        self.args = args
        self.build = Path(args.build).resolve()
        self.out = Path(args.out).resolve()
        self.raw = self.out / "raw"
        self.raw.mkdir(parents=True, exist_ok=True)
        self.cfg = tomllib.loads((HERE / "goals.toml").read_text())
        self.cpus = len(os.sched_getaffinity(0))
        self.lines = self.out / "data" / "lines.txt"
        self.res = {"bench": {}, "samples": {}, "load": [], "diagnostics": {}, "errors": []}

    # -- helpers ----------------------------------------------------------------------------
    def subst(self, s):
        return (s.replace("{build}", str(self.build)).replace("{lines}", str(self.lines))
                .replace("{jobs}", str(self.cpus)).replace("{cpus}", str(self.cpus)))

    def note_load(self, step):
        self.res["load"].append({"t": time.strftime("%H:%M:%S"), "step": step, "load": loadavg()})

    def binary(self, name):
        p = self.build / "bench" / name
        return p if p.is_file() and os.access(p, os.X_OK) else None

    def run_bench(self, name, tag, extra):
        exe = self.binary(name)
        if exe is None:
            return
        out = self.raw / f"{name}.{tag}.json"
        cmd = [str(exe), "--benchmark_format=json", f"--benchmark_out={out}",
               "--benchmark_out_format=json"] + extra
        log(f"{name} ({tag})")
        self.note_load(f"{name} {tag}")
        try:
            p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=self.env, timeout=self.args.bench_timeout)
        except subprocess.TimeoutExpired:
            self.res["errors"].append(f"{name} {tag}: timed out after {self.args.bench_timeout} s")
            return
        if p.returncode != 0 or not out.exists():
            self.res["errors"].append(f"{name} {tag}: exit {p.returncode}: {p.stderr[-500:]}")
            return
        data = json.loads(out.read_text())
        self.res.setdefault("context", {})[name] = data.get("context", {})
        for b in data.get("benchmarks", []):
            # A benchmark that runs its own repetitions (a latency over 200 runs) is judged by
            # their median and 99th percentile, which it reports as aggregates.
            if b.get("run_type", "iteration") != "iteration" and b.get("aggregate_name") not in ("median", "p99"):
                continue
            b["tag"] = tag
            self.res["bench"].setdefault(name, []).append(b)

    def sample(self, key, value, **extra):
        self.res["samples"].setdefault(key, []).append(dict(value=value, load=loadavg()[0], **extra))

    def run_command(self, key, command, requires):
        if requires and not Path(self.subst(requires)).exists():
            return
        cmd = self.subst(command)
        self.note_load(key)
        log(key)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], stderr=subprocess.PIPE,
                               text=True, timeout=self.args.bench_timeout)
        except subprocess.TimeoutExpired:
            self.res["errors"].append(f"{key}: timed out after {self.args.bench_timeout} s")
            return
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            self.res["errors"].append(f"{key}: exit {p.returncode}: {p.stderr[-500:]}")
            return
        self.sample(key, dt, unit="s")

    def run_python(self, key, arg):
        self.note_load(key)
        log(key)
        try:
            p = subprocess.run([sys.executable, str(HERE / "peers" / "py_multiprocessing.py"), arg],
                               capture_output=True, text=True, timeout=self.args.bench_timeout)
        except subprocess.TimeoutExpired:
            self.res["errors"].append(f"{key}: timed out after {self.args.bench_timeout} s")
            return
        if p.returncode != 0:
            self.res["errors"].append(f"{key}: exit {p.returncode}: {p.stderr[-500:]}")
            return
        r = json.loads(p.stdout)
        value = r["value"] * {"us": 1e-6, "ms": 1e-3}.get(r["unit"], 1)  # base units: s, items/s
        self.sample(key, value, metric=r["metric"])

    # -- phases -----------------------------------------------------------------------------
    def rounds(self):
        goals, peers = self.cfg["goal"], self.cfg["peer"]
        progs = sorted(p.name for p in (self.build / "bench").glob("bench_*")
                       if p.is_file() and os.access(p, os.X_OK) and p.name not in SWEEPS)
        commands = [(g["id"], g["command"], g.get("requires")) for g in goals if "command" in g]
        commands += [(k, v["command"], v.get("requires")) for k, v in peers.items() if v["kind"] == "command"]
        if commands and not self.lines.exists():
            self.lines.parent.mkdir(parents=True, exist_ok=True)
            log("writing the 2,000,000-line input")
            subprocess.run([sys.executable, str(HERE / "peers" / "make_lines.py"), str(self.lines)], check=True)
        pythons = [(k, v["arg"]) for k, v in peers.items() if v["kind"] == "python"]
        extra = ["--benchmark_repetitions=1"]
        if self.args.quick:
            extra.append("--benchmark_min_time=0.2")
        for r in range(self.args.rounds):
            log(f"round {r + 1}/{self.args.rounds}")
            # parafork and its peer side by side: programs, then commands, then Python.
            for prog in progs:
                self.run_bench(prog, f"r{r}", extra)
            for key, command, requires in commands:
                self.run_command(key, command, requires)
            for key, arg in pythons:
                self.run_python(key, arg)

    def sweeps(self):
        reps = 2 if self.args.quick else 3
        self.res["sweep_reps"] = reps
        for prog in SWEEPS:
            extra = [f"--benchmark_repetitions={reps}"]
            if self.args.quick:
                extra.append("--benchmark_min_time=0.1")
            self.run_bench(prog, "sweep", extra)

    def diagnose(self, unmet):
        """strace -c and perf stat for every goal that was not met."""
        have_strace, have_perf = shutil.which("strace"), shutil.which("perf")
        events = "task-clock,context-switches,cpu-migrations,page-faults"
        if have_perf:
            probe = subprocess.run(["perf", "stat", "-x,", "-e", "instructions", "true"],
                                   capture_output=True, text=True)
            if probe.returncode == 0 and "not supported" not in probe.stderr:
                events += ",cycles,instructions"
        for g in unmet:
            if "command" in g:
                if g.get("requires") and not Path(self.subst(g["requires"])).exists():
                    continue
                cmd = ["bash", "-c", self.subst(g["command"])]
            else:
                exe = self.binary(g["binary"])
                if exe is None:
                    continue
                cmd = [str(exe), f"--benchmark_filter={g['benchmark']}", "--benchmark_min_time=0.05",
                       "--benchmark_repetitions=1"]
            d = {"command": " ".join(cmd)}
            log(f"diagnosing {g['id']}")
            if have_strace:
                f = self.raw / f"strace.{g['id']}.txt"
                try:
                    subprocess.run(["strace", "-f", "-c", "-o", str(f)] + cmd, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=self.env, timeout=180)
                    d["strace"] = f.read_text() if f.exists() else ""
                except subprocess.TimeoutExpired:
                    d["strace"] = "(timed out after 180 s)"
            if have_perf:
                try:
                    p = subprocess.run(["perf", "stat", "-e", events, "--"] + cmd, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True, env=self.env, timeout=180)
                    err = p.stderr
                    at = err.find("Performance counter stats")  # drop the program's own banner
                    d["perf"] = (err[at:] if at >= 0 else err).strip()
                except subprocess.TimeoutExpired:
                    d["perf"] = "(timed out after 180 s)"
            self.res["diagnostics"][g["id"]] = d

    def main(self):
        self.env = dict(os.environ)
        # pi over 2^32 terms is the goal's size; --quick takes 2^30 to stay short.
        self.env.setdefault("PARAFORK_BENCH_PI_LOG2", "30" if self.args.quick else "32")
        self.res["machine"] = machine()
        self.res["started"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.res["quick"] = self.args.quick
        self.res["note"] = self.args.note
        self.res["rounds"] = self.args.rounds
        self.res["pi_log2"] = int(self.env["PARAFORK_BENCH_PI_LOG2"])
        self.res["command"] = "bench/run" + (" --quick" if self.args.quick else "")
        self.note_load("start")
        self.rounds()
        self.sweeps()
        sys.path.insert(0, str(HERE))
        import report
        unmet = [g for g in self.cfg["goal"] if report.evaluate(self.res, self.cfg, g)["met"] is False]
        if not self.args.no_diagnose:
            self.diagnose(unmet)
        self.note_load("end")
        self.res["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        (self.out / "results.json").write_text(json.dumps(self.res, indent=1))
        log(f"results in {self.out / 'results.json'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build" / "bench-release"))
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=0)
    ap.add_argument("--no-diagnose", action="store_true")
    ap.add_argument("--note", default="", help="a sentence for the report (e.g. what else ran)")
    ap.add_argument("--bench-timeout", type=int, default=600)
    a = ap.parse_args()
    if not a.rounds:
        a.rounds = 3 if a.quick else 5
    Runner(a).main()
