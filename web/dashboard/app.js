// The dashboard page: polls /api/state twice a second and redraws. Every string from the
// program (names, error messages) goes in as text, never as markup.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...kids) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  };
  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
  const secs = (s) => {
    if (s === null || s === undefined) return "–";
    if (s < 1) return (s * 1000).toFixed(0) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
  };
  const bytes = (b) => {
    if (b === null || b === undefined) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
    return b.toFixed(i ? 1 : 0) + " " + u[i];
  };
  const rate = (r) => (r >= 100 ? Math.round(r).toLocaleString("en-US") : r.toFixed(1));

  let plot = null;
  function chart(history) {
    const xs = history.map((p) => p[0]);
    const ys = history.map((p) => p[1]);
    const width = Math.max(300, $("chart").clientWidth - 14);
    if (!plot) {
      plot = new uPlot({
        width, height: 220,
        scales: { x: { time: false } },
        axes: [{ label: "seconds ago" }, { label: "tasks/s" }],
        series: [{ label: "t" }, { label: "tasks/s", stroke: "#2f7de1", fill: "rgba(47,125,225,.12)", width: 2 }],
        legend: { show: false },
      }, [xs, ys], $("chart"));
    } else {
      if (Math.abs(plot.width - width) > 4) plot.setSize({ width, height: 220 });
      plot.setData([xs, ys]);
    }
  }

  function workerState(w) {
    if (w.state === "busy")
      return "busy on " + (w.call !== null ? "call " + w.call + " item " : "task ") + w.task +
             " for " + secs(w.for_seconds);
    if (w.state === "idle") return "idle for " + secs(w.for_seconds);
    if (w.state === "dead") return "dead";
    return w.state;
  }

  function pool(p) {
    const box = el("div", { class: "pool " + p.state, "data-pool": p.id });
    box.append(el("h3", {}, "#" + p.id + " " + p.name, el("span", { class: "kind" }, p.kind),
                  el("span", { class: "state" }, p.state)));
    const stat = (label, value, cls) => el("span", {}, label + " ", el("b", cls ? { class: cls } : {}, value));
    const doneText = p.total !== null ? num(p.done) + " / " + num(p.total) : num(p.done);
    box.append(el("div", { class: "stats" },
      stat("workers", num(p.workers), "pool-workers"), stat("done", doneText, "pool-done"),
      stat("failed", num(p.failed), "pool-failed"), stat("retried", num(p.retried)),
      stat("in flight", num(p.in_flight)), stat("queued", num(p.queued)),
      stat("deaths", num(p.deaths)), stat("rate", rate(p.rate) + "/s"),
      stat("ETA", p.eta_seconds === null ? "–" : secs(p.eta_seconds)),
      stat("elapsed", secs(p.elapsed_seconds))));
    if (p.total) {
      const bar = el("div", { class: "bar" }, el("div", {}));
      bar.firstChild.style.width = Math.min(100, (100 * p.done) / p.total).toFixed(1) + "%";
      box.append(bar);
    }
    if (p.state === "running" && p.worker_list.length) {
      const body = el("tbody");
      for (const w of p.worker_list) {
        body.append(el("tr", { "data-pid": w.pid },
          el("td", {}, w.slot), el("td", {}, w.pid),
          el("td", { class: "state-" + w.state }, workerState(w)),
          el("td", {}, num(w.done)),
          el("td", {}, w.cpu_seconds === null ? "–" : w.cpu_seconds.toFixed(2) + " s"),
          el("td", {}, bytes(w.rss_bytes))));
      }
      box.append(el("table", { class: "workers" },
        el("thead", {}, el("tr", {}, el("th", {}, "slot"), el("th", {}, "pid"), el("th", {}, "state"),
                            el("th", {}, "tasks done"), el("th", {}, "CPU"), el("th", {}, "RSS"))),
        body));
    }
    return box;
  }

  function errors(list) {
    const body = $("errors").querySelector("tbody");
    body.replaceChildren();
    if (!list.length) {
      body.append(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "None.")));
      return;
    }
    for (const e of list) {
      let kind = e.kind;
      if (e.signal !== null) kind += " (signal " + e.signal + ")";
      else if (e.exit_code !== null) kind += " (exit " + e.exit_code + ")";
      body.append(el("tr", { class: "error-row" },
        el("td", {}, secs(e.seconds_ago) + " ago"), el("td", {}, "#" + e.pool),
        el("td", {}, e.call !== null ? "call " + e.call + " item " + e.task : e.task),
        el("td", {}, e.pid), el("td", {}, kind), el("td", {}, e.type),
        el("td", { class: "msg" }, e.message)));
    }
  }

  function render(s) {
    $("total-workers").textContent = num(s.totals.workers);
    $("total-done").textContent = num(s.totals.done);
    $("total-failed").textContent = num(s.totals.failed);
    $("total-retried").textContent = num(s.totals.retried);
    $("total-in-flight").textContent = num(s.totals.in_flight);
    const last = s.history.length ? s.history[s.history.length - 1][1] : 0;
    $("total-rate").textContent = rate(last);
    const pools = $("pools");
    pools.replaceChildren();
    if (!s.pools.length) pools.append(el("p", { class: "empty" }, "No call yet."));
    // Running calls first, newest first; then the finished ones.
    const order = [...s.pools].sort((a, b) =>
      (a.state === b.state ? 0 : a.state === "running" ? -1 : 1) || b.id - a.id);
    for (const p of order) pools.append(pool(p));
    errors(s.errors);
    chart(s.history);
  }

  async function poll() {
    try {
      const r = await fetch("api/state", { cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      render(await r.json());
      $("conn").textContent = "live · " + new Date().toLocaleTimeString();
      $("conn").className = "conn";
    } catch (e) {
      $("conn").textContent = "not reachable (" + e.message + "): the program may have ended";
      $("conn").className = "conn down";
    }
    setTimeout(poll, 500);
  }
  poll();
})();
