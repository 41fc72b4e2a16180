// The status window. It shows what the tray app sends: a snapshot when it
// opens and a `state` event whenever something changes. Every value from
// the agent is written with textContent, since host names come from web
// requests and may hold markup.
"use strict";

const tauri = window.__TAURI__;
const $ = (id) => document.getElementById(id);

/** Formats an RFC 3339 time as a local time, or returns the text as is. */
function localTime(text) {
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) {
    return text;
  }
  const sameDay = at.toDateString() === new Date().toDateString();
  return sameDay ? at.toLocaleTimeString() : at.toLocaleString();
}

/** Formats the time since an RFC 3339 time, such as "5 min ago". */
function ago(text) {
  if (!text) {
    return "never";
  }
  const seconds = Math.max(0, Math.round((Date.now() - new Date(text).getTime()) / 1000));
  if (Number.isNaN(seconds)) {
    return text;
  }
  if (seconds < 120) return `${seconds} s ago`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} days ago`;
}

/** Builds a table row from cells given as text or [text, className]. */
function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    const [text, className] = Array.isArray(cell) ? cell : [cell, ""];
    td.textContent = String(text);
    if (className) td.className = className;
    tr.append(td);
  }
  return tr;
}

function fillTable(table, rows) {
  table.tBodies[0].replaceChildren(...rows);
}

function listState(list) {
  if (list.stale) return ["out of date", "warn"];
  if (list.lastError) return [`update failed: ${list.lastError}`, "warn"];
  if (list.rules === 0) return ["empty", "warn"];
  return ["ok", "ok"];
}

function render(view) {
  $("summary").className = `state-${view.state}`;
  $("status-line").textContent = view.statusLine;
  $("problems").replaceChildren(
    ...view.problems.slice(1).map((problem) => {
      const li = document.createElement("li");
      li.textContent = problem;
      return li;
    }),
  );
  $("error").hidden = !view.error;
  $("error").textContent = view.error ? `Why: ${view.error}` : "";

  const agent = view.agent;
  const paused = Boolean(agent && agent.pausedUntil);
  $("pause").hidden = !view.canPause;
  $("pause").textContent = paused ? "Resume filtering" : "Pause filtering for 15 minutes";

  $("no-blocks").hidden = view.recent.length > 0;
  $("blocks").hidden = view.recent.length === 0;
  fillTable(
    $("blocks"),
    view.recent.map((block) => row([localTime(block.time), [block.host, "host"], block.category])),
  );
  $("request-access").hidden = !view.requestAccessUrl;

  $("list-version").textContent = agent ? `Version ${agent.listVersion}` : "Not loaded.";
  fillTable(
    $("lists"),
    (agent ? agent.lists : []).map((list) => {
      const [state, className] = listState(list);
      return row([[list.source, "host"], list.rules, ago(list.checkedAt || list.loadedAt), [state, className]]);
    }),
  );

  fillTable(
    $("sinks"),
    (agent ? agent.sinks : []).map((sink) =>
      row([
        [sink.name, "host"],
        sink.healthy ? ["delivering", "ok"] : [`unreachable: ${sink.lastError || "no answer"}`, "bad"],
        sink.pending,
      ]),
    ),
  );

  const ca = agent && agent.ca;
  if (ca) {
    $("ca").textContent = ca.trusted
      ? `Trusted. Fingerprint ${ca.sha256.slice(0, 16)}…, valid until ${localTime(ca.notAfter)}.`
      : "NOT trusted everywhere: browsers may show certificate errors. Ask IT to install the webwarden certificate.";
    $("ca").className = ca.trusted ? "" : "bad";
    $("ca-stores").replaceChildren(
      ...ca.stores.map((store) => {
        const li = document.createElement("li");
        li.textContent = `${store.name} (${store.location}): ${store.state}`;
        return li;
      }),
    );
  } else {
    $("ca").textContent = "Not checked yet.";
    $("ca").className = "quiet";
    $("ca-stores").replaceChildren();
  }

  $("notifications").checked = view.notifications.enabled;
  $("notifications").disabled = view.notifications.forced;
  $("notifications-forced").hidden = !view.notifications.forced;
  $("autostart").checked = view.autostart;

  // Tells the app what the window shows; only end-to-end tests use it.
  tauri.core.invoke("window_rendered", { text: document.body.innerText }).catch(() => {});
}

async function call(command, args) {
  $("setting-error").hidden = true;
  try {
    const view = await tauri.core.invoke(command, args);
    if (view) render(view);
  } catch (error) {
    $("setting-error").textContent = String(error);
    $("setting-error").hidden = false;
  }
}

$("pause").addEventListener("click", () => call("toggle_pause"));
$("notifications").addEventListener("change", (event) =>
  call("set_notifications", { enabled: event.target.checked }),
);
$("autostart").addEventListener("change", (event) =>
  call("set_autostart", { enabled: event.target.checked }),
);
$("request-access-button").addEventListener("click", () => call("open_request_access"));

tauri.event.listen("state", (event) => render(event.payload));
tauri.core.invoke("snapshot").then(render);
