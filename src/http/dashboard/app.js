// Overseer's admin dashboard: sign-in state, the live activity feed
// (EventSource, which resumes with Last-Event-ID by itself), the health and
// alerts panel, and the audit-log search. Plain JavaScript, no dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const FEED_MAX = 200;

let role = null;
let source = null;
let lastId = null;
const seen = new Set();

function text(tag, content, className) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = content == null ? "" : String(content);
  return el;
}

function ago(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

function formParams(form) {
  const params = new URLSearchParams();
  for (const [key, value] of new FormData(form)) {
    const v = String(value).trim();
    if (!v) continue;
    if (key === "since" || key === "until") {
      params.set(key, new Date(v).toISOString());
    } else {
      params.set(key, v);
    }
  }
  return params;
}

// ---- sign-in state ----

async function start() {
  const error = new URLSearchParams(location.search).get("error");
  if (error) {
    const messages = {
      invalid: "That token was not accepted.",
      missing: "Enter a token.",
      blocked: "Too many failed attempts from this address; try again later.",
      not_admin: "The dashboard is for the super admin and tenant admins.",
    };
    $("signin-error").textContent = messages[error] || "Sign-in failed.";
    $("signin-error").hidden = false;
    history.replaceState(null, "", "/admin");
  }
  const response = await fetch("/admin/session", { credentials: "same-origin" });
  if (!response.ok) {
    if (response.status !== 401 && !error) {
      // Not "signed out": the session could not be checked (the database
      // is unreachable, say). Say so rather than just asking for a token.
      const body = await response.json().catch(() => null);
      const reason = body && body.error && body.error.message;
      $("signin-error").textContent = reason
        ? `Your session could not be checked: ${reason}.`
        : "Your session could not be checked; try again shortly.";
      $("signin-error").hidden = false;
    }
    $("signin").hidden = false;
    $("token").focus();
    return;
  }
  const who = await response.json();
  role = who.role;
  $("signin").hidden = true;
  $("dashboard").hidden = false;
  $("sign-out").hidden = false;
  $("who").hidden = false;
  $("who").textContent = role === "super_admin" ? "Super admin · all tenants" : `Tenant admin · ${who.tenant_id}`;
  document.querySelectorAll(".super-only").forEach((el) => { el.hidden = role !== "super_admin"; });
  connect(null);
  refreshHealth();
  setInterval(refreshHealth, 5000);
  setInterval(refreshTimes, 10000);
  search();
}

// ---- live feed ----

function setState(label, kind) {
  const pill = $("stream-state");
  pill.textContent = label;
  pill.className = `pill ${kind}`;
}

// A fresh stream (new filters: the newest events first), or with `resumeFrom`
// the same one again after the server dropped it for falling behind.
function connect(resumeFrom) {
  if (source) source.close();
  const params = formParams($("feed-filters"));
  if (resumeFrom == null) {
    $("feed").replaceChildren();
    seen.clear();
  } else {
    params.set("last_event_id", String(resumeFrom));
  }
  const url = `/admin/activity/stream${params.size ? `?${params}` : ""}`;
  source = new EventSource(url);
  source.onopen = () => setState("live", "live");
  source.onerror = () => setState("reconnecting…", "reconnecting");
  source.addEventListener("activity", (message) => {
    const event = JSON.parse(message.data);
    lastId = Number(message.lastEventId);
    show(event);
  });
  source.addEventListener("resync", (message) => {
    const data = JSON.parse(message.data);
    if (data.reason === "slow_client") {
      // Dropped for falling behind: reconnect from the last event shown.
      source.close();
      const resumeFrom = lastId;
      setTimeout(() => connect(resumeFrom), 100);
    } else {
      // More missed than the server replays: older events are in the audit log.
      const li = text("li", "Some events were skipped; search the audit log for the gap.", "action");
      $("feed").prepend(li);
    }
  });
}

function show(event) {
  if (seen.has(event.id)) return;
  seen.add(event.id);
  const li = document.createElement("li");
  li.dataset.id = event.id;
  li.dataset.logId = event.log_id;
  if (!event.success) li.classList.add("failed");
  if (event.security_violation) li.classList.add("security");
  if (event.action_required) li.classList.add("action");

  const line = text("div", "", "line");
  line.append(text("span", event.operation, "op"));
  line.append(text("span", event.category, "tag"));
  if (!event.success) line.append(text("span", "failed", "tag failed"));
  if (event.security_violation) line.append(text("span", "security", "tag security"));
  if (event.action_required) line.append(text("span", "action required", "tag action"));
  li.append(line);

  const meta = text("div", "", "meta");
  const time = text("time", ago(event.timestamp));
  time.dateTime = event.timestamp;
  time.title = event.timestamp;
  meta.append(time, ` · ${event.principal_name}${event.principal_id ? ` (${event.principal_id})` : ""}`);
  if (event.tenant_id) meta.append(` · ${event.tenant_id}`);
  li.append(meta);
  if (event.error) li.append(text("div", event.error, "err"));

  const feed = $("feed");
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
}

function refreshTimes() {
  document.querySelectorAll("#feed time").forEach((el) => { el.textContent = ago(el.dateTime); });
}

// ---- health and alerts ----

async function refreshHealth() {
  let report;
  try {
    const response = await fetch("/health");
    report = await response.json();
  } catch {
    $("health-status").textContent = "unreachable";
    $("health-status").className = "pill down";
    return;
  }
  $("health-status").textContent = report.status;
  $("health-status").className = `pill ${report.status}`;
  const c = report.components || {};
  const facts = [
    ["Database", `${c.database?.status ?? report.database} (${c.database?.backend ?? "?"})`],
    ["Audit queue", c.audit?.queue_depth],
    ["Audit spool", `${c.audit?.spool_events ?? 0} events`],
    ["Last audit flush", c.audit?.last_flush_at ? ago(c.audit.last_flush_at) : "never"],
    ["Slack queue", c.slack?.queue_depth],
    ["Live streams", c.sse?.connections],
  ];
  for (const [name, s] of Object.entries(c.schedulers || {})) {
    facts.push([`Scheduler ${name}`, s.last_run_at ? `last run ${ago(s.last_run_at)}` : (s.enabled ? "not run yet" : "on demand only")]);
  }
  const dl = $("health-facts");
  dl.replaceChildren(...facts.flatMap(([k, v]) => [text("dt", k), text("dd", v ?? "–")]));
  const rows = Object.entries(c.actors || {}).map(([name, a]) => {
    const tr = document.createElement("tr");
    tr.append(text("td", name), text("td", a.status, a.status === "running" ? "" : "fail"),
      text("td", a.restarts), text("td", a.last_error || ""));
    return tr;
  });
  $("actors").replaceChildren(...rows);
  refreshAlerts();
}

async function refreshAlerts() {
  const response = await fetch("/api/v1/alerts?limit=5", { credentials: "same-origin" });
  if (!response.ok) { $("alerts-panel").hidden = true; return; }
  const body = await response.json();
  $("alerts-panel").hidden = false;
  const line = (a) => {
    const li = text("li", `${a.state} · ${a.severity} · ${a.rule}${a.scope ? ` (${a.scope})` : ""}: ${a.summary}`);
    li.className = a.state === "firing" ? "fail" : "";
    return li;
  };
  const items = [...body.current.map(line), ...body.resolved.slice(0, 5).map(line)];
  if (!items.length) items.push(text("li", "No alerts."));
  $("alerts").replaceChildren(...items);
}

// ---- audit search ----

let cursor = null;

async function search(next) {
  const params = formParams($("search"));
  params.set("limit", "25");
  if (next && cursor) params.set("cursor", cursor);
  const response = await fetch(`/api/v1/audit/logs?${params}`, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) {
    $("search-error").textContent = body.error?.message || "Search failed.";
    $("search-error").hidden = false;
    return;
  }
  $("search-error").hidden = true;
  cursor = body.next_cursor || null;
  $("next-page").disabled = !cursor;
  $("first-page").disabled = !next;
  const rows = body.items.map((e) => {
    const tr = document.createElement("tr");
    tr.append(text("td", new Date(e.created_at).toLocaleString()), text("td", e.tenant_id ?? "system"),
      text("td", e.operation), text("td", e.principal_id ?? ""),
      text("td", e.success ? "ok" : "failed", e.success ? "" : "fail"), text("td", e.error ?? ""));
    return tr;
  });
  $("results").replaceChildren(...rows);
}

document.addEventListener("DOMContentLoaded", () => {
  $("feed-filters").addEventListener("submit", (e) => { e.preventDefault(); lastId = null; connect(null); });
  $("search").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
  $("next-page").addEventListener("click", () => search(true));
  $("first-page").addEventListener("click", () => search(false));
  start();
});
