// Central station: subscribes to every bed under the prefix over MQTT-over-WebSocket and
// shows one tile per bed, and every bed's alarms ordered by priority (IEC 60601-1-8).
// Topics and payloads: docs/mqtt.md. No build step: plain browser JavaScript, with the
// vendored MQTT.js bundle (vendor/mqtt.min.js, global `mqtt`).
"use strict";

(function () {
  const TREND_MS = 15 * 60 * 1000; // the tile's trend covers the last 15 minutes
  const STALE_MS = 5000; // a current value older than this (by arrival) is shown as stale
  const ACK_WAIT_MS = 8000; // an acknowledge not confirmed by the bed within this is re-offered
  const GAP_MS = 5000; // a hole this long breaks the trend line instead of bridging it
  const RANK = { high: 0, medium: 1, low: 2 };
  const TECHNICAL = new Set(["signal_lost", "sensor_off", "poor_signal", "inference_error"]);
  const LABEL = {
    hr_high: "HR HIGH", hr_low: "HR LOW", rr_high: "RR HIGH", rr_low: "RR LOW",
    apnea: "APNEA", signal_lost: "SIGNAL LOST", sensor_off: "SENSOR OFF",
    poor_signal: "POOR SIGNAL", inference_error: "INFERENCE ERROR",
    bed_offline: "NO CONNECTION TO BED",
    asystole: "ASYSTOLE", extreme_bradycardia: "EXTREME BRADY",
    extreme_tachycardia: "EXTREME TACHY", ventricular_tachycardia: "V-TACH",
    ventricular_fibrillation: "V-FIB",
  };

  const beds = new Map(); // bed id -> state (see newBed)
  const pendingAcks = new Map(); // alarm id -> time the acknowledge was sent
  let client = null;
  let prefix = "bedside";

  // -- configuration: /config.json from `bedside station`, overridden by ?broker=&prefix= ----
  async function loadConfig() {
    let cfg = {};
    try {
      const r = await fetch("config.json", { cache: "no-store" });
      if (r.ok) cfg = await r.json();
    } catch (e) { /* opened without the server: defaults */ }
    const q = new URLSearchParams(location.search);
    const host = location.hostname || "127.0.0.1";
    return {
      broker: q.get("broker") || cfg.broker_ws || `ws://${host}:9001`,
      prefix: (q.get("prefix") || cfg.prefix || "bedside").replace(/^\/+|\/+$/g, ""),
      username: q.get("user") || cfg.username || "",
    };
  }

  // -- state -------------------------------------------------------------------------------
  function newBed(id) {
    const tpl = document.getElementById("tile-template");
    const el = tpl.content.firstElementChild.cloneNode(true);
    el.dataset.bed = id;
    el.querySelector(".bed-id").textContent = id;
    const bed = {
      id, el,
      online: null, // null: no status yet
      reason: "",
      current: null, // the last live (non-historical) vitals, with arrivedMs
      trend: [], // {ms, hr, rr} sorted by ms
      seqs: new Set(), // per-bed seq numbers already in the trend (store-and-forward repeats)
      alarms: new Map(), // alarm id -> last known alarm (without 'cleared' ones)
      lastMs: 0, // arrival time of the last message of any kind
      dirty: true,
      drawnMs: 0,
    };
    beds.set(id, bed);
    const main = document.getElementById("beds");
    const after = [...main.querySelectorAll(".tile")].find(
      (t) => t.dataset.bed.localeCompare(id, undefined, { numeric: true }) > 0);
    main.insertBefore(el, after || null);
    document.getElementById("no-beds").hidden = true;
    return bed;
  }

  function bedFor(id) { return beds.get(id) || newBed(id); }

  function parseTs(ts) {
    const ms = Date.parse(ts);
    return Number.isFinite(ms) ? ms : Date.now();
  }

  function onVitals(bed, v) {
    const ms = parseTs(v.ts);
    const seq = Number.isInteger(v.seq) ? v.seq : null;
    if (seq !== null) {
      if (bed.seqs.has(seq)) return; // delivered twice (store-and-forward after a reconnect)
      bed.seqs.add(seq);
    }
    const point = { ms, hr: num(v.hr_bpm), rr: num(v.rr_bpm), seq };
    // keep the trend sorted: historical seconds arrive late, after newer live ones
    let i = bed.trend.length;
    while (i > 0 && bed.trend[i - 1].ms > ms) i--;
    bed.trend.splice(i, 0, point);
    if (v.historical === true) {
      bed.dirty = true; // in the trend only: never shown as the current value
      return;
    }
    bed.current = { ...v, arrivedMs: Date.now() };
    bed.dirty = true;
  }

  function onAlarm(bed, a) {
    if (!a.id) return;
    if (a.state === "cleared") {
      bed.alarms.delete(a.id);
      pendingAcks.delete(a.id);
    } else {
      const before = bed.alarms.get(a.id);
      if (before && before.state !== a.state) pendingAcks.delete(a.id);
      bed.alarms.set(a.id, { ...(before || {}), ...a });
    }
    renderAlarms();
    bed.dirty = true;
  }

  function onStatus(bed, s) {
    bed.online = s.state === "online";
    bed.reason = s.reason || s.mode || "";
    // a bed running without what it was configured for (its accelerator's delegate)
    if ("degraded" in s || bed.online) bed.degraded = s.degraded || null;
    if (bed.online && Array.isArray(s.alarms)) {
      // the status lists the bed's current alarms: the truth after a (re)connect
      const next = new Map();
      for (const a of s.alarms) {
        if (!a.id || a.state === "cleared") continue;
        const before = bed.alarms.get(a.id) || {};
        if (before.state && before.state !== a.state) pendingAcks.delete(a.id);
        next.set(a.id, { ...before, ...a, bed: bed.id });
      }
      bed.alarms = next;
    }
    // offline: the bed can no longer tell its alarms; they stay, greyed, as last known
    bed.status = s;
    renderAlarms();
    bed.dirty = true;
  }

  function num(x) { return typeof x === "number" && Number.isFinite(x) ? x : null; }

  // -- signing in ----------------------------------------------------------------------------
  // A ward broker that refuses anonymous clients (docs/security.md) answers the first
  // connection "not authorized": the page then asks for a user and password and connects
  // again with them. They are kept in this page's memory only, never stored or sent elsewhere.
  function askToSignIn(cfg, why) {
    const form = document.getElementById("signin");
    const user = document.getElementById("signin-user");
    document.getElementById("signin-why").textContent = why;
    if (!user.value) user.value = cfg.username;
    form.hidden = false;
    (user.value ? document.getElementById("signin-password") : user).focus();
    form.onsubmit = (ev) => {
      ev.preventDefault();
      const password = document.getElementById("signin-password");
      const creds = { username: user.value, password: password.value };
      password.value = "";
      form.hidden = true;
      connect(cfg, creds);
    };
  }

  // -- MQTT ----------------------------------------------------------------------------------
  function connect(cfg, creds) {
    prefix = cfg.prefix;
    document.getElementById("broker").textContent = cfg.broker;
    document.getElementById("prefix").textContent = prefix;
    const conn = document.getElementById("conn");
    const setConn = (state, text) => { conn.dataset.state = state; conn.textContent = text; };
    if (typeof mqtt === "undefined") {
      setConn("offline", "MQTT client missing (vendor/mqtt.min.js)");
      return;
    }
    if (client) client.end(true);
    client = mqtt.connect(cfg.broker, {
      protocolVersion: 4, // MQTT 3.1.1, as the beds speak
      clientId: "bedside-station-" + Math.random().toString(16).slice(2, 10),
      clean: true,
      keepalive: 20,
      reconnectPeriod: 2000,
      connectTimeout: 10000,
      ...(creds || {}),
    });
    client.on("connect", () => {
      setConn("connected", "connected to broker");
      const topics = ["status", "vitals", "alarms"].map((leaf) => `${prefix}/+/${leaf}`);
      // QoS 1 so that alarms and statuses are not lost between broker and station
      client.subscribe(topics, { qos: 1 }, (err) => {
        if (err) setConn("offline", "subscription refused: " + err.message);
      });
    });
    client.on("reconnect", () => setConn("reconnecting", "reconnecting to broker..."));
    client.on("offline", () => setConn("offline", "NO CONNECTION TO BROKER"));
    client.on("error", (err) => {
      // CONNACK 4 (bad user name or password) or 5 (not authorized): MQTT.js does not retry
      if (err.code === 4 || err.code === 5) {
        setConn("offline", "SIGNED OUT: the broker refused " + (creds ? creds.username : "anonymous"));
        askToSignIn(cfg, creds ? "wrong user or password" : "this broker needs a user:");
        return;
      }
      setConn("offline", "broker error: " + err.message);
    });
    client.on("message", (topic, payload) => {
      if (!topic.startsWith(prefix + "/")) return;
      const parts = topic.slice(prefix.length + 1).split("/");
      if (parts.length !== 2) return;
      const [bedId, leaf] = parts;
      let body;
      try {
        body = JSON.parse(new TextDecoder().decode(payload));
      } catch (e) {
        return; // not JSON: not ours
      }
      if (!body || typeof body !== "object") return;
      const bed = bedFor(bedId);
      bed.lastMs = Date.now();
      if (leaf === "vitals") onVitals(bed, body);
      else if (leaf === "alarms") onAlarm(bed, body);
      else if (leaf === "status") onStatus(bed, body);
      scheduleRender();
    });
  }

  function acknowledge(bedId, alarmId, button) {
    if (!client || !client.connected) return;
    pendingAcks.set(alarmId, Date.now());
    button.disabled = true;
    button.textContent = "sending...";
    client.publish(`${prefix}/${bedId}/cmd/ack`, JSON.stringify({ id: alarmId }), { qos: 1 });
  }

  // -- rendering -----------------------------------------------------------------------------
  function describe(a) {
    const what = (LABEL[a.condition] || String(a.condition).toUpperCase())
      + (a.role && isTechnical(a) ? ` (${a.role})` : "") + (a.station ? ` (${a.detail})` : "");
    if (isTechnical(a) || a.value == null) return what;
    const sign = /(_low|bradycardia)$/.test(a.condition) ? "<" : ">";
    const unit = a.unit || (a.condition.startsWith("hr") ? "bpm" : "/min");
    return a.limit == null ? `${what} ${a.value} ${unit}` : `${what} ${a.value} ${sign} ${a.limit} ${unit}`;
  }

  function isTechnical(a) { return a.technical === true || TECHNICAL.has(a.condition); }

  function byPriority(a, b) {
    return (RANK[a.priority] ?? 3) - (RANK[b.priority] ?? 3)
      || (a.state === "acknowledged") - (b.state === "acknowledged")
      || (b.onset_t_s ?? 0) - (a.onset_t_s ?? 0);
  }

  function renderAlarms() {
    const lists = { physiological: [], technical: [] };
    for (const bed of beds.values()) {
      // the station's own technical alarm: a bed whose connection died (its last will) can no
      // longer raise alarms; a bed stopped on purpose ("stopped") is only greyed out
      if (bed.online === false && bed.reason !== "stopped") {
        lists.technical.push({
          id: `station:${bed.id}:offline`, bed: bed.id, condition: "bed_offline",
          priority: "medium", state: "active", technical: true, station: true, stale: false,
          detail: bed.reason,
        });
      }
      for (const a of bed.alarms.values()) {
        lists[isTechnical(a) ? "technical" : "physiological"].push({ ...a, bed: bed.id, stale: bed.online === false });
      }
    }
    for (const [kind, items] of Object.entries(lists)) {
      items.sort(byPriority);
      const ol = document.getElementById("alarms-" + kind);
      const keep = new Set(items.map((a) => a.id));
      for (const li of [...ol.children]) if (!keep.has(li.dataset.alarmId)) li.remove();
      items.forEach((a, i) => {
        let li = ol.querySelector(`li[data-alarm-id="${CSS.escape(a.id)}"]`);
        if (!li) {
          li = document.createElement("li");
          li.className = "alarm";
          li.dataset.alarmId = a.id;
          li.innerHTML = '<span class="bed"></span><span class="what"></span>' +
            '<span class="state"></span><button type="button">Acknowledge</button>';
          li.querySelector("button").addEventListener("click", (ev) =>
            acknowledge(li.dataset.bed, li.dataset.alarmId, ev.currentTarget));
        }
        li.dataset.bed = a.bed;
        li.dataset.priority = a.priority;
        li.dataset.state = a.state;
        li.dataset.stale = String(a.stale);
        li.querySelector(".bed").textContent = a.bed;
        li.querySelector(".what").textContent = describe(a);
        const state = a.stale ? `${a.state}, bed offline` : (a.latched && a.state === "active" ? "latched" : a.state);
        li.querySelector(".state").textContent = `${a.priority} · ${state}`;
        const btn = li.querySelector("button");
        const waiting = pendingAcks.has(a.id);
        btn.hidden = a.state === "acknowledged" || a.station === true;
        btn.disabled = waiting || a.stale;
        btn.textContent = waiting ? "sending..." : "Acknowledge";
        if (ol.children[i] !== li) ol.insertBefore(li, ol.children[i] || null);
      });
    }
  }

  function fmtAge(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    return s < 90 ? `${s} s` : `${Math.round(s / 60)} min`;
  }

  function renderTile(bed, now) {
    const el = bed.el;
    el.dataset.online = bed.online === null ? "unknown" : String(bed.online);
    el.querySelector(".online").textContent =
      bed.online === null ? "no status" : bed.online ? "online" : `OFFLINE (${bed.reason || "no reason given"})`;
    if (bed.online && bed.degraded) {
      el.querySelector(".online").textContent +=
        ` - degraded: ${bed.degraded.delegate || "?"} unavailable, models on the ${bed.degraded.running_on || "cpu"}`;
    }
    const cur = bed.current;
    const stale = !cur || now - cur.arrivedMs > STALE_MS || bed.online === false;
    for (const [q, unit] of [["hr", "hr_bpm"], ["rr", "rr_bpm"]]) {
      const v = cur ? num(cur[unit]) : null;
      const box = el.querySelector(`.vital.${q}`);
      box.dataset.stale = String(stale || v === null);
      el.querySelector(`.${q}-value`).textContent =
        v === null || stale ? "--" : q === "hr" ? v.toFixed(0) : v.toFixed(v < 10 ? 1 : 0);
      const src = cur ? cur[`${q}_source`] : null;
      const sqi = src && cur.sqi ? num(cur.sqi[`${q}_${src}`]) : null;
      const model = cur && cur[`${q}_model`] && cur[`${q}_model`] !== "dsp" ? `, ${cur[`${q}_model`]}` : "";
      el.querySelector(`.${q}-meta`).textContent = src
        ? `${src}${model} · quality ${sqi === null ? "?" : sqi.toFixed(2)}` : "no estimate";
    }
    // alarm chips in the tile, worst first; the tile's border takes the worst active priority
    const alarms = [...bed.alarms.values()].sort(byPriority);
    const ol = el.querySelector(".tile-alarms");
    ol.replaceChildren(...alarms.map((a) => {
      const li = document.createElement("li");
      li.dataset.priority = a.priority;
      li.dataset.state = a.state;
      li.textContent = describe(a) + (a.state === "acknowledged" ? " (ack)" : "");
      return li;
    }));
    const worst = alarms.find((a) => a.state !== "acknowledged");
    el.dataset.worst = worst && bed.online !== false ? worst.priority : "none";
    el.querySelector(".age").textContent = bed.lastMs
      ? `last message ${fmtAge(now - bed.lastMs)} ago` + (cur ? ` · signal t ${cur.t_s} s` : "")
      : "";
    if (bed.dirty) {
      const canvas = el.querySelector("canvas.trend");
      drawTrend(canvas, bed, now);
      canvas.dataset.points = String(bed.trend.length); // what the trend holds (for tests)
      bed.dirty = false;
      bed.drawnMs = now;
    }
  }

  function drawTrend(canvas, bed, now) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 360, h = canvas.clientHeight || 90;
    if (canvas.width !== Math.round(w * dpr)) { canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr); }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const t0 = now - TREND_MS;
    bed.trend = bed.trend.filter((p) => p.ms >= t0 - 1000);
    const live = new Set(bed.trend.map((p) => p.seq));
    for (const s of bed.seqs) if (!live.has(s)) bed.seqs.delete(s);
    const x = (ms) => ((ms - t0) / TREND_MS) * (w - 34) + 30;
    ctx.strokeStyle = "#2a2f37"; ctx.fillStyle = "#8a9099"; ctx.font = "10px sans-serif";
    for (let m = 0; m <= 15; m += 5) { // grid every 5 minutes
      const gx = x(now - m * 60000);
      ctx.beginPath(); ctx.moveTo(gx, 2); ctx.lineTo(gx, h - 12); ctx.stroke();
      ctx.fillText(m ? `-${m}m` : "now", gx - 10, h - 2);
    }
    // fixed scales wide enough for adults and children, widened by any value outside them
    const series = [["hr", "#39e75f", 30, 180, 2], ["rr", "#f5f06a", 0, 50, 62]];
    for (const [q, color, lo0, hi0, lx] of series) {
      const vals = bed.trend.map((p) => p[q]).filter((v) => v !== null);
      if (!vals.length) continue;
      const lo = Math.min(lo0, ...vals), hi = Math.max(hi0, ...vals);
      const y = (v) => (h - 14) - ((v - lo) / (hi - lo)) * (h - 20);
      ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
      let prev = null;
      for (const p of bed.trend) {
        const v = p[q];
        if (v === null) { prev = null; continue; }
        if (prev && p.ms - prev.ms <= GAP_MS) ctx.lineTo(x(p.ms), y(v));
        else ctx.moveTo(x(p.ms), y(v));
        prev = p;
      }
      ctx.stroke();
      ctx.fillStyle = color;
      ctx.fillText(`${q.toUpperCase()} ${lo}-${hi}`, lx, 10);
    }
  }

  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      const now = Date.now();
      for (const bed of beds.values()) renderTile(bed, now);
    });
  }

  function tick() {
    const now = Date.now();
    document.getElementById("clock").textContent = new Date(now).toLocaleTimeString();
    for (const [id, t] of pendingAcks) if (now - t > ACK_WAIT_MS) pendingAcks.delete(id);
    for (const bed of beds.values()) {
      if (now - bed.drawnMs >= 5000) bed.dirty = true; // let the trend slide when quiet
      renderTile(bed, now);
    }
    renderAlarms();
  }

  document.addEventListener("DOMContentLoaded", async () => {
    connect(await loadConfig());
    setInterval(tick, 1000);
    tick();
  });
})();
