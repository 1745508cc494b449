// The burstwms dashboard: reads /api/pool and /api/series, draws them with plot.js, and
// listens to /api/events (Server-Sent Events) to add each event to the feed and redraw
// soon after the pool changes. The page's state is on <body data-*> for tests:
// data-live (open | closed), data-points, data-claimed-max, data-burst (shown | none).
"use strict";

const $ = (id) => document.getElementById(id);
const PALETTE = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
const FEED_MAX = 200;
const REDRAW_AFTER_MS = 700;  // one redraw for a burst of events
const TICK_MS = 5000;  // and now and then, so the time axis and the cost move on

let redrawTimer = null;

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function text(tag, content, cls) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (cls) node.className = cls;
  return node;
}

function fmt(value, digits) {
  return value === null || value === undefined ? "n/a" : Number(value).toFixed(digits);
}

function card(label, value) {
  const node = text("div", "", "card");
  node.append(text("div", String(value), "value"), text("div", label, "label"));
  return node;
}

function renderCards(pool) {
  const vms = pool.vm_totals;
  $("cards").replaceChildren(
    card("jobs idle", pool.jobs.idle), card("jobs running", pool.jobs.running),
    card("jobs completed", pool.jobs.completed), card("jobs held", pool.jobs.held),
    card("VMs running", vms.running || 0), card("VMs pending", vms.pending || 0),
    card("slots claimed", pool.slots.claimed), card("slots unclaimed", pool.slots.unclaimed),
    card("launch latency p50", pool.latency.n ? `${fmt(pool.latency.median_s, 1)} s` : "n/a"),
    card("cost so far", fmt(pool.cost, 4)));
}

function renderEntries(pool) {
  const rows = pool.entries.map((e) => {
    const tr = document.createElement("tr");
    const pilots = Object.entries(e.pilots).sort().map(([s, n]) => `${s}=${n}`).join(" ");
    const latency = e.latency.n ? `${fmt(e.latency.median_s, 1)} s / ${fmt(e.latency.p90_s, 1)} s`
                                : "n/a";
    for (const cell of [e.name, e.site, e.provider, pilots || "none", latency,
                        fmt(e.price_per_hour, 4), fmt(e.cost, 4)]) {
      tr.append(text("td", cell));
    }
    return tr;
  });
  $("entries").tBodies[0].replaceChildren(...rows);
}

function burstShown(points) {
  // The curve of a burst: slots were claimed, and later fewer were (or none).
  let peak = 0;
  for (const p of points) {
    if (p.claimed < peak) return true;
    peak = Math.max(peak, p.claimed);
  }
  return false;
}

function renderPlots(series) {
  const pts = series.points, t0 = pts.length ? pts[0].t : series.since, t1 = series.now;
  const line = (label, color, key, dash) => ({ label, color, dash,
                                               points: pts.map((p) => [p.t, key(p)]) });
  Plot.draw($("plot-vms"), { t0, t1, empty: "no pilots or slots in this window", lines: [
    line("VMs running", "#1f77b4", (p) => p.vms_running),
    line("VMs pending", "#9ec5e8", (p) => p.vms_pending, "5 4"),
    line("slots claimed", "#ff7f0e", (p) => p.claimed)] });
  const perEntry = series.entries.map((entry, i) =>
    line(`running at ${entry}`, PALETTE[i % PALETTE.length], (p) => p.jobs_running[entry] || 0));
  Plot.draw($("plot-jobs"), { t0, t1, empty: "no jobs in this window", lines: [
    line("idle (queue)", "#d62728", (p) => p.jobs_idle, "5 4"), ...perEntry] });
  const dots = series.entries.map((entry, i) => ({
    label: entry, color: PALETTE[i % PALETTE.length],
    points: series.launches.filter((l) => l.entry === entry).map((l) => [l.t, l.seconds]) }));
  Plot.draw($("plot-latency"), { t0, t1, dots: dots.filter((d) => d.points.length),
                                  empty: "no pilot registered in this window" });
  const body = document.body.dataset;
  body.points = String(pts.length);
  body.claimedMax = String(Math.max(0, ...pts.map((p) => p.claimed)));
  body.burst = burstShown(pts) ? "shown" : "none";
}

async function redraw() {
  redrawTimer = null;
  const seconds = Number($("window").value);
  const since = seconds ? `?since=${seconds}s` : "";
  try {
    const [pool, series] = await Promise.all([getJSON("/api/pool?detail=0"),
                                              getJSON(`/api/series${since}`)]);
    $("namespace").textContent = `namespace ${pool.namespace}, ${pool.events} events`;
    renderCards(pool);
    renderEntries(pool);
    renderPlots(series);
  } catch (err) {
    $("namespace").textContent = `cannot read the pool: ${err.message}`;
  }
}

function soon() {
  if (redrawTimer === null) redrawTimer = setTimeout(redraw, REDRAW_AFTER_MS);
}

function feedItem(record) {
  const li = document.createElement("li");
  li.append(text("span", record.time.slice(11, 19), "time"), " ",
            text("span", record.key, "key"), " ");
  if (record.job_id) {
    const link = text("a", record.job_id);
    link.href = `/job/${encodeURIComponent(record.job_id)}`;
    li.append(link, " ");
  }
  li.append(record.summary);
  li.title = record.summary;
  return li;
}

function listen() {
  const source = new EventSource("/api/events?backlog=100");
  source.onopen = () => {
    document.body.dataset.live = "open";
    $("live").textContent = "live";
  };
  source.onerror = () => {  // EventSource reconnects by itself, with Last-Event-ID
    document.body.dataset.live = "closed";
    $("live").textContent = "reconnecting…";
  };
  source.addEventListener("event", (message) => {
    const feed = $("feed");
    feed.prepend(feedItem(JSON.parse(message.data)));
    while (feed.children.length > FEED_MAX) feed.lastChild.remove();
    soon();
  });
}

$("window").addEventListener("change", redraw);
redraw();
listen();
setInterval(soon, TICK_MS);
