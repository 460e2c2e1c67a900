// SessionMonitor view (anywidget ESM, no bundler). State comes from synced traits:
// containers, events, status, error, server_url, last_seq, received, duplicates, gaps,
// connections. Ages, idle times and time to expiry tick here from the timestamps.

const RECENT_REUSE_S = 15;
// The follower publishes at least once per server keep-alive (15 s); much longer silence
// means nobody is updating this view (kernel stopped, or a saved notebook).
const STALE_AFTER_S = 45;

const KIND_LABEL = {
  created: "created",
  reused: "reused",
  resolved: "resolved",
  replaced: "replaced",
  running: "running",
  exec: "exec",
  "exec-failed": "exec",
  expired: "expired",
  deleted: "deleted",
  restarted: "restart",
  other: "event",
};

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  const hr = Math.floor(m / 60);
  if (hr < 24) return `${hr}h ${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

function fmtClock(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  return d.toLocaleTimeString([], { hour12: false });
}

function shortId(id, n = 10) {
  if (!id) return "–";
  const body = id.replace(/^(cntr_|exec_|evt_)/, "");
  const prefix = id.slice(0, id.length - body.length);
  return body.length > n ? `${prefix}${body.slice(0, n)}…` : id;
}

function nowS() {
  return Date.now() / 1000;
}

// Time-dependent cells carry data-* attributes and are rewritten every second.
function timeCell(kind, row) {
  const td = h("td", { class: `jes-num jes-time jes-${kind}` });
  td.dataset.kind = kind;
  td.dataset.created = row.created_at ?? "";
  td.dataset.active = row.last_active_at ?? "";
  td.dataset.minutes = row.expires_minutes ?? "";
  td.dataset.status = row.status;
  td.dataset.ended = row.ended_at ?? "";
  return td;
}

function updateTimeCell(td, now) {
  const num = (v) => (v === "" ? null : Number(v));
  const status = td.dataset.status;
  const created = num(td.dataset.created);
  const active = num(td.dataset.active);
  const minutes = num(td.dataset.minutes);
  const ended = num(td.dataset.ended);
  const end = status === "running" ? now : ended ?? now;
  let text = "–";
  let title = "";
  if (td.dataset.kind === "age" && created !== null) {
    text = fmtDuration(end - created);
    title = `created ${new Date(created * 1000).toLocaleString()}`;
  } else if (td.dataset.kind === "idle" && active !== null) {
    text = status === "running" ? fmtDuration(now - active) : "–";
    title = `last active ${new Date(active * 1000).toLocaleString()}`;
  } else if (td.dataset.kind === "expiry") {
    if (status === "running" && active !== null && minutes !== null) {
      const left = active + minutes * 60 - now;
      text = left > 0 ? fmtDuration(left) : "due";
      td.classList.toggle("jes-soon", left < 60);
      title = `expires ${minutes} min after last activity`;
    } else {
      text = status === "running" ? "–" : status;
    }
  }
  if (td.textContent !== text) td.textContent = text;
  if (title && td.title !== title) td.title = title;
}

function statusBadge(row) {
  const state = row.status === "running" && row.busy ? "busy" : row.status;
  return h("span", { class: `jes-badge jes-st-${state}`, text: state });
}

function renderRow(row) {
  const tr = h("tr", {
    class: `jes-row jes-row-${row.status}${row.busy ? " jes-row-busy" : ""}`,
    "data-id": row.id,
  });
  tr.dataset.reusedAt = row.last_reused_at ?? "";
  const origin =
    row.from_pool === true
      ? h("span", { class: "jes-tag jes-pool", title: "taken from the warm pool", text: "pool" })
      : row.from_pool === false
        ? h("span", { class: "jes-tag jes-cold", title: "cold kernel start", text: "cold" })
        : null;
  const latency =
    row.create_latency_ms !== null && row.create_latency_ms !== undefined
      ? h("span", { class: "jes-dim", text: ` ${Math.round(row.create_latency_ms)} ms` })
      : null;
  tr.append(
    h("td", { class: "jes-name", title: row.name }, row.name || "(unnamed)", " ", origin, latency),
    h("td", { class: "jes-mono", title: row.id }, shortId(row.id)),
    h("td", { class: "jes-mono", title: row.kernel_id || "no kernel" }, shortId(row.kernel_id, 8)),
    h("td", {}, statusBadge(row)),
    timeCell("age", row),
    timeCell("idle", row),
    timeCell("expiry", row),
    h("td", { class: "jes-num" }, String(row.executions ?? 0)),
    h("td", { class: "jes-num" }, `${row.sessions ?? 0} / ${row.turns ?? 0}`),
    h(
      "td",
      {
        class: `jes-num${row.reuses ? " jes-reuses" : ""}`,
        title: row.last_origin
          ? `last resolved via ${row.last_origin}${row.last_session_id ? ` for session ${row.last_session_id}` : ""}`
          : "not resolved by a conversation yet",
      },
      row.reuses ? `↻ ${row.reuses}` : "0",
    ),
    h(
      "td",
      { class: "jes-num", title: "kernel restarts / state resets" },
      row.state_resets || row.restarts ? `${row.state_resets || row.restarts}` : "0",
    ),
  );
  return tr;
}

function renderEvent(ev, names) {
  const name = names.get(ev.container_id) || ev.name || "";
  const cls = `jes-ev jes-ev-${ev.kind}`;
  return h(
    "li",
    { class: cls, "data-seq": ev.seq, title: `#${ev.seq} ${ev.type}` },
    h("span", { class: "jes-ev-time", text: fmtClock(ev.created_at) }),
    h("span", { class: `jes-kind jes-kind-${ev.kind}`, text: KIND_LABEL[ev.kind] || ev.kind }),
    h(
      "span",
      { class: "jes-ev-who", title: ev.container_id || "" },
      name ? h("b", {}, name) : null,
      ev.container_id ? h("span", { class: "jes-mono jes-dim", text: ` ${shortId(ev.container_id, 6)}` }) : null,
    ),
    h("span", { class: "jes-ev-text", text: ev.summary }),
  );
}

function render({ model, el }) {
  let showEnded = true;
  const root = h("div", { class: "jes-monitor" });
  const dot = h("span", { class: "jes-dot" });
  const statusText = h("span", { class: "jes-status-text" });
  const serverEl = h("span", { class: "jes-server jes-mono" });
  const stats = h("div", { class: "jes-stats" });
  const endedToggle = h("input", { type: "checkbox", checked: true });
  endedToggle.addEventListener("change", () => {
    showEnded = endedToggle.checked;
    renderTable();
  });
  const header = h(
    "div",
    { class: "jes-header" },
    h("span", { class: "jes-title", text: "Exec sessions" }),
    h("span", { class: "jes-status" }, dot, statusText),
    serverEl,
    h("label", { class: "jes-toggle" }, endedToggle, " show expired/deleted"),
  );
  const thead = h(
    "thead",
    {},
    h(
      "tr",
      {},
      ...[
        ["Name", "container name; pool/cold start and its latency"],
        ["ID", "container id"],
        ["Kernel", "kernel id"],
        ["Status", "running, busy, expired or deleted"],
        ["Age", "time since creation"],
        ["Idle", "time since last activity"],
        ["Expires in", "time left before expiry"],
        ["Execs", "executions run"],
        ["Sessions / turns", "distinct conversation sessions and turns"],
        ["Reuses", "times a conversation was given this existing container"],
        ["Resets", "kernel state resets"],
      ].map(([t, title]) => h("th", { title, text: t })),
    ),
  );
  const tbody = h("tbody", {});
  const empty = h("div", { class: "jes-empty", text: "No containers yet." });
  const table = h("table", { class: "jes-table" }, thead, tbody);
  const log = h("ol", { class: "jes-log" });
  const footer = h("div", { class: "jes-footer" });
  root.append(
    header,
    stats,
    h("div", { class: "jes-table-wrap" }, table, empty),
    h("div", { class: "jes-section", text: "Events (newest first)" }),
    log,
    footer,
  );
  el.append(root);

  function renderHeader() {
    const status = model.get("status") || "connecting";
    const updated = model.get("updated_at") || 0;
    const silent = updated ? nowS() - updated : 0;
    const stale = status === "live" && silent > STALE_AFTER_S;
    root.dataset.status = status;
    dot.className = `jes-dot jes-dot-${stale ? "stale" : status}`;
    const error = model.get("error");
    let text = error && status !== "live" ? `${status}: ${error}` : status;
    if (stale) text = `not updating for ${fmtDuration(silent)} (kernel stopped?)`;
    if (statusText.textContent !== text) statusText.textContent = text;
    serverEl.textContent = model.get("server_url") || "";
  }

  function renderStats() {
    const rows = model.get("containers") || [];
    const running = rows.filter((r) => r.status === "running");
    const sum = (k) => rows.reduce((a, r) => a + (r[k] || 0), 0);
    const items = [
      ["running", running.length],
      ["busy", running.filter((r) => r.busy).length],
      ["expired", rows.filter((r) => r.status === "expired").length],
      ["executions", sum("executions")],
      ["reuses", sum("reuses")],
      ["from pool", rows.filter((r) => r.from_pool === true).length],
    ];
    stats.replaceChildren(
      ...items.map(([label, n]) =>
        h("span", { class: `jes-stat${label === "reuses" && n ? " jes-stat-reuse" : ""}` },
          h("b", { text: String(n) }), ` ${label}`),
      ),
    );
  }

  function renderTable() {
    const rows = (model.get("containers") || []).filter(
      (r) => showEnded || r.status === "running",
    );
    tbody.replaceChildren(...rows.map(renderRow));
    empty.style.display = rows.length ? "none" : "";
    tick();
  }

  function renderLog() {
    const names = new Map((model.get("containers") || []).map((r) => [r.id, r.name]));
    const events = model.get("events") || [];
    log.replaceChildren(...events.map((ev) => renderEvent(ev, names)));
    if (!events.length) log.append(h("li", { class: "jes-empty", text: "No events yet." }));
  }

  function renderFooter() {
    const conns = model.get("connections") || 0;
    const parts = [
      `last seq ${model.get("last_seq")}`,
      `${model.get("received") || 0} events`,
      conns > 1 ? `resumed ${conns - 1}×` : null,
      model.get("duplicates") ? `${model.get("duplicates")} replays dropped` : null,
    ].filter(Boolean);
    footer.textContent = parts.join(" · ");
  }

  function tick() {
    renderHeader();
    const now = nowS();
    for (const td of tbody.querySelectorAll("td.jes-time")) updateTimeCell(td, now);
    for (const tr of tbody.querySelectorAll("tr.jes-row")) {
      const at = tr.dataset.reusedAt ? Number(tr.dataset.reusedAt) : null;
      tr.classList.toggle("jes-row-reused", at !== null && now - at < RECENT_REUSE_S);
    }
  }

  function renderAll() {
    renderHeader();
    renderStats();
    renderTable();
    renderLog();
    renderFooter();
  }

  const onContainers = () => {
    renderStats();
    renderTable();
    renderLog();
  };
  const onFooter = () => renderFooter();
  model.on("change:status", renderHeader);
  model.on("change:error", renderHeader);
  model.on("change:server_url", renderHeader);
  model.on("change:updated_at", renderHeader);
  model.on("change:containers", onContainers);
  model.on("change:events", renderLog);
  for (const k of ["last_seq", "received", "duplicates", "connections"]) model.on(`change:${k}`, onFooter);
  renderAll();
  const timer = setInterval(tick, 1000);

  return () => {
    clearInterval(timer);
    model.off("change:status", renderHeader);
    model.off("change:error", renderHeader);
    model.off("change:server_url", renderHeader);
    model.off("change:updated_at", renderHeader);
    model.off("change:containers", onContainers);
    model.off("change:events", renderLog);
    for (const k of ["last_seq", "received", "duplicates", "connections"]) model.off(`change:${k}`, onFooter);
  };
}

export default { render };
