/* gridlens: set up a meter in the browser (the /meters/new and /meters/{id}/setup pages).
 *
 * Plain JS, no build step. The photo is an <img>; each box is an absolutely positioned
 * <div> over it, in the photo's pixels times the displayed scale. The server does the work:
 *   POST /api/v1/roi/suggest   proposes boxes for a new photo
 *   POST /api/v1/roi/preview   reads the photo with the boxes (debounced after each change)
 *   POST /api/v1/roi/snapshot  fetches a photo from a camera's snapshot URL
 *   POST /api/v1/devices/{id}/roi/replay   re-reads recent photos with the boxes (edit mode)
 *   POST /api/v1/devices, PATCH /api/v1/devices/{id}   save
 */
"use strict";

(function () {
  const root = document.getElementById("setup");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const PREVIEW_DELAY_MS = 350;
  const MIN_BOX = 4; // [photo px]

  const state = {
    mode: root.dataset.mode, // "new" | "edit"
    deviceId: root.dataset.device ? Number(root.dataset.device) : null,
    photo: null, // Blob of the photo the boxes refer to
    photoChanged: false,
    w: 0,
    h: 0,
    digits: [],
    markers: [],
    dials: [], // {x, y, w, h, factor, direction}
    decimals: 0,
    used: null, // the ROI the last preview read with (refined boxes)
    wheels: [], // that preview's wheels: {value, confidence}
    dialReads: [], // that preview's dials: {factor, value, confidence}, largest first
    sel: null, // the selected box object
  };
  const maxBytes = Number(root.dataset.maxBytes) || 2 * 1024 * 1024;
  const stage = $("stage");
  const img = $("photo");

  // ------------------------------------------------------------------ messages

  function say(text, kind) {
    const el = $("status");
    el.textContent = text;
    el.className = kind === "bad" ? "error" : kind === "ok" ? "notice" : "hint";
  }

  async function detail(r) {
    let doc = null;
    try {
      doc = await r.json();
    } catch (e) {
      return `HTTP ${r.status}`;
    }
    const d = doc && doc.detail;
    if (Array.isArray(d)) return d.map((x) => `${(x.loc || []).slice(1).join(".")}: ${x.msg}`).join("; ");
    return d ? String(d) : `HTTP ${r.status}`;
  }

  // ------------------------------------------------------------------ the ROI

  const box = (b) => ({ x: Math.round(b.x), y: Math.round(b.y), w: Math.round(b.w), h: Math.round(b.h) });

  function sortDigits() {
    state.digits.sort((a, b) => a.x - b.x);
  }

  function roi() {
    sortDigits();
    const r = { digits: state.digits.map(box), decimals: state.decimals };
    if (state.dials.length) r.dials = state.dials.map((d) => ({ ...box(d), factor: d.factor, direction: d.direction }));
    if (state.markers.length) r.reference = { markers: state.markers.map(box) };
    if (!$("refine").checked) r.refined = true;
    return r;
  }

  function load(r, refined) {
    state.digits = (r.digits || []).map(box);
    state.markers = ((r.reference && r.reference.markers) || []).map(box);
    state.dials = (r.dials || []).map((d) => ({ ...box(d), factor: Number(d.factor), direction: d.direction || "cw" }));
    state.decimals = Number(r.decimals) || 0;
    $("decimals").value = String(state.decimals);
    $("refine").checked = !refined;
    state.sel = null;
  }

  // ------------------------------------------------------------------ drawing

  function scale() {
    return state.w ? img.clientWidth / state.w : 1;
  }

  function place(el, b, s) {
    el.style.left = `${b.x * s}px`;
    el.style.top = `${b.y * s}px`;
    el.style.width = `${b.w * s}px`;
    el.style.height = `${b.h * s}px`;
  }

  function conf(c) {
    return c >= 0.9 ? "good" : c >= 0.6 ? "fair" : "poor";
  }

  function render() {
    stage.querySelectorAll(".box").forEach((el) => el.remove());
    const s = scale();
    if (state.used) {
      const ud = state.used.digits || [];
      ud.forEach((b) => {
        const el = document.createElement("div");
        el.className = "box used";
        place(el, b, s);
        stage.appendChild(el);
      });
    }
    const add = (b, kind, i) => {
      const el = document.createElement("div");
      el.className = `box ${kind}` + (state.sel === b ? " selected" : "");
      el.dataset.kind = kind;
      el.dataset.index = String(i);
      el.tabIndex = 0;
      place(el, b, s);
      const handle = document.createElement("span");
      handle.className = "handle";
      el.appendChild(handle);
      const label = document.createElement("span");
      label.className = "label";
      if (kind === "digit") {
        const wheel = state.wheels[i];
        const dec = i >= state.digits.length - state.decimals;
        label.textContent = wheel ? wheel.value.toFixed(1) : String(i + 1);
        if (wheel) label.classList.add(conf(wheel.confidence));
        if (dec) el.classList.add("decimal");
      } else if (kind === "dial") {
        const read = state.dialReads.find((x) => x.factor === b.factor);
        label.textContent = `x${b.factor}` + (b.direction === "ccw" ? " ↺" : "") + (read ? ` ${read.value.toFixed(1)}` : "");
        if (read) label.classList.add(conf(read.confidence));
      } else {
        label.textContent = "M" + (i + 1);
      }
      el.appendChild(label);
      el.addEventListener("pointerdown", (ev) => startDrag(ev, b, ev.target === handle));
      el.addEventListener("keydown", (ev) => nudge(ev, b, kind));
      stage.appendChild(el);
    };
    sortDigits();
    state.digits.forEach((b, i) => add(b, "digit", i));
    state.markers.forEach((b, i) => add(b, "marker", i));
    state.dials.forEach((b, i) => add(b, "dial", i));
    $("save").disabled = !state.photo || !(state.digits.length || state.dials.length);
    showDialFields();
  }

  function showDialFields() {
    const dialSel = state.dials.includes(state.sel);
    $("dial-fields").hidden = !dialSel;
    if (dialSel) {
      $("dial-factor").value = String(state.sel.factor);
      $("dial-direction").value = state.sel.direction;
    }
  }

  // ------------------------------------------------------------------ editing

  function clamp(b) {
    b.w = Math.max(MIN_BOX, Math.min(b.w, state.w));
    b.h = Math.max(MIN_BOX, Math.min(b.h, state.h));
    b.x = Math.max(0, Math.min(b.x, state.w - b.w));
    b.y = Math.max(0, Math.min(b.y, state.h - b.h));
  }

  function changed() {
    state.wheels = [];
    state.dialReads = [];
    render();
    schedule();
  }

  function startDrag(ev, b, resize) {
    if (ev.button !== 0) return;
    ev.preventDefault();
    state.sel = b;
    showDialFields();
    const el = ev.currentTarget;
    stage.querySelectorAll(".box.selected").forEach((x) => x.classList.remove("selected"));
    el.classList.add("selected");
    el.focus({ preventScroll: true });
    const s = scale();
    const x0 = ev.clientX;
    const y0 = ev.clientY;
    const start = { ...b };
    let moved = false;
    const move = (e) => {
      const dx = (e.clientX - x0) / s;
      const dy = (e.clientY - y0) / s;
      if (Math.abs(dx) + Math.abs(dy) > 0) moved = true;
      if (resize) {
        b.w = start.w + dx;
        b.h = start.h + dy;
        b.x = start.x;
        b.y = start.y;
        b.w = Math.min(b.w, state.w - b.x);
        b.h = Math.min(b.h, state.h - b.y);
      } else {
        b.x = start.x + dx;
        b.y = start.y + dy;
      }
      clamp(b);
      place(el, b, s);
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
      window.removeEventListener("pointercancel", up);
      Object.assign(b, box(b));
      if (moved) changed();
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
    window.addEventListener("pointercancel", up);
  }

  function nudge(ev, b, kind) {
    const step = ev.shiftKey ? 10 : 1;
    const keys = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (keys[ev.key]) {
      ev.preventDefault();
      b.x += keys[ev.key][0];
      b.y += keys[ev.key][1];
      clamp(b);
      state.sel = b;
      changed();
      refocus(b);
    } else if (ev.key === "Delete" || ev.key === "Backspace") {
      ev.preventDefault();
      const list = kind === "digit" ? state.digits : kind === "dial" ? state.dials : state.markers;
      list.splice(list.indexOf(b), 1);
      state.sel = null;
      fixDecimals();
      changed();
    }
  }

  function refocus(b) {
    const list = state.digits.includes(b) ? "digit" : state.dials.includes(b) ? "dial" : "marker";
    const i = (list === "digit" ? state.digits : list === "dial" ? state.dials : state.markers).indexOf(b);
    const el = stage.querySelector(`.box.${list}[data-index="${i}"]`);
    if (el) el.focus({ preventScroll: true });
  }

  function fixDecimals() {
    state.decimals = Math.min(state.decimals, state.digits.length);
    $("decimals").value = String(state.decimals);
  }

  $("add-wheel").addEventListener("click", () => {
    sortDigits();
    const n = state.digits.length;
    let b;
    if (n) {
      const last = state.digits[n - 1];
      const pitch = n > 1 ? last.x - state.digits[n - 2].x : Math.round(last.w * 1.25);
      b = { x: last.x + pitch, y: last.y, w: last.w, h: last.h };
      if (b.x + b.w > state.w) b.x = Math.max(0, state.digits[0].x - pitch);
    } else {
      const w = Math.max(MIN_BOX, Math.round(state.w / 16));
      b = { x: Math.round(state.w / 2 - w / 2), y: Math.round(state.h / 2 - w * 0.7), w, h: Math.round(w * 1.4) };
    }
    clamp(b);
    state.digits.push(b);
    state.sel = b;
    changed();
  });
  $("remove-wheel").addEventListener("click", () => {
    sortDigits();
    const i = state.digits.indexOf(state.sel);
    state.digits.splice(i >= 0 ? i : state.digits.length - 1, 1);
    state.sel = null;
    fixDecimals();
    changed();
  });
  $("add-marker").addEventListener("click", () => {
    const s = Math.max(MIN_BOX, Math.round(Math.min(state.w, state.h) / 12));
    const corners = [
      [8, 8],
      [state.w - s - 8, 8],
      [state.w - s - 8, state.h - s - 8],
      [8, state.h - s - 8],
    ];
    const [x, y] = corners[state.markers.length % 4];
    const b = { x, y, w: s, h: s };
    clamp(b);
    state.markers.push(b);
    state.sel = b;
    changed();
  });
  $("remove-marker").addEventListener("click", () => {
    const i = state.markers.indexOf(state.sel);
    state.markers.splice(i >= 0 ? i : state.markers.length - 1, 1);
    state.sel = null;
    changed();
  });
  $("add-dial").addEventListener("click", () => {
    const side = Math.max(MIN_BOX, Math.round(Math.min(state.w, state.h) / 5));
    const factors = state.dials.map((d) => d.factor);
    let factor = state.digits.length ? 10 ** -(state.decimals + 1) : 1;
    if (factors.length) factor = Math.min(...factors) / 10;
    factor = Number(factor.toPrecision(6));
    const b = { x: Math.round(state.w / 2 - side / 2), y: Math.round(state.h / 2 - side / 2), w: side, h: side, factor, direction: "cw" };
    clamp(b);
    state.dials.push(b);
    state.sel = b;
    changed();
  });
  $("remove-dial").addEventListener("click", () => {
    const i = state.dials.indexOf(state.sel);
    state.dials.splice(i >= 0 ? i : state.dials.length - 1, 1);
    state.sel = null;
    changed();
  });
  $("dial-factor").addEventListener("change", () => {
    if (state.dials.includes(state.sel)) state.sel.factor = Number($("dial-factor").value);
    changed();
  });
  $("dial-direction").addEventListener("change", () => {
    if (state.dials.includes(state.sel)) state.sel.direction = $("dial-direction").value;
    changed();
  });
  $("decimals").addEventListener("input", () => {
    const v = parseInt($("decimals").value, 10);
    state.decimals = Number.isFinite(v) ? Math.max(0, Math.min(v, state.digits.length)) : 0;
    changed();
  });
  $("refine").addEventListener("change", changed);
  $("suggest-again").addEventListener("click", () => suggest());
  window.addEventListener("resize", render);
  // for tests and scripted set-ups: put the dials exactly (what dragging each one would do)
  window.__gridlensSetup = {
    setWheels(digits, decimals) {
      state.digits = digits.map(box);
      state.decimals = decimals;
      $("decimals").value = String(decimals);
      changed();
    },
    setDials(dials) {
      state.dials = dials.map((d) => ({ ...box(d), factor: Number(d.factor), direction: d.direction || "cw" }));
      state.sel = null;
      changed();
    },
  };

  // ------------------------------------------------------------------ server calls

  let timer = null;
  let seq = 0;
  let inflight = null;

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(preview, PREVIEW_DELAY_MS);
  }

  function showReading(doc) {
    const r = doc.reading;
    const unit = $("f-unit").value || "";
    $("reading-value").textContent = r.value === null ? "—" : `${r.value.toFixed(state.decimals)} ${unit}`;
    const st = $("reading-status");
    st.textContent = "";
    const badge = document.createElement("span");
    badge.className = `badge ${r.status === "ok" ? "ok" : "bad"}`;
    badge.textContent = r.status;
    st.appendChild(badge);
    st.append(` register ${r.raw || "-"}` + (r.reason ? ` · ${r.reason}` : ""));
    const moved = doc.refinement ? Math.max(0, ...doc.refinement.moved_px) : null;
    if (moved !== null) st.append(` · refined (boxes moved up to ${moved.toFixed(1)} px)`);
    st.className = "";
    const body = $("wheels").querySelector("tbody");
    body.textContent = "";
    r.digits.forEach((d, i) => {
      const tr = document.createElement("tr");
      const c = document.createElement("td");
      c.textContent = String(i + 1) + (i >= r.digits.length - state.decimals ? " (decimal)" : "");
      const v = document.createElement("td");
      v.className = "num";
      v.textContent = d.value.toFixed(1);
      const p = document.createElement("td");
      p.className = `num ${conf(d.confidence)}`;
      p.textContent = `${(100 * d.confidence).toFixed(0)} %`;
      tr.append(c, v, p);
      body.appendChild(tr);
    });
    (r.dials || []).forEach((d) => {
      const tr = document.createElement("tr");
      const c = document.createElement("td");
      c.textContent = `dial x${d.factor}`;
      const v = document.createElement("td");
      v.className = "num";
      v.textContent = d.value.toFixed(1);
      const p = document.createElement("td");
      p.className = `num ${conf(d.confidence)}`;
      p.textContent = `${(100 * d.confidence).toFixed(0)} %`;
      tr.append(c, v, p);
      body.appendChild(tr);
    });
    root.dataset.previewValue = r.value === null ? "" : String(r.value);
  }

  async function preview() {
    if (!state.photo || !(state.digits.length || state.dials.length)) return;
    const mine = ++seq;
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const fd = new FormData();
    fd.append("image", state.photo, "photo.jpg");
    fd.append("roi", JSON.stringify(roi()));
    $("reading-status").textContent = "reading…";
    try {
      const r = await fetch("/api/v1/roi/preview", { method: "POST", body: fd, signal: inflight.signal });
      if (mine !== seq) return;
      if (!r.ok) {
        const msg = await detail(r);
        state.used = null;
        state.wheels = [];
        $("reading-value").textContent = "—";
        $("reading-status").textContent = msg;
        $("reading-status").className = "error";
        $("wheels").querySelector("tbody").textContent = "";
        render();
        return;
      }
      const doc = await r.json();
      if (mine !== seq) return;
      state.used = doc.roi.refined && $("refine").checked ? doc.roi : null;
      state.wheels = doc.reading.digits;
      state.dialReads = doc.reading.dials || [];
      showReading(doc);
      render();
      if (state.mode === "edit" && state.deviceId) replay(mine);
    } catch (e) {
      if (e.name !== "AbortError") $("reading-status").textContent = String(e);
    }
  }

  async function replay(mine) {
    const section = $("replay-section");
    if (!section) return;
    const r = await fetch(`/api/v1/devices/${state.deviceId}/roi/replay`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ roi: roi(), photos: 5 }),
    });
    if (mine !== seq) return;
    const body = $("replay").querySelector("tbody");
    body.textContent = "";
    section.hidden = false;
    const row = (...cells) => {
      const tr = document.createElement("tr");
      cells.forEach(([text, cls]) => {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      });
      body.appendChild(tr);
    };
    if (!r.ok) {
      row([await detail(r), "error"]);
      return;
    }
    const doc = await r.json();
    const fmt = (x) => (x.value === null ? `rejected${x.reason ? ": " + x.reason : ""}` : x.value.toFixed(state.decimals));
    doc.rows.forEach((x) => {
      const same = x.old.value === x.new.value && x.old.status === x.new.status;
      const when = new Date(x.captured_at * 1000).toISOString().slice(0, 19).replace("T", " ");
      row([when, "nowrap"], [fmt(x.old), "num"], [fmt(x.new), "num"], [same ? "same" : "changed", same ? "muted" : "bad"]);
    });
    if (!doc.rows.length) row(["no stored photos yet" + (doc.missing ? ` (${doc.missing} pruned)` : ""), "muted"]);
  }

  async function suggest() {
    if (!state.photo) return;
    say("Looking for the counter…");
    const r = await fetch("/api/v1/roi/suggest", {
      method: "POST",
      headers: { "Content-Type": "image/jpeg" },
      body: state.photo,
    });
    if (!r.ok) {
      say(`gridlens proposes no boxes: ${await detail(r)}. Draw them yourself with “+ wheel”.`, "bad");
      return;
    }
    const doc = await r.json();
    load(doc.roi, false);
    const pct = Math.round(100 * doc.confidence);
    say(
      `Proposed ${doc.digits.length} wheels (${doc.decimals} after the decimal point) and ` +
        `${doc.markers.length} markers` + ((doc.dials || []).length ? `, ${doc.dials.length} dials (check each dial's factor and direction)` : "") +
        `, confidence ${pct} %. Check each box on the photo.`,
      "ok"
    );
    changed();
  }

  function dataURL(blob) {
    return new Promise((resolve, reject) => {
      const fr = new FileReader();
      fr.onload = () => resolve(String(fr.result));
      fr.onerror = () => reject(fr.error);
      fr.readAsDataURL(blob);
    });
  }

  function setPhoto(blob, fresh) {
    if (blob.size > maxBytes) {
      say(`The photo is ${blob.size.toLocaleString()} bytes; the limit is ${maxBytes.toLocaleString()}.`, "bad");
      return Promise.resolve(false);
    }
    return dataURL(blob).then((url) => new Promise((resolve) => {
      img.onload = () => {
        state.photo = blob;
        state.w = img.naturalWidth;
        state.h = img.naturalHeight;
        state.photoChanged = fresh;
        $("editor").hidden = false;
        render();
        resolve(true);
      };
      img.onerror = () => {
        say("The browser cannot show this file as a photo; choose a JPEG.", "bad");
        resolve(false);
      };
      img.src = url; // a data: URL (the page's CSP allows no blob: images)
    }));
  }

  async function newPhoto(blob) {
    if (!(await setPhoto(blob, true))) return;
    if (state.mode === "new" || !(state.digits.length || state.dials.length)) await suggest();
    else changed();
  }

  $("photo-file").addEventListener("change", () => {
    const f = $("photo-file").files[0];
    if (f) newPhoto(f);
  });
  $("snapshot-fetch").addEventListener("click", async () => {
    const url = $("snapshot-url").value.trim();
    if (!url) return say("Enter the camera's snapshot URL first.", "bad");
    say("Fetching the photo…");
    const r = await fetch("/api/v1/roi/snapshot", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ url }),
    });
    if (!r.ok) return say(await detail(r), "bad");
    newPhoto(await r.blob());
  });

  // ------------------------------------------------------------------ saving

  async function b64(blob) {
    return (await dataURL(blob)).split(",", 2)[1];
  }

  function fields() {
    const out = {};
    const name = $("f-name").value.trim();
    const unit = $("f-unit").value.trim();
    const rate = $("f-rate").value.trim();
    if (name) out.name = name;
    if (unit) out.unit = unit;
    if (rate) out.max_rate = Number(rate);
    return out;
  }

  async function afterSave(dev, text) {
    load(dev.roi, true); // the boxes as stored (refined), used as they are from now on
    state.photoChanged = false;
    say(text, "ok");
    changed();
  }

  // the meter exists from now on: show its token once, with the camera's config
  async function registered(made, interval) {
    const got = await fetch(`/api/v1/devices/${made.device_id}`);
    if (!got.ok) throw new Error(await detail(got));
    const dev = await got.json();
    state.mode = "edit";
    state.deviceId = made.device_id;
    root.dataset.mode = "edit";
    root.dataset.device = String(made.device_id);
    const cfg = JSON.parse(root.dataset.config);
    Object.assign(cfg, { device_id: made.device_id, token: made.token, name: dev.name, interval_s: interval });
    $("token").textContent = made.token;
    $("client-config").textContent = JSON.stringify(cfg, null, 2);
    $("meter-link").href = `/meters/${made.device_id}`;
    $("saved").hidden = false;
    $("save").textContent = "Save boxes";
    $("setup-title").textContent = `Edit boxes of ${dev.name}`;
    history.replaceState(null, "", `/meters/${made.device_id}/setup`);
    return dev;
  }

  // a meter registered without boxes: its camera's first upload is the photo to draw on
  async function awaitPhoto(id, until) {
    const el = $("first-upload");
    try {
      const r = await fetch(`/meters/${id}/latest.jpg`);
      if (r.ok) {
        const text = "First photo received: gridlens proposes the boxes on it. Correct them and save.";
        el.className = "notice";
        el.textContent = text;
        await newPhoto(await r.blob());
        say(text, "ok");
        return;
      }
    } catch (e) {
      /* try again */
    }
    if (Date.now() < until) setTimeout(() => awaitPhoto(id, until), 3000);
    else el.textContent = "No photo from the camera yet: reload this page when it has sent one.";
  }

  const waitCamera = $("wait-camera");
  if (waitCamera) {
    waitCamera.addEventListener("click", async () => {
      const f = fields();
      if (!f.name) {
        $("f-name").focus();
        return say("Give the meter a name first.", "bad");
      }
      const interval = Number($("f-interval").value) || 300;
      const r = await fetch("/api/v1/devices", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...f, interval_s: interval }),
      });
      if (!r.ok) return say(await detail(r), "bad");
      await registered(await r.json(), interval);
      waitCamera.hidden = true;
      say("Registered. Put the token below into the camera; its first photo appears here.", "ok");
      awaitPhoto(state.deviceId, Date.now() + 30 * 60 * 1000);
    });
  }

  async function saveNew() {
    const f = fields();
    if (!f.name) {
      $("f-name").focus();
      throw new Error("give the meter a name");
    }
    const interval = Number($("f-interval").value) || 300;
    const body = { ...f, interval_s: interval, roi: roi(), reference_jpeg_b64: await b64(state.photo) };
    const keep = $("pull-keep");
    const url = $("snapshot-url").value.trim();
    if (keep && keep.checked) {
      if (!url) throw new Error("enter the camera's snapshot URL to keep fetching from it");
      Object.assign(body, { pull_url: url, pull_interval_s: interval });
    }
    const r = await fetch("/api/v1/devices", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(await detail(r));
    const made = await r.json();
    const dev = await registered(made, interval);
    waitFirst(made.device_id, Date.now() + 30 * 60 * 1000);
    await afterSave(dev, `Meter ${dev.name} saved (id ${made.device_id}). The boxes below are as stored, refined against the photo; they stay editable.`);
  }

  async function saveEdit() {
    const body = { ...fields(), roi: roi() };
    if (state.photoChanged) body.reference_jpeg_b64 = await b64(state.photo);
    const r = await fetch(`/api/v1/devices/${state.deviceId}`, {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(await detail(r));
    const dev = await r.json();
    await afterSave(dev, "Saved. The boxes below are as stored; the camera's next photo is read with them.");
  }

  $("save").addEventListener("click", async () => {
    const btn = $("save");
    btn.disabled = true;
    $("save-status").textContent = "saving…";
    $("save-status").className = "muted";
    try {
      await (state.mode === "new" ? saveNew() : saveEdit());
      $("save-status").textContent = "saved";
      $("save-status").className = "badge ok";
    } catch (e) {
      $("save-status").textContent = e.message || String(e);
      $("save-status").className = "error";
    } finally {
      btn.disabled = false;
    }
  });

  async function waitFirst(id, until) {
    const el = $("first-upload");
    try {
      const r = await fetch(`/api/v1/devices/${id}/readings?limit=1`);
      const rows = r.ok ? await r.json() : [];
      if (rows.length) {
        const x = rows[0];
        el.className = x.status === "ok" ? "notice" : "error";
        el.textContent =
          `First photo received: ` + (x.status === "ok" ? `${x.value} ${x.unit || ""}` : `rejected (${x.reason})`);
        return;
      }
    } catch (e) {
      /* try again */
    }
    if (Date.now() < until) setTimeout(() => waitFirst(id, until), 5000);
    else el.textContent = "No photo from the camera yet; its readings will appear on the meter's page.";
  }

  // ------------------------------------------------------------------ start

  if (state.mode === "edit") {
    const stored = JSON.parse(root.dataset.roi || "null");
    if (stored) load(stored, Boolean(stored.refined));
    const ref = root.dataset.reference;
    if (ref) {
      fetch(ref)
        .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`HTTP ${r.status}`))))
        .then((blob) => setPhoto(blob, false))
        .then((ok) => {
          if (ok) {
            say("The stored boxes on the reference photo. Move them; the reading and the recent photos update.");
            changed();
          }
        })
        .catch((e) => say(`The reference photo did not load: ${e.message}`, "bad"));
    } else if (!(stored && stored.digits && stored.digits.length)) {
      say("This meter has no boxes yet: its camera's first photo appears here, or choose a photo.");
      awaitPhoto(state.deviceId, Date.now() + 30 * 60 * 1000);
    } else {
      say("This meter has no reference photo: choose one (a photo from its camera) to edit the boxes on.", "bad");
    }
  }
})();
