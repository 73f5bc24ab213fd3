#!/usr/bin/env python3
"""Turns OUT/results.json (from bench/runner.py) into the goal table on stdout, and
docs/performance.md with PNG plots in docs/perf/. Usage: report.py [--out DIR] [--no-docs]

Values are kept in base units (seconds, items/s, bytes/s) and converted to each row's display
unit only when printed. "ratio" is always parafork's speed divided by the other's: above 1
parafork is faster, below 1 slower (for a time, the other's time divided by parafork's).
"""
import argparse
import json
import re
import statistics
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

SCALE = {"ns": 1e9, "us": 1e6, "ms": 1e3, "s": 1, "items/s": 1, "k items/s": 1e-3,
         "M items/s": 1e-6, "MB/s": 1e-6, "GB/s": 1e-9, "x": 1}
TIME_UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1}
LOWER_IS_BETTER = {"real_time", "seconds"}


# -- extracting samples -----------------------------------------------------------------------
def bench_rows(res, binary, regex):
    rows = res.get("bench", {}).get(binary, [])
    rx = re.compile(regex)
    names = [r["name"] for r in rows if rx.search(r["name"])]
    if not names:
        return []
    first = names[0]  # several rows may match: use the first benchmark the regex finds
    return [r for r in rows if r["name"] == first]


def metric_of(row, metric):
    if metric == "real_time":
        return row["real_time"] * TIME_UNIT[row.get("time_unit", "ns")]
    if metric.startswith("counter:"):
        return row.get(metric.split(":", 1)[1])
    return row.get(metric)


def samples(res, spec):
    """Sample values (base units) of a goal or peer entry, or None when it was not run."""
    if "command" in spec or spec.get("kind") in ("python", "command"):
        s = res.get("samples", {}).get(spec["_key"], [])
        return [x["value"] for x in s] or None
    if "binary" not in spec:
        return None
    metric = spec["metric"]
    if metric == "efficiency":
        par = [metric_of(r, "real_time") for r in bench_rows(res, spec["binary"], spec["benchmark"])]
        ser = [metric_of(r, "real_time") for r in bench_rows(res, spec["binary"], spec["baseline"])]
        if not par or not ser:
            return None
        s, j = statistics.median(ser), spec["jobs"]
        return [s / (p * j) for p in par]
    vals = [metric_of(r, metric) for r in bench_rows(res, spec["binary"], spec["benchmark"])]
    vals = [v for v in vals if v is not None]
    return vals or None


def stats(vals):
    return None if not vals else {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def speed(value, metric):
    """A number where bigger is faster, to form ratios."""
    return 1 / value if metric in LOWER_IS_BETTER else value


def evaluate(res, cfg, goal):
    g = dict(goal, _key=goal["id"])
    own = stats(samples(res, g))
    out = {"goal": goal, "own": own, "peer": None, "floor": None, "ratio": None, "floor_ratio": None, "met": None}
    for role in ("peer", "floor"):
        if goal.get(role) and goal[role] in cfg["peer"]:
            p = dict(cfg["peer"][goal[role]], _key=goal[role])
            st = stats(samples(res, p))
            out[role] = {"id": goal[role], "label": p["label"], "metric": p.get("metric", goal["metric"]), "stats": st}
            if own and st:
                out[role + "_ratio" if role == "floor" else "ratio"] = (
                    speed(own["median"], goal["metric"]) / speed(st["median"], out[role]["metric"]))
    if own:
        if goal.get("goal_vs_peer") and out["ratio"] is not None:
            out["met"] = out["ratio"] >= goal["goal_vs_peer"]
        else:
            v = own["median"] * SCALE[goal["unit"]]
            out["met"] = v <= goal["goal"] if goal["direction"] == "lower" else v >= goal["goal"]
    return out


# -- formatting ----------------------------------------------------------------------------
def num(v):
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def show(st, unit, spread=True):
    if not st:
        return "not built"
    k = SCALE[unit]
    s = f"{num(st['median'] * k)} {unit}"
    if spread and st["n"] > 1:
        lo, hi = sorted((st["min"] * k, st["max"] * k))
        s += f" [{num(lo)}–{num(hi)}]"
    return s


def peer_unit(goal_unit, metric):
    """The display unit for a peer whose metric may differ from the goal's (e.g. a rate)."""
    if metric == "items_per_second":
        return "M items/s" if goal_unit in ("us", "ns", "ms", "s") else goal_unit
    return goal_unit


def goal_text(goal):
    sym = "≤" if goal["direction"] == "lower" else "≥"
    if goal.get("goal_vs_peer"):
        return f"≥ {num(goal['goal_vs_peer'])}× peer"
    return f"{sym} {num(goal['goal'])} {goal['unit']}"


def failed(res, goal):
    """True when the row's program or command ran and failed (rather than not existing)."""
    key = goal.get("binary", goal["id"])
    return any(e.startswith((key + ":", key + " ")) for e in res.get("errors", []))


def goal_rows(res, cfg):
    rows = []
    for goal in cfg["goal"]:
        e = evaluate(res, cfg, goal)
        peer = e["peer"]
        floor = e["floor"]

        def side(x):
            if not x:
                return "—"
            return f"{x['label']}: {show(x['stats'], peer_unit(goal['unit'], x['metric']), spread=False)}"

        rows.append({
            "id": goal["id"],
            "workload": goal["workload"],
            "parafork": show(e["own"], goal["unit"]) if e["own"] or not failed(res, goal) else "failed (see errors)",
            "peer": side(peer),
            "ratio": f"{num(e['ratio'])}×" if e["ratio"] is not None else "—",
            "floor": side(floor),
            "vs floor": f"{num(e['floor_ratio'])}×" if e["floor_ratio"] is not None else "—",
            "goal": goal_text(goal),
            "met?": {True: "yes", False: "**NO**", None: "not built"}[e["met"]],
            "reference": goal.get("reference", ""),
            "_e": e,
        })
    return rows


def text_table(rows, cols):
    w = {c: max(len(c), *(len(str(r[c]).replace("**", "")) for r in rows)) for c in cols}
    line = " | ".join(c.ljust(w[c]) for c in cols)
    out = [line, "-+-".join("-" * w[c] for c in cols)]
    for r in rows:
        out.append(" | ".join(str(r[c]).replace("**", "").ljust(w[c]) for c in cols))
    return "\n".join(out)


def md_table(rows, cols):
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(out)


# -- sweeps ----------------------------------------------------------------------------------
def by_arg(res, binary, prefix, metric):
    """{arg: stats} for rows named prefix/<arg>/..."""
    groups = {}
    for r in res.get("bench", {}).get(binary, []):
        m = re.match(re.escape(prefix) + r"/(\d+)(/|$)", r["name"])
        if m:
            v = metric_of(r, metric)
            if v is not None:
                groups.setdefault(int(m.group(1)), []).append(v)
    return {k: stats(v) for k, v in sorted(groups.items())}


def size_name(b):
    for unit, k in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= k and b % k == 0:
            return f"{b // k} {unit}"
    return f"{b} B"


def scaling(res):
    ser = stats([metric_of(r, "real_time") for r in bench_rows(res, "bench_scaling", "^BM_PiSerial")])
    fj = by_arg(res, "bench_scaling", "BM_PiForkJoin", "real_time")
    th = by_arg(res, "bench_scaling", "BM_PiThreads", "real_time")
    if not ser or not fj:
        return ser, []
    rows = []
    for j in sorted(fj):
        r = {"jobs": j, "fork_join": fj[j]["median"], "threads": th.get(j, {}) and th[j]["median"]}
        r["fj_speedup"] = ser["median"] / r["fork_join"]
        r["fj_eff"] = r["fj_speedup"] / j
        if r["threads"]:
            r["th_speedup"] = ser["median"] / r["threads"]
            r["th_eff"] = r["th_speedup"] / j
        rows.append(r)
    return ser, rows


def plots(res, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing (apt-get install python3-matplotlib): no plots", file=sys.stderr)
        return []
    made = []
    outdir.mkdir(parents=True, exist_ok=True)
    cpus = res["machine"]["cpus_usable"]

    ser, rows = scaling(res)
    if rows:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        js = [r["jobs"] for r in rows]
        ax[0].plot(js, [r["fj_speedup"] for r in rows], "o-", label="fork_join (processes)")
        if all("th_speedup" in r for r in rows):
            ax[0].plot(js, [r["th_speedup"] for r in rows], "s--", label="std::jthread")
        ax[0].plot(js, [min(j, cpus) for j in js], ":", color="gray", label=f"ideal ({cpus} CPUs)")
        ax[0].set(xlabel="jobs", ylabel="speedup over serial", title=f"pi, 2^{res.get('pi_log2', 32)} terms")
        ax[0].legend()
        ax[1].plot(js, [r["fj_eff"] for r in rows], "o-", label="fork_join")
        if all("th_eff" in r for r in rows):
            ax[1].plot(js, [r["th_eff"] for r in rows], "s--", label="std::jthread")
        ax[1].axhline(0.95, color="red", lw=0.8, label="goal at 2 jobs: 0.95")
        ax[1].set(xlabel="jobs", ylabel="efficiency = speedup / jobs", ylim=(0, 1.1))
        for a in ax:
            a.set_xticks(js)
        ax[1].legend()
        fig.tight_layout()
        fig.savefig(outdir / "scaling.png", dpi=90)
        plt.close(fig)
        made.append("scaling.png")

    to = by_arg(res, "bench_costs", "BM_TransferToKid", "bytes_per_second")
    fr = by_arg(res, "bench_costs", "BM_TransferFromKid", "bytes_per_second")
    rt = by_arg(res, "bench_costs", "BM_RoundTripSize", "real_time")
    if to or rt:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        for d, label in ((to, "parent → kid"), (fr, "kid → parent")):
            if d:
                ax[0].plot(list(d), [s["median"] / 1e9 for s in d.values()], "o-", label=label)
        ax[0].set(xscale="log", xlabel="payload (bytes)", ylabel="GB/s", title="proc_pool transfer, len_prefix")
        ax[0].legend()
        if rt:
            ax[1].plot(list(rt), [s["median"] * 1e6 for s in rt.values()], "o-")
            ax[1].set(xscale="log", yscale="log", xlabel="message (bytes)", ylabel="µs",
                      title="echo round trip vs size")
        fig.tight_layout()
        fig.savefig(outdir / "transfer.png", dpi=90)
        plt.close(fig)
        made.append("transfer.png")

    fj = by_arg(res, "bench_costs", "BM_ForkJoinStart", "real_time")
    pp = by_arg(res, "bench_costs", "BM_ProcPoolStart", "real_time")
    if fj:
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(list(fj), [s["median"] * 1e3 for s in fj.values()], "o-", label="fork_join, 1 part")
        if pp:
            ax.plot(list(pp), [s["median"] * 1e3 for s in pp.values()], "s-", label="proc_pool, 2 kids")
        ax.set(xlabel="parent resident memory (MiB)", ylabel="ms", title="start cost vs parent size")
        ax.legend()
        fig.tight_layout()
        fig.savefig(outdir / "fork.png", dpi=90)
        plt.close(fig)
        made.append("fork.png")
    return made


# -- the document ----------------------------------------------------------------------------
def performance_md(res, cfg, rows, made):
    m = res["machine"]
    loads = [x["load"][0] for x in res["load"]]
    L = []
    L.append("# Performance\n")
    L.append("Generated by `bench/run` (see [benchmarks.md](benchmarks.md)); do not edit by hand except the "
             "notes in `bench/why/` (the Python section among them), which are copied in below.\n")
    L.append(f"- **Run**: `{res['command']}`, {res['started']} to {res['finished']} (UTC); "
             f"{res['rounds']} alternating rounds of parafork and its peers; sweeps "
             f"{res.get('sweep_reps', '?')} repetition(s).")
    L.append(f"- **Machine**: {m['cpu']}, {m['cpus_usable']} usable CPUs ({m['cpus_online']} online), "
             f"{m['mem_gib']} GiB; {m['kernel']}; transparent huge pages: `{m['thp']}`; {m['compiler']}; "
             f"Python {m['python']}.")
    L.append(f"- **Load average** (1 min) during the run: {min(loads):.1f} to {max(loads):.1f} "
             f"(median {statistics.median(loads):.1f}) on {m['cpus_usable']} CPUs, recorded before every step "
             f"(table at the end). The benchmarks themselves keep about {m['cpus_usable']} to "
             f"{m['cpus_usable'] + 1} runnable; more means other work shared the machine.")
    if res.get("note"):
        L.append(f"- **Note**: {res['note']}")
    if max(loads) > m["cpus_usable"] + 1:
        L.append(f"- **Noise warning**: the machine was shared with other work (load above its CPU count): "
                 "every figure below is slower and more spread out than on an idle machine. The ranges "
                 "[min–max] show how much; compare ratios (measured side by side) rather than absolutes.")
    L.append("")
    L.append("## Goals\n")
    L.append("Medians over the rounds, [min–max] in brackets. *ratio* = parafork's speed ÷ the peer's "
             "(above 1: parafork is faster); *vs floor* = parafork's speed ÷ the same work on threads in "
             "one process (below 1: what crossing processes costs). References are the issues' "
             "figures from the 2-core development VM.\n")
    cols = ["workload", "parafork", "peer", "ratio", "floor", "vs floor", "goal", "met?", "reference"]
    L.append(md_table(rows, cols))
    L.append("")
    L.append("<details><summary>The command behind each row</summary>\n")
    rep = []
    for g in cfg["goal"]:
        if "command" in g:
            c = g["command"].replace("{build}", "build/bench-release").replace("{lines}", "lines.txt")
        else:
            c = f"build/bench-release/bench/{g['binary']} --benchmark_filter='{g['benchmark']}'"
            if g["metric"] == "efficiency":
                c += f" (and '{g['baseline']}')"
        rep.append({"row": g["workload"], "command": f"`{c}`"})
    L.append(md_table(rep, ["row", "command"]))
    L.append("\n`lines.txt`: `bench/peers/make_lines.py lines.txt`. Peers: `bench/peers/py_multiprocessing.py "
             "apply|imap1|map|pipeline3`, the `[peer.*]` commands of `bench/goals.toml`.\n</details>\n")
    extra = []
    for key in ("gnu_pipe", "gnu_pipepart", "serial_awk", "serial_gzip", "gnu_pipe_gzip", "floor_tiny_per_task"):
        if key in cfg["peer"]:
            p = dict(cfg["peer"][key], _key=key)
            st = stats(samples(res, p))
            unit = "s" if p["kind"] == "command" else "M items/s"
            extra.append({"peer": p["label"], "median [min–max]": show(st, unit)})
    if extra:
        L.append("Other peers measured in the same rounds (filters over 2,000,000 random lines, 63 MB; "
                 "tiny requests with one task each on a thread pool):\n")
        L.append(md_table(extra, ["peer", "median [min–max]"]))
        L.append("")

    ser, srows = scaling(res)
    L.append("## Scaling: CPU-bound work\n")
    if srows:
        L.append(f"pi by the Leibniz series, 2^{res.get('pi_log2', 32)} terms, split by `nsplit` over "
                 f"`fork_join` (processes) and over `std::jthread` (threads, the floor). Serial: "
                 f"{ser['median']:.3f} s. Efficiency = serial time / (time × jobs); above "
                 f"{m['cpus_usable']} jobs it can at best fall as {m['cpus_usable']}/jobs.\n")
        t = [{"jobs": r["jobs"], "fork_join s": f"{r['fork_join']:.3f}", "speedup": f"{r['fj_speedup']:.2f}",
              "efficiency": f"{r['fj_eff']:.2f}",
              "threads s": f"{r['threads']:.3f}" if r["threads"] else "—",
              "threads speedup": f"{r.get('th_speedup', 0):.2f}", "threads efficiency": f"{r.get('th_eff', 0):.2f}"}
             for r in srows]
        L.append(md_table(t, list(t[0])))
        L.append("")
        if "scaling.png" in made:
            L.append("![scaling](perf/scaling.png)\n")
    else:
        L.append("bench_scaling was not built or did not run.\n")

    L.append("## Costs that grow with the work\n")
    fj = by_arg(res, "bench_costs", "BM_ForkJoinStart", "real_time")
    pp = by_arg(res, "bench_costs", "BM_ProcPoolStart", "real_time")
    if fj:
        L.append("Start cost versus the parent's resident memory (allocated and touched, 4 KiB pages unless "
                 "transparent huge pages apply): `fork_join` of one empty part (fork, exit, reap), and a "
                 "`proc_pool` of 2 kids started, asked once each and stopped.\n")
        t = [{"parent RSS": f"{k} MiB", "fork_join": show(v, "ms"), "proc_pool (2 kids)": show(pp.get(k), "ms")}
             for k, v in fj.items()]
        L.append(md_table(t, list(t[0])))
        L.append("")
        if "fork.png" in made:
            L.append("![fork](perf/fork.png)\n")
    to = by_arg(res, "bench_costs", "BM_TransferToKid", "real_time")
    tob = by_arg(res, "bench_costs", "BM_TransferToKid", "bytes_per_second")
    fr = by_arg(res, "bench_costs", "BM_TransferFromKid", "real_time")
    frb = by_arg(res, "bench_costs", "BM_TransferFromKid", "bytes_per_second")
    if to:
        L.append("Transfer through a `proc_pool` kid with `len_prefix` frames: one payload each way per "
                 "iteration, answered by 8 bytes (the largest sizes run 1–3 times only).\n")
        t = [{"payload": size_name(k), "parent → kid": show(v, "ms", False),
              "GB/s": show(tob.get(k), "GB/s", False).replace(" GB/s", ""),
              "kid → parent": show(fr.get(k), "ms", False),
              "GB/s ": show(frb.get(k), "GB/s", False).replace(" GB/s", "")} for k, v in to.items()]
        L.append(md_table(t, list(t[0])))
        L.append("")
    rt = by_arg(res, "bench_costs", "BM_RoundTripSize", "real_time")
    if rt:
        L.append("Echo round trip through one kid versus the message size:\n")
        t = [{"message": size_name(k), "round trip": show(v, "us")} for k, v in rt.items()]
        L.append(md_table(t, list(t[0])))
        L.append("")
    if "transfer.png" in made:
        L.append("![transfer](perf/transfer.png)\n")
    note = HERE / "why" / "transfer.md"
    if to and note.exists():
        L.append(note.read_text().strip() + "\n")

    unmet = [r for r in rows if r["_e"]["met"] is False]
    L.append("## Goals not met, and why\n")
    if not unmet:
        L.append("Every goal that was built was met in this run.\n")
    for r in unmet:
        L.append(f"### {r['workload']}: {r['parafork']} against {r['goal']}\n")
        why = HERE / "why" / f"{r['_e']['goal'].get('why', r['id'])}.md"
        L.append(why.read_text().strip() + "\n" if why.exists() else
                 f"No analysis written yet (add `bench/why/{r['id']}.md`).\n")
        d = res.get("diagnostics", {}).get(r["id"])
        if d:
            L.append(f"Measured by this run on `{d['command']}`:\n")
            if d.get("strace"):
                L.append("<details><summary>strace -f -c (syscall counts, children included)</summary>\n")
                L.append("```\n" + "\n".join(d["strace"].strip().splitlines()[:25]) + "\n```\n</details>\n")
            if d.get("perf"):
                L.append("<details><summary>perf stat</summary>\n")
                L.append("```\n" + d["perf"].strip() + "\n```\n</details>\n")

    python_note = HERE / "why" / "python.md"  # measured by bench/python/, written by hand
    if python_note.exists():
        L.append("## Python\n")
        L.append(python_note.read_text().strip() + "\n")

    L.append("## Every benchmark of the run\n")
    allrows = []
    for binary, brs in sorted(res.get("bench", {}).items()):
        names = list(dict.fromkeys(b["name"] for b in brs))
        for n in names:
            rs = [b for b in brs if b["name"] == n]
            st = stats([metric_of(b, "real_time") for b in rs])
            rate = stats([b["items_per_second"] for b in rs if "items_per_second" in b])
            byt = stats([b["bytes_per_second"] for b in rs if "bytes_per_second" in b])
            allrows.append({"program": binary, "benchmark": n, "time": show(st, "us"),
                            "items/s": show(rate, "M items/s", False) if rate else "",
                            "GB/s": show(byt, "GB/s", False) if byt else ""})
    if allrows:
        L.append(md_table(allrows, list(allrows[0])))
        L.append("")
    if res.get("errors"):
        L.append("## Errors during the run\n")
        for e in res["errors"]:
            L.append(f"- `{e.strip()[:300]}`")
        L.append("")
    L.append("## Load average during the run\n")
    L.append(md_table([{"time": x["t"], "step": x["step"], "load 1/5/15 min": " / ".join(f"{v:.2f}" for v in x["load"])}
                       for x in res["load"]], ["time", "step", "load 1/5/15 min"]))
    L.append("")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    ap.add_argument("--docs", default=str(ROOT / "docs"))
    ap.add_argument("--no-docs", action="store_true")
    a = ap.parse_args()
    res = json.loads((Path(a.out) / "results.json").read_text())
    cfg = tomllib.loads((HERE / "goals.toml").read_text())
    rows = goal_rows(res, cfg)
    cols = ["workload", "parafork", "peer", "ratio", "goal", "met?"]
    print(text_table(rows, cols))
    made_unmet = [r for r in rows if r["_e"]["met"] is False]
    if made_unmet:
        print(f"\n{len(made_unmet)} goal(s) not met: " + ", ".join(r["id"] for r in made_unmet))
    if not a.no_docs:
        docs = Path(a.docs)
        made = plots(res, docs / "perf")
        (docs / "performance.md").write_text(performance_md(res, cfg, rows, made))
        print(f"\nwrote {docs / 'performance.md'}" + (f" and {', '.join('perf/' + x for x in made)}" if made else ""))


if __name__ == "__main__":
    main()
