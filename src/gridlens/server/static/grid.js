/* The Grid page: one-line diagram coloured by the estimated |V|, time slider, lowest
   voltages, per-bus chart, meters on buses, feeder upload and the placement study.
   Vanilla JS + SVG; uPlot (vendored) for the charts. Data: /api/v1/feeders/... */
"use strict";
(function () {
  const app = document.getElementById("grid-app");
  if (!app) return;
  const isAdmin = app.dataset.admin === "true";
  const isOperator = app.dataset.operator === "true";
  const SVG = "http://www.w3.org/2000/svg";
  const W = 1000, H = 560, PAD = 30;
  const state = { feeder: null, hours: [], idx: 0, bus: null, chart: null, pchart: null };
  const $ = (id) => document.getElementById(id);
  const sel = $("feeder-select");

  async function api(method, path, body) {
    const opt = { method, credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      opt.headers["Content-Type"] = "application/json";
      opt.body = JSON.stringify(body);
    }
    const r = await fetch(path, opt);
    let doc = null;
    try { doc = await r.json(); } catch (e) { doc = null; }
    if (!r.ok) throw new Error((doc && doc.detail) || `HTTP ${r.status}`);
    return doc;
  }

  // |V| -> colour, continuous: dark red 0.90, red 0.93, orange 0.95, yellow-green 0.97,
  // green 1.00, teal 1.03, blue 1.05
  const STOPS = [[0.90, [127, 29, 29]], [0.93, [185, 28, 28]], [0.95, [245, 158, 11]],
    [0.97, [132, 204, 22]], [1.00, [22, 163, 74]], [1.03, [13, 148, 136]], [1.05, [37, 99, 235]]];
  function colour(v) {
    if (v == null || !isFinite(v)) return "#d1d5db";
    if (v <= STOPS[0][0]) return rgb(STOPS[0][1]);
    for (let i = 1; i < STOPS.length; i++) {
      const [x1, c1] = STOPS[i], [x0, c0] = STOPS[i - 1];
      if (v <= x1) {
        const t = (v - x0) / (x1 - x0);
        return rgb(c0.map((a, k) => a + t * (c1[k] - a)));
      }
    }
    return rgb(STOPS[STOPS.length - 1][1]);
  }
  const rgb = (c) => `rgb(${c.map((x) => Math.round(x)).join(",")})`;
  const fmt = (x, d) => (x == null || !isFinite(x) ? "-" : Number(x).toFixed(d));

  function el(name, attrs, parent) {
    const e = document.createElementNS(SVG, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function drawDiagram() {
    const f = state.feeder, svg = $("diagram");
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const n = f.buses.length;
    const r = n > 60 ? 5 : 9;
    const pos = {};
    f.buses.forEach((b) => {
      pos[b.name] = [PAD + b.x * (W - 2 * PAD), PAD + b.y * (H - 2 * PAD)];
    });
    const gl = el("g", {}, svg);
    f.lines.forEach((ln) => {
      const a = pos[ln.from], b = pos[ln.to];
      if (!a || !b) return;
      el("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], class: `line ${ln.kind}` }, gl);
    });
    const gb = el("g", {}, svg);
    f.buses.forEach((b, k) => {
      const [x, y] = pos[b.name];
      const c = el("circle", { cx: x, cy: y, r, class: "bus" + (b.pmu ? " pmu" : ""),
        "data-bus": b.name, "data-k": k, tabindex: 0 }, gb);
      c.addEventListener("mouseenter", (ev) => tip(ev, k));
      c.addEventListener("mousemove", (ev) => tip(ev, k));
      c.addEventListener("mouseleave", () => { $("bus-tip").hidden = true; });
      c.addEventListener("click", () => selectBus(k));
      c.addEventListener("focus", () => selectBus(k));
      b.meters.forEach((m, j) => {
        el("rect", { x: x + r + 1 + j * 7, y: y - r - 6, width: 6, height: 6, class: "meter" }, gb);
      });
      if (n <= 40) {
        const t = el("text", { x: x, y: y + r + 12, "text-anchor": "middle", class: "label" }, gb);
        t.textContent = b.name;
      }
    });
  }

  function current() {
    return state.hours.length ? state.hours[state.idx] : null;
  }

  function busValues(k) {
    const h = current();
    if (h) return h.buses[k];
    const f = state.feeder;
    return { name: f.buses[k].name, vm_pu: f.power_flow_vm_pu ? f.power_flow_vm_pu[k] : null };
  }

  function colourBuses() {
    const circles = $("diagram").querySelectorAll("circle.bus");
    circles.forEach((c) => {
      const v = busValues(Number(c.dataset.k));
      c.setAttribute("fill", colour(v.vm_pu));
      c.dataset.vm = v.vm_pu == null ? "" : String(v.vm_pu);
    });
    const h = current();
    const label = $("hour-label"), facts = $("hour-facts");
    if (h) {
      label.textContent = h.hour.replace("T", " ").replace(":00:00Z", ":00 UTC");
      const tve = h.mean_tve_pct != null ? `; mean TVE against the simulated truth ${fmt(h.mean_tve_pct, 3)} %` : "";
      facts.textContent = `Hour ${state.idx + 1} of ${state.hours.length}: ${h.meters_read} meter(s) read, ${h.meters_pseudo} pseudo-measured from their profile${tve}.`;
    } else {
      label.textContent = "no estimate yet";
      facts.textContent = state.feeder.power_flow_vm_pu
        ? "No estimated hour yet (no meter on its buses, or no readings): buses coloured by a power flow at nominal loads."
        : "";
    }
    lowestTable();
  }

  function tip(ev, k) {
    const t = $("bus-tip"), b = state.feeder.buses[k], v = busValues(k);
    let s = `bus ${b.name}: |V| ${fmt(v.vm_pu, 4)} pu`;
    if (v.vm_sigma_pu != null) s += ` ± ${fmt(v.vm_sigma_pu, 4)}`;
    if (v.va_deg != null) s += `, ${fmt(v.va_deg, 2)}°`;
    if (v.tve_pct != null) s += `, TVE ${fmt(v.tve_pct, 3)} %`;
    if (b.meters.length) s += ` · meters: ${b.meters.map((m) => m.name).join(", ")}`;
    if (b.pmu) s += " · µPMU";
    t.textContent = s;
    const box = $("diagram").parentElement.getBoundingClientRect();
    t.style.left = `${ev.clientX - box.left + 12}px`;
    t.style.top = `${ev.clientY - box.top + 12}px`;
    t.hidden = false;
  }

  function lowestTable() {
    const body = $("lowest").querySelector("tbody");
    body.textContent = "";
    const f = state.feeder;
    const rows = f.buses.map((b, k) => [b, busValues(k)]).filter((r) => r[1].vm_pu != null);
    rows.sort((a, b) => a[1].vm_pu - b[1].vm_pu);
    rows.slice(0, 8).forEach(([b, v]) => {
      const tr = document.createElement("tr");
      [b.name, fmt(v.vm_pu, 4), fmt(v.vm_sigma_pu, 4), fmt(v.va_deg, 2), fmt(v.tve_pct, 3),
        b.meters.map((m) => m.name).join(", ") || "-"].forEach((x) => {
        const td = document.createElement("td");
        td.textContent = x;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function selectBus(k) {
    state.bus = k;
    $("diagram").querySelectorAll("circle.bus").forEach((c) => {
      c.classList.toggle("selected", Number(c.dataset.k) === k);
    });
    $("bus-name").textContent = state.feeder.buses[k].name;
    const box = $("bus-chart");
    if (state.chart) { state.chart.destroy(); state.chart = null; }
    box.textContent = "";
    if (!state.hours.length || typeof uPlot === "undefined") {
      box.textContent = "no estimated hours";
      return;
    }
    const t = state.hours.map((h) => Date.parse(h.hour) / 1000);
    const vm = state.hours.map((h) => h.buses[k].vm_pu);
    const sd = state.hours.map((h) => h.buses[k].vm_sigma_pu || 0);
    const tve = state.hours.map((h) => (h.buses[k].tve_pct == null ? null : h.buses[k].tve_pct));
    const data = [t, vm, vm.map((v, i) => v + 2 * sd[i]), vm.map((v, i) => v - 2 * sd[i]), tve];
    const width = Math.max(280, box.clientWidth || 480);
    state.chart = new uPlot({
      width, height: 240,
      scales: { x: { time: true }, tve: { auto: true } },
      series: [{}, { label: "|V| pu", stroke: "#1d4ed8", width: 2 },
        { label: "+2σ", stroke: "#93c5fd", dash: [4, 3] },
        { label: "-2σ", stroke: "#93c5fd", dash: [4, 3] },
        { label: "TVE %", stroke: "#dc2626", scale: "tve" }],
      axes: [{}, { label: "|V| pu" }, { scale: "tve", side: 1, label: "TVE %", grid: { show: false } }],
    }, data, box);
  }

  function setHour(i) {
    if (!state.hours.length) return;
    state.idx = Math.max(0, Math.min(state.hours.length - 1, i));
    $("hour-slider").value = String(state.idx);
    colourBuses();
  }

  function metersTable() {
    const body = $("meter-table").querySelector("tbody");
    body.textContent = "";
    const f = state.feeder;
    f.buses.forEach((b) => b.meters.forEach((m) => {
      const tr = document.createElement("tr");
      [b.name, m.name, fmt(m.scale, 3)].forEach((x) => {
        const td = document.createElement("td");
        td.textContent = x;
        tr.appendChild(td);
      });
      const td = document.createElement("td");
      if (isAdmin) {
        const btn = document.createElement("button");
        btn.type = "button";
        btn.textContent = "Take off";
        btn.addEventListener("click", async () => {
          try {
            await api("DELETE", `/api/v1/feeders/${f.id}/meters/${m.device_id}`);
            await load(f.id);
          } catch (e) { $("meter-msg").textContent = e.message; }
        });
        td.appendChild(btn);
      }
      tr.appendChild(td);
      body.appendChild(tr);
    }));
    const busSel = $("meter-bus");
    if (busSel) {
      busSel.textContent = "";
      f.buses.forEach((b) => {
        const o = document.createElement("option");
        o.value = b.name;
        o.textContent = b.name + (b.load_kw ? ` (${fmt(b.load_kw, 0)} kW)` : "");
        busSel.appendChild(o);
      });
    }
    $("pmus-now").textContent = f.pmus.join(", ") || "none";
  }

  async function load(id) {
    const f = await api("GET", `/api/v1/feeders/${id}`);
    state.feeder = f;
    $("feeder-title").textContent = f.name;
    const metered = f.buses.filter((b) => b.meters.length).length;
    $("feeder-facts").textContent = `${f.buses.length} buses · ${f.lines.length} branches · ` +
      `${metered} bus(es) with meters · µPMUs ${f.pmus.join(", ") || "none"} · ` +
      (f.layout === "buscoords" ? "positions from the .dss Buscoords" : "computed radial layout") +
      (f.simulated_truth ? " · simulated truth (demo)" : "");
    drawDiagram();
    metersTable();
    $("hour-label").textContent = "estimating…";
    const est = await api("GET", `/api/v1/feeders/${id}/estimates`);
    state.hours = est.hours;
    const slider = $("hour-slider");
    slider.max = String(Math.max(0, state.hours.length - 1));
    slider.disabled = state.hours.length === 0;
    state.idx = Math.max(0, state.hours.length - 1);
    slider.value = String(state.idx);
    colourBuses();
    const low = state.feeder.buses.map((b, k) => [k, busValues(k).vm_pu]).filter((x) => x[1] != null);
    low.sort((a, b) => a[1] - b[1]);
    selectBus(low.length ? low[0][0] : 0);
    app.dataset.ready = "true";
  }

  // ---- placement study
  async function runPlacement(ev) {
    ev.preventDefault();
    const fd = new FormData(ev.target), msg = $("placement-msg"), bar = $("placement-progress");
    const body = {
      k: Number(fd.get("k")),
      fixed: String(fd.get("fixed") || "").split(",").map((s) => s.trim()).filter(Boolean),
      estimator: fd.get("estimator"), search: fd.get("search"),
    };
    $("placement-result").hidden = true;
    try {
      let job = await api("POST", `/api/v1/feeders/${state.feeder.id}/placement`, body);
      bar.hidden = false;
      while (job.status === "queued" || job.status === "running") {
        bar.value = job.progress;
        msg.textContent = `job ${job.id}: ${job.status}, ${Math.round(job.progress * 100)} %`;
        await new Promise((r) => setTimeout(r, 500));
        job = await api("GET", `/api/v1/jobs/${job.id}`);
      }
      bar.value = 1;
      if (job.status !== "done") throw new Error(job.error || job.status);
      msg.textContent = `job ${job.id}: ${job.result.evaluated} placements scored by ${job.result.estimator} in ${fmt(job.result.elapsed_s, 1)} s`;
      showPlacement(job.result);
    } catch (e) {
      msg.textContent = `placement failed: ${e.message}`;
    }
  }

  function showPlacement(res) {
    const body = $("placement-table").querySelector("tbody");
    body.textContent = "";
    res.placements.slice(0, 10).forEach((p, i) => {
      const tr = document.createElement("tr");
      [String(i + 1), p.buses.join(", "), fmt(p.mean_tve_pct, 4), fmt(p.max_tve_pct, 4)].forEach((x) => {
        const td = document.createElement("td");
        td.textContent = x;
        tr.appendChild(td);
      });
      const td = document.createElement("td");
      if (isAdmin) {
        const btn = document.createElement("button");
        btn.type = "button";
        btn.textContent = "Apply";
        btn.className = "apply";
        btn.addEventListener("click", async () => {
          try {
            await api("PUT", `/api/v1/feeders/${state.feeder.id}/pmus`, { buses: p.buses.map(String) });
            $("placement-msg").textContent = `µPMUs now at ${p.buses.join(", ")}; estimates recomputed`;
            await load(state.feeder.id);
          } catch (e) { $("placement-msg").textContent = e.message; }
        });
        td.appendChild(btn);
      }
      tr.appendChild(td);
      body.appendChild(tr);
    });
    $("placement-result").hidden = false;
    const box = $("placement-chart");
    if (state.pchart) { state.pchart.destroy(); state.pchart = null; }
    box.textContent = "";
    if (typeof uPlot === "undefined") return;
    const names = res.bus_names.map(String);
    const xs = names.map((_, i) => i);
    state.pchart = new uPlot({
      width: Math.max(280, box.clientWidth || 480), height: 240,
      scales: { x: { time: false } },
      series: [{ label: "bus", value: (u, v) => (v == null ? "-" : names[v]) },
        { label: `best ${res.best.buses.join(",")}`, stroke: "#16a34a", width: 2, points: { show: true } },
        { label: `worst ${res.worst.buses.join(",")}`, stroke: "#dc2626", points: { show: true } }],
      axes: [{ values: (u, vals) => vals.map((v) => names[v] || ""), label: "bus" }, { label: "TVE %" }],
    }, [xs, res.best.per_bus_tve_pct, res.worst.per_bus_tve_pct], box);
  }

  // ---- upload and removal
  async function upload(ev) {
    ev.preventDefault();
    const fd = new FormData(ev.target), msg = $("upload-msg");
    const body = { name: String(fd.get("name") || "") };
    const files = ev.target.querySelector("input[type=file]").files;
    if (files.length) {
      body.files = {};
      for (const f of files) body.files[f.name] = await f.text();
    } else if (fd.get("builtin")) {
      body.builtin = fd.get("builtin");
    }
    msg.textContent = "compiling…";
    try {
      const doc = await api("POST", "/api/v1/feeders", body);
      msg.textContent = `feeder ${doc.name} added (${doc.buses} buses)`;
      window.location.assign(`/grid?feeder=${doc.id}`);
    } catch (e) {
      msg.textContent = `not added: ${e.message}`;
    }
  }

  async function removeFeeder() {
    const f = state.feeder;
    if (!f || !window.confirm(`Remove feeder ${f.name} with its estimates? Meters and readings stay.`)) return;
    try {
      await api("DELETE", `/api/v1/feeders/${f.id}`);
      window.location.assign("/grid");
    } catch (e) { $("upload-msg").textContent = e.message; }
  }

  async function placeMeter(ev) {
    ev.preventDefault();
    const fd = new FormData(ev.target), msg = $("meter-msg");
    try {
      await api("PUT", `/api/v1/feeders/${state.feeder.id}/meters`, {
        device_id: Number(fd.get("device_id")), bus: String(fd.get("bus")),
        scale: Number(fd.get("scale") || 1),
      });
      msg.textContent = "meter placed; estimates recomputed";
      await load(state.feeder.id);
    } catch (e) { msg.textContent = e.message; }
  }

  const up = $("upload-form");
  if (up) up.addEventListener("submit", upload);
  if (!sel) return;
  const want = new URLSearchParams(window.location.search).get("feeder");
  if (want && [...sel.options].some((o) => o.value === want)) sel.value = want;
  sel.addEventListener("change", () => load(sel.value).catch(showError));
  $("hour-slider").addEventListener("input", (ev) => setHour(Number(ev.target.value)));
  $("hour-prev").addEventListener("click", () => setHour(state.idx - 1));
  $("hour-next").addEventListener("click", () => setHour(state.idx + 1));
  const pf = $("placement-form");
  if (pf && isOperator) pf.addEventListener("submit", runPlacement);
  const mf = $("meter-form");
  if (mf) mf.addEventListener("submit", placeMeter);
  const rm = $("remove-feeder");
  if (rm) rm.addEventListener("click", removeFeeder);
  function showError(e) { $("hour-label").textContent = `error: ${e.message}`; }
  load(sel.value).catch(showError);
})();
