/* gridlens dashboard: draws the meter charts with uPlot from the JSON APIs.
 *
 * Every element with class "chart" names its data in data-src and its kind in data-kind
 * ("bars": {"points": [{"t", "energy"}], "bucket_s"} from /consumption; "line": {"t", "v"}
 * from /meters/ID/counter.json; "anomaly": {"points": [{"t", "energy", "score", "anomaly"}],
 * "events": [...]} from /anomalies, which also fills the #anomalies table). After drawing, data-points holds the number of points
 * (0 with an empty-state message). Times are shown in UTC.
 */
(function () {
  "use strict";

  var HEIGHT = 220;
  var charts = [];

  function utc(ts) {
    return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
  }

  function fmt(v, digits, unit) {
    if (v === null || v === undefined || !isFinite(v)) return "–";
    return v.toFixed(digits) + " " + unit;
  }

  function message(el, text, cls) {
    el.textContent = "";
    var p = document.createElement("p");
    p.className = cls || "chart-empty";
    p.textContent = text;
    el.appendChild(p);
  }

  function finish(el, n) {
    el.setAttribute("data-points", String(n));
    el.classList.add("loaded");
  }

  function width(el) {
    return Math.max(260, Math.floor(el.clientWidth || el.parentNode.clientWidth || 600));
  }

  // x tick labels in UTC, 24 h: "06:00" (with "11-21" under the first of each day) or "11-21"
  function timeTicks(u, splits, axisIdx, space, incr) {
    var prevDay = null;
    return splits.map(function (ts) {
      if (ts === null || ts === undefined) return null;
      var iso = new Date(ts * 1e3).toISOString();
      var day = iso.slice(5, 10), hm = iso.slice(11, 16);
      if (incr >= 86400) return day;
      var label = day !== prevDay ? hm + "\n" + day : hm;
      prevDay = day;
      return label;
    });
  }

  function axes(unit) {
    var grid = { stroke: "#e5e7eb", width: 1 };
    var ticks = { stroke: "#d1d5db", width: 1 };
    return [
      { stroke: "#4b5563", grid: grid, ticks: ticks, values: timeTicks },
      { stroke: "#4b5563", grid: grid, ticks: ticks, label: unit, size: 64 }
    ];
  }

  // one uPlot over UTC time: the options every chart shares, then draw and record the count
  function draw(el, unit, series, data, n, scales) {
    var opts = {
      width: width(el),
      height: HEIGHT,
      tzDate: utc,
      scales: scales || { x: { time: true } },
      axes: axes(unit),
      legend: { live: true },
      series: series
    };
    el.textContent = "";
    charts.push({ el: el, plot: new uPlot(opts, data, el) });
    finish(el, n);
  }

  function bars(el, doc) {
    var unit = el.dataset.unit || doc.unit || "";
    var xs = [], ys = [], n = 0;
    (doc.points || []).forEach(function (p) {
      xs.push(p.t);
      ys.push(p.energy);
      if (p.energy !== null && p.energy !== undefined) n += 1;
    });
    if (n === 0) {
      message(el, el.dataset.empty || "no readings yet");
      return finish(el, 0);
    }
    var bucket = doc.bucket_s || 3600;
    var daily = bucket >= 86400;
    draw(el, unit, [
      { label: daily ? "day (UTC)" : "hour from (UTC)",
        value: daily ? "{YYYY}-{MM}-{DD}" : "{YYYY}-{MM}-{DD} {HH}:{mm}" },
      {
        label: "energy",
        stroke: "#1d4ed8",
        fill: "rgba(37, 99, 235, 0.45)",
        width: 1,
        paths: uPlot.paths.bars({ size: [0.85, 60], align: 1 }),
        points: { show: false },
        value: function (u, v) { return fmt(v, 3, unit); }
      }
    ], [xs, ys], n, {
      x: { time: true, range: function (u, lo, hi) { return [lo, hi + bucket]; } },
      y: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.1 : 1]; } }
    });
  }

  function line(el, doc) {
    var unit = el.dataset.unit || doc.unit || "";
    var digits = parseInt(el.dataset.decimals || "3", 10);
    var xs = doc.t || [], ys = doc.v || [];
    if (xs.length === 0) {
      message(el, el.dataset.empty || "no readings yet");
      return finish(el, 0);
    }
    draw(el, unit, [
      { label: "time (UTC)", value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" },
      {
        label: "counter",
        stroke: "#047857",
        width: 2,
        points: { show: xs.length < 200, size: 5, fill: "#047857" },
        value: function (u, v) { return fmt(v, digits, unit); }
      }
    ], [xs, ys], xs.length);
  }

  function utcText(ts) {
    return new Date(ts * 1e3).toISOString().slice(0, 16).replace("T", " ");
  }

  function anomalyTable(doc) {
    var box = document.getElementById("anomalies");
    if (!box) return;
    var evs = doc.events || [];
    box.textContent = "";
    box.setAttribute("data-events", String(evs.length));
    if (doc.note || evs.length === 0) {
      var p = document.createElement("p");
      p.className = "muted";
      p.textContent = doc.note || "No anomalous hours in the last 31 days.";
      box.appendChild(p);
      return;
    }
    var table = document.createElement("table");
    var head = table.createTHead().insertRow();
    ["From (UTC)", "To (UTC)", "Score"].forEach(function (h) {
      var th = document.createElement("th");
      th.textContent = h;
      head.appendChild(th);
    });
    var body = table.createTBody();
    evs.slice(0, 20).forEach(function (e) {
      var row = body.insertRow();
      [utcText(e.start), utcText(e.end), e.score.toFixed(2)].forEach(function (c) {
        row.insertCell().textContent = c;
      });
    });
    box.appendChild(table);
  }

  function anomaly(el, doc) {
    anomalyTable(doc);
    var unit = el.dataset.unit || doc.unit || "";
    var pts = doc.points || [];
    if (pts.length === 0) {
      message(el, doc.note || el.dataset.empty || "no data");
      return finish(el, 0);
    }
    var xs = pts.map(function (p) { return p.t; });
    var ys = pts.map(function (p) { return p.energy; });
    var an = pts.map(function (p) { return p.anomaly ? p.energy : null; });
    draw(el, unit, [
      { label: "hour (UTC)", value: "{YYYY}-{MM}-{DD} {HH}:{mm}" },
      { label: "consumption", stroke: "#1d4ed8", width: 1,
        value: function (u, v) { return fmt(v, 3, unit); } },
      { label: "anomalous", stroke: "#dc2626", width: 0, paths: function () { return null; },
        points: { show: true, size: 6, fill: "#dc2626" },
        value: function (u, v) { return fmt(v, 3, unit); } }
    ], [xs, ys, an], xs.length);
  }

  function load(el) {
    message(el, "loading…", "chart-loading");
    fetch(el.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      })
      .then(function (doc) {
        if (el.dataset.kind === "bars") bars(el, doc);
        else if (el.dataset.kind === "anomaly") anomaly(el, doc);
        else line(el, doc);
      })
      .catch(function (err) {
        message(el, "could not load the data (" + err.message + ")", "chart-error");
        el.setAttribute("data-error", err.message);
        finish(el, 0);
      });
  }

  function resize() {
    charts.forEach(function (c) {
      c.plot.setSize({ width: width(c.el), height: HEIGHT });
    });
  }

  function confirmButtons() {
    document.querySelectorAll("button[data-confirm]").forEach(function (b) {
      b.addEventListener("click", function (ev) {
        if (!window.confirm(b.dataset.confirm)) ev.preventDefault();
      });
    });
  }

  function start() {
    if (typeof uPlot === "undefined") {
      document.querySelectorAll(".chart").forEach(function (el) {
        message(el, "the chart library did not load", "chart-error");
        finish(el, 0);
      });
    } else {
      document.querySelectorAll(".chart[data-src]").forEach(load);
    }
    confirmButtons();
    var timer = null;
    window.addEventListener("resize", function () {
      clearTimeout(timer);
      timer = setTimeout(resize, 150);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
