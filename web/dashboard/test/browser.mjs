// End-to-end: runs a program with the dashboard on (tests/dashboard/demo.cpp), opens its page
// in Debian's Chromium, headless, and checks that the worker count, the tasks done and the
// killed worker's error appear on the page, and a running pipeline's graph with its stages and
// a queue filling up; saves a screenshot.
// Usage: node browser.mjs DEMO_PROGRAM SCREENSHOT.png   (CHROMIUM: the browser, /usr/bin/chromium)
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const [demoPath, screenshot] = process.argv.slice(2);
if (!demoPath || !screenshot) {
  console.error("usage: node browser.mjs DEMO_PROGRAM SCREENSHOT.png");
  process.exit(2);
}
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "parafork-browser-"));
let demo = null;
let browser = null;

async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  browser = null;
  if (demo && demo.exitCode === null) {
    demo.stdin.end();  // the demo's signal to finish
    const exited = new Promise((r) => demo.once("exit", r));
    const late = setTimeout(() => demo.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(late);
  }
  rmSync(profile, { recursive: true, force: true });
}

// The whole test is bounded: a hang fails it, with everything it started stopped.
const limit = setTimeout(async () => {
  console.error("browser test: time limit (60 s)");
  await cleanup();
  process.exit(1);
}, 60000);

function fail(why) {
  throw new Error(why);
}

try {
  demo = spawn(demoPath, [], { stdio: ["pipe", "pipe", "inherit"] });
  const said = {};
  const lines = createInterface({ input: demo.stdout });
  await new Promise((resolve, reject) => {
    lines.on("line", (line) => {
      const [key, ...rest] = line.split(" ");
      said[key] = rest.join(" ");
      if (key === "READY") resolve();
    });
    demo.once("exit", (code, sig) => reject(new Error(`demo exited early (${code ?? sig})`)));
  });
  if (!said.URL || !said.URL.startsWith("http://127.0.0.1:")) fail("no dashboard URL: " + said.URL);
  const victim = said.VICTIM;
  if (!victim) fail("the demo's worker did not die");

  browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           `--user-data-dir=${profile}`],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1200, height: 1000 });
  const failures = [];
  page.on("pageerror", (e) => failures.push("page error: " + e.message));
  page.on("requestfailed", (r) => {
    // Only the page's own server is ever asked: nothing is fetched from elsewhere.
    if (!r.url().startsWith(said.URL)) failures.push("request elsewhere: " + r.url());
  });
  page.on("request", (r) => {
    if (!r.url().startsWith(said.URL)) failures.push("request elsewhere: " + r.url());
  });
  await page.goto(said.URL, { waitUntil: "load" });

  const text = (sel) => page.$eval(sel, (e) => e.textContent.trim());
  const number = async (sel) => Number((await text(sel)).replace(/,/g, ""));
  // The page updates itself (no reload): wait for what the demo did to show.
  // The pool's 3 workers and the pipeline's 4 stage processes.
  await page.waitForFunction(() => document.getElementById("total-workers").textContent.trim() === "7",
                             { timeout: 15000 });
  await page.waitForFunction(
    (pid) => [...document.querySelectorAll("#errors tr.error-row")].some(
      (tr) => tr.textContent.includes("died (signal 9)") && tr.textContent.includes(pid)),
    { timeout: 15000 }, victim);
  await page.waitForFunction(
    () => [...document.querySelectorAll("#errors tr.error-row")].some(
      (tr) => tr.textContent.includes("task failed on purpose: input 7")),
    { timeout: 15000 });
  const done1 = await number("#total-done");
  if (!(done1 >= 202)) fail("tasks done shown: " + done1);
  // Live: the count grows while the page stays, and a worker shows as busy on a task.
  await page.waitForFunction((n) => Number(document.getElementById("total-done").textContent.replace(/,/g, "")) > n,
                             { timeout: 15000 }, done1);
  await page.waitForFunction(
    () => [...document.querySelectorAll("table.workers td.state-busy")].some((td) => /busy on (task|call) \d+/.test(td.textContent)),
    { timeout: 15000 });
  const poolName = await text(".pool h3");
  if (!poolName.includes("browser-demo")) fail("pool name shown: " + poolName);
  const workers = await page.$$eval("table.workers tbody tr", (rows) => rows.length);
  if (workers !== 3) fail("worker rows: " + workers);
  // The pipeline: its graph (4 stages, 2 queues), the sink's queue filling, items/s per stage.
  await page.waitForFunction(() => {
    const box = [...document.querySelectorAll(".pool")].find((b) => b.querySelector("h3").textContent.includes("browser-pipe"));
    if (!box) return false;
    const stages = [...box.querySelectorAll("svg.graph g.stage")].map((g) => g.textContent);
    const queues = [...box.querySelectorAll("svg.graph g.queue")];
    return stages.length === 4 && stages[0].includes("ticker") && stages[3].includes("slow-sink") &&
           queues.length === 2 && Number(queues[1].getAttribute("data-depth")) > 0 &&
           box.querySelectorAll("table.stages tbody tr").length === 4 &&
           Number(box.querySelector("table.stages tbody tr td.stage-rate").textContent.replace(/,/g, "")) > 0;
  }, { timeout: 15000 });
  // The chart has had a few samples by now.
  await page.waitForFunction(() => document.querySelector("#chart canvas") !== null, { timeout: 15000 });
  await new Promise((r) => setTimeout(r, 1500));
  await page.screenshot({ path: screenshot, fullPage: true });
  if (failures.length) fail(failures.join("; "));
  console.log(`browser test: workers 3, tasks done ${done1}+, killed worker ${victim}, pipeline graph shown; screenshot ${screenshot}`);
  await cleanup();
  clearTimeout(limit);
  console.log("1 passed, 0 failed");
} catch (e) {
  console.error("browser test failed: " + (e && e.stack ? e.stack : e));
  await cleanup();
  clearTimeout(limit);
  process.exit(1);
}
