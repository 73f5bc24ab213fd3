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

  // A pipeline's graph as SVG, left to right: stages (name, items/s) and, between them, each
  // queue with its depth; the program itself when it reads the output. Layers by longest path.
  const SVG = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs, text) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = String(text);
    return e;
  };
  function graph(g) {
    const nodes = [];
    const byId = {};
    const add = (n) => { nodes.push(n); byId[n.id] = n; };
    for (const st of g.stages)
      add({ id: "s" + st.index, kind: "stage", title: st.name, sub: rate(st.rate) + "/s", w: 132, h: 42, data: st });
    for (const q of g.queues)
      add({ id: "q" + q.index, kind: "queue", title: num(q.depth), sub: "", w: 64, h: 24, data: q });
    const links = [];
    for (const q of g.queues) {
      for (const f of q.from) links.push(["s" + f, "q" + q.index]);
      for (const t of q.to) links.push(["q" + q.index, "s" + t]);
      if (q.to_parent) {
        if (!byId.parent) add({ id: "parent", kind: "parent", title: "program", sub: "reads the output", w: 120, h: 42 });
        links.push(["q" + q.index, "parent"]);
      }
    }
    for (const n of nodes) n.layer = 0;
    for (let round = 0; round < nodes.length; round++)
      for (const [a, b] of links)
        if (byId[a] && byId[b] && byId[b].layer < byId[a].layer + 1) byId[b].layer = byId[a].layer + 1;
    const layers = [];
    for (const n of nodes) (layers[n.layer] = layers[n.layer] || []).push(n);
    const colW = 160, rowH = 58, pad = 10;
    let height = 0;
    layers.forEach((col, i) => {
      col.forEach((n, j) => {
        n.x = pad + i * colW + (colW - 20 - n.w) / 2;
        n.y = pad + j * rowH + (rowH - n.h) / 2;
      });
      height = Math.max(height, pad * 2 + col.length * rowH);
    });
    const svg = svgEl("svg", { class: "graph", width: pad * 2 + layers.length * colW - 20, height });
    for (const [a, b] of links) {
      const u = byId[a], v = byId[b];
      if (!u || !v) continue;
      svg.append(svgEl("path", { class: "link", d: `M${u.x + u.w},${u.y + u.h / 2} C${u.x + u.w + 20},${u.y + u.h / 2} ${v.x - 20},${v.y + v.h / 2} ${v.x},${v.y + v.h / 2}` }));
    }
    for (const n of nodes) {
      const grp = svgEl("g", { class: n.kind + (n.kind === "stage" && n.data.state ? " state-" + n.data.state : "") });
      if (n.kind === "stage") grp.setAttribute("data-stage", n.data.index);
      if (n.kind === "queue") {
        grp.setAttribute("data-queue", n.data.index);
        grp.setAttribute("data-depth", n.data.depth);
      }
      grp.append(svgEl("rect", { x: n.x, y: n.y, width: n.w, height: n.h, rx: n.kind === "queue" ? 12 : 5 }));
      const tx = n.x + n.w / 2;
      if (n.kind === "queue") {
        grp.append(svgEl("text", { x: tx, y: n.y + 16, class: "depth" }, n.title));
        grp.append(svgEl("title", {}, "queue " + n.data.index + " (" + n.data.type + "): " + num(n.data.depth) +
                         " waiting, " + num(n.data.sent) + " put, " + num(n.data.received) + " taken"));
      } else {
        grp.append(svgEl("text", { x: tx, y: n.y + 17, class: "name" }, n.title.length > 18 ? n.title.slice(0, 17) + "…" : n.title));
        grp.append(svgEl("text", { x: tx, y: n.y + 33, class: "rate" }, n.sub));
        grp.append(svgEl("title", {}, n.title));
      }
      svg.append(grp);
    }
    return el("div", { class: "graph-box" }, svg);
  }

  function stageTable(p) {
    const procs = {};
    for (const w of p.worker_list) procs[w.slot] = w;
    const body = el("tbody");
    for (const st of p.graph.stages) {
      const w = procs[st.index];
      body.append(el("tr", { "data-stage": st.index },
        el("td", {}, st.index), el("td", {}, st.name), el("td", {}, st.pid === null ? "in the program" : st.pid),
        el("td", { class: "state-" + (st.state || "none") }, st.state || "done before forking"),
        el("td", {}, num(st.in)), el("td", {}, num(st.out)), el("td", { class: "stage-rate" }, rate(st.rate)),
        el("td", {}, w && w.cpu_seconds !== null ? w.cpu_seconds.toFixed(2) + " s" : "–"),
        el("td", {}, bytes(w ? w.rss_bytes : null))));
    }
    return el("table", { class: "stages" },
      el("thead", {}, el("tr", {}, ...["#", "stage", "pid", "state", "taken", "put", "items/s", "CPU", "RSS"].map((h) => el("th", {}, h)))),
      body);
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
    if (p.graph) {
      box.append(graph(p.graph));
      if (p.state === "running") box.append(stageTable(p));
    } else if (p.state === "running" && p.worker_list.length) {
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
