// peerdoc dashboard: plain JavaScript over the daemon's own API (docs/api.md), signed in
// with the session cookie `peerdoc open` sets. Live through /v1/events; no framework, no
// build step, nothing from outside this daemon.
"use strict";

const $ = (selector) => document.querySelector(selector);

/** An element with text and attributes; children appended in order. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    ...options,
    headers: { "content-type": "application/json", ...(options.headers || {}) },
  });
  if (response.status === 401) {
    location.reload(); // the sign-in page says what to do
    throw new Error("signed out");
  }
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body && body.message ? body.message : response.statusText);
  return body;
}

// `editing`: the path being edited in place; live refreshes leave the tree alone then.
const view = { tab: "devices", status: null, docs: [], open: null, editing: null, invite: null, confirmRemove: null };

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s <= 1 ? "just now" : `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** A change's time as its author's device stated it: automerge stores seconds, some
 * writers ms; values below 10^11 are taken as seconds (as the CLI reads them). */
function changeTime(time) {
  if (!time) return "time unknown";
  const ms = Math.abs(time) < 1e11 ? time * 1000 : time;
  return new Date(ms).toLocaleString();
}

function short(value) {
  const text = JSON.stringify(value);
  return text.length > 80 ? text.slice(0, 79) + "…" : text;
}

function titleOf(id) {
  const doc = view.docs.find((d) => d.id === id);
  return doc && doc.title ? doc.title : id;
}

// ---- status banner ---------------------------------------------------------------

function renderBanner() {
  const s = view.status;
  const banner = $("#banner");
  const connected = s.peers.filter((p) => p.connected);
  // Syncing: with a connected device (a device that left is listed on the Devices page).
  const syncing = (s.docs || []).filter((d) => d.peers.some((p) => p.connected && !p.in_sync)).length;
  if (s.health === "offline") {
    banner.className = "offline";
    banner.textContent = "Offline: no other device or cloud connected";
  } else if (syncing > 0) {
    banner.className = "syncing";
    banner.textContent = `Syncing ${syncing} document${syncing === 1 ? "" : "s"}`;
  } else {
    banner.className = "synced";
    const k = connected.length;
    banner.textContent = `All synced with ${k} device${k === 1 ? "" : "s"}`;
  }
  // What is wrong with the connections, in words, with what to do.
  $("#network").replaceChildren(...(s.network || []).map((p) => el("li", { "data-code": p.code }, p.message)));
  const cloud = $("#cloud");
  const receipts = s.receipts;
  const connectedNow = s.cloud.some((c) => c.connected);
  const lastContact = Math.max(0, ...s.cloud.map((c) => c.last_success_ms || 0));
  const contact = connectedNow ? "connected" : `last contact ${ago(lastContact)}`;
  if (!s.cloud.length) {
    cloud.textContent = "";
  } else if (receipts && receipts.safe_to_wipe) {
    cloud.textContent = `Cloud (${contact}): safe to hand this tablet back; everything here is in the cloud.`;
  } else if (receipts) {
    // Titles where this device knows them; peerdoc's own documents are left out.
    const names = receipts.not_confirmed_docs
      .filter((id) => view.docs.some((d) => d.id === id))
      .map(titleOf)
      .join(", ");
    cloud.textContent = `Cloud (${contact}): not yet in the cloud: ${names || "the team's own records"}.`;
  }
  const open = s.conflicts ? s.conflicts.documents : 0;
  $("#conflict-count").textContent = open ? `(${open})` : "";
}

// ---- devices ---------------------------------------------------------------------

function peerState(peer) {
  if (!peer) return el("span", { class: "state-away" }, "not seen since this device started");
  if (peer.connected) {
    return el("span", { class: "state-connected" }, `connected over ${peer.transport || "?"}`,
      peer.addrs && peer.addrs[0] ? ` (${peer.addrs[0]})` : "");
  }
  // The reason in words; the transport's own error after it is for the logs.
  const why = peer.not_connected ? peer.not_connected.split(": ")[0] : "";
  if (peer.via_hub) {
    return el("span", { class: "state-away" }, `not reachable from here; syncs through the hub ${peer.via_hub}`);
  }
  if (peer.departed) {
    return el("span", { class: "state-away" }, `left ${ago(peer.last_seen_ms)}`,
      peer.addrs && peer.addrs[0] ? ` (was at ${peer.addrs[0]})` : "",
      why ? `; not back yet: ${why}` : "");
  }
  return el("span", { class: "state-away" }, `not connected, last seen ${ago(peer.last_seen_ms)}`,
    why ? `: ${why}` : "");
}

/** The titles of the documents `peer` is known to miss (peerdoc's own left out). */
function missingOf(peer) {
  const docs = new Map((view.status.docs || []).map((d) => [d.id, d]));
  return (peer.missing_docs || []).map((id) => (docs.get(id) || {}).title || id);
}

function syncLine(peer) {
  if (!peer || !(peer.connected || peer.departed)) return null;
  const missing = missingOf(peer);
  if (!missing.length) {
    return el("div", { class: "sync" }, peer.connected ? "Everything synced" : "Had everything when it left; nothing changed since");
  }
  // A device that left misses what changed here since (as far as this device knows).
  const label = peer.connected ? `Missing ${missing.length}:` : `Missing ${missing.length} since it left:`;
  return el("div", { class: "sync" }, label,
    el("ul", { class: "missing" }, missing.map((m) => el("li", {}, m))));
}

/** An action that reports its error next to the button that started it. */
function action(button, run) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    const old = button.parentNode.querySelector(".error");
    if (old) old.remove();
    try {
      await run();
      await refresh();
    } catch (e) {
      button.after(el("span", { class: "error" }, e.message));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function memberControls(member) {
  const path = `/v1/team/members/${encodeURIComponent(member.device)}`;
  const name = el("input", { type: "text", value: member.name, "aria-label": `New name for ${member.name}` });
  const rename = action(el("button", { type: "button", class: "rename" }, "Rename"),
    () => api(path, { method: "PATCH", body: JSON.stringify({ name: name.value }) }));
  const role = el("select", { "aria-label": `Role of ${member.name}` },
    ["admin", "editor", "viewer"].map((r) => el("option", { value: r, selected: r === member.role }, r)));
  const setRole = action(el("button", { type: "button", class: "set-role" }, "Change role"),
    () => api(path, { method: "PATCH", body: JSON.stringify({ role: role.value }) }));
  // Removing asks twice; the question survives the live refresh.
  let remove;
  if (view.confirmRemove === member.device) {
    remove = action(el("button", { type: "button", class: "primary confirm-remove" }, `Yes, remove ${member.name}`),
      async () => {
        await api(path, { method: "DELETE" });
        view.confirmRemove = null;
      });
  } else {
    remove = el("button", { type: "button", class: "remove" }, "Remove from the team");
    remove.addEventListener("click", () => {
      view.confirmRemove = member.device;
      renderDevices();
    });
  }
  return el("div", { class: "controls" }, name, rename, role, setRole, remove);
}

function inviteForm() {
  const name = el("input", { type: "text", id: "invite-name", placeholder: "e.g. Florist phone", "aria-label": "Name of the new device" });
  const role = el("select", { id: "invite-role", "aria-label": "Role of the new device" },
    ["editor", "viewer", "admin"].map((r) => el("option", { value: r }, r)));
  const shown = el("div", { id: "invite-shown" });
  const make = action(el("button", { type: "button", class: "primary", id: "invite" }, "Invite a device"), async () => {
    const invite = await api("/v1/team/invites", { method: "POST", body: JSON.stringify({ name: name.value || undefined, role: role.value }) });
    view.invite = invite;
  });
  if (view.invite) {
    shown.append(el("p", {}, "On the new device: ", el("code", {}, "peerdoc team join "),
      el("strong", { id: "invite-code" }, view.invite.code)),
    el("img", { src: `/v1/team/invites/${view.invite.id}/qr.svg`, alt: `QR code of ${view.invite.code}`, class: "qr" }));
  }
  return el("li", { class: "invite" }, el("div", { class: "name" }, "Add a device"), name, role, make, shown);
}

function renderDevices() {
  const s = view.status;
  // Someone is typing a name or choosing a role: the live refresh waits.
  const focused = document.activeElement;
  if (focused && ["INPUT", "SELECT"].includes(focused.tagName) && $("#device-list").contains(focused)) return;
  $("#team").textContent = s.team ? s.team.summary : "";
  const list = $("#device-list");
  list.replaceChildren();
  const peers = new Map(s.peers.map((p) => [p.peer_id, p]));
  const members = s.team && s.team.members ? s.team.members : [];
  const admin = s.team && s.team.me && s.team.me.role === "admin";
  if (admin) list.append(inviteForm());
  for (const member of members) {
    if (member.this_device) continue;
    const peer = peers.get(member.device);
    peers.delete(member.device);
    const removed = member.revoked;
    list.append(el("li", { class: "device", "data-peer": member.device },
      el("div", { class: "name" }, member.name, el("span", { class: "muted" }, ` · ${member.role}`)),
      removed
        ? el("div", { class: "state-away" }, `removed from the team by ${removed.by}, ${new Date(removed.at_ms).toLocaleString()}`)
        : el("div", {}, peerState(peer)),
      removed ? null : syncLine(peer),
      admin && !removed ? memberControls(member) : null));
  }
  // Devices seen that are not members (open mode, or not in the team).
  for (const peer of peers.values()) {
    const name = peer.name || peer.peer_id.slice(0, 12) + "…";
    list.append(el("li", { class: "device", "data-peer": peer.peer_id },
      el("div", { class: "name" }, name, peer.role ? el("span", { class: "muted" }, ` · ${peer.role}`) : null),
      el("div", {}, peerState(peer)), syncLine(peer)));
  }
  if (!list.children.length) list.append(el("li", {}, "No other device seen yet."));
}

// ---- documents -------------------------------------------------------------------

function renderDocs() {
  const query = $("#search").value.trim().toLowerCase();
  const list = $("#doc-list");
  list.replaceChildren();
  // Highest priority first (what matters on the day), then by title.
  const shown = view.docs
    .filter((d) => !query || (d.title || "").toLowerCase().includes(query))
    .sort((x, y) => y.priority - x.priority || (x.title || "").localeCompare(y.title || ""));
  if (!shown.length) list.append(el("li", {}, query ? "No document with that title." : "No documents yet."));
  for (const doc of shown) {
    list.append(el("li", { class: "doc", "data-doc": doc.id },
      el("button", { type: "button", class: "link", onclick: () => openDoc(doc.id) }, doc.title || "(untitled)"),
      el("div", { class: "muted" },
        `priority ${doc.priority} · changed ${ago(doc.last_change_ms)}`,
        doc.last_change_by ? ` by ${doc.last_change_by}` : "",
        ` · ${Math.round(doc.size / 102.4) / 10} KiB`)));
  }
}

async function openDoc(id) {
  view.open = id;
  view.editing = null;
  $("#doc-list").hidden = true;
  $("#search").hidden = true;
  $('label[for="search"]').hidden = true;
  $("#doc-detail").hidden = false;
  await renderDoc();
}

function closeDoc() {
  view.open = null;
  view.editing = null;
  $("#doc-list").hidden = false;
  $("#search").hidden = false;
  $('label[for="search"]').hidden = false;
  $("#doc-detail").hidden = true;
}

async function renderDoc() {
  const id = view.open;
  if (!id) return;
  const [doc, history] = await Promise.all([api(`/v1/docs/${id}`), api(`/v1/docs/${id}/history`)]);
  if (view.open !== id) return;
  $("#doc-title").textContent = titleOf(id);
  $("#doc-facts").textContent = `${id} · ${history.length} changes`;
  renderMeta(id);
  if (!view.editing) $("#doc-tree").replaceChildren(renderTree(doc.content, ""));
  const hist = $("#doc-history");
  hist.replaceChildren();
  for (const entry of history.slice().reverse().slice(0, 50)) {
    hist.append(el("li", {},
      el("strong", {}, entry.device || entry.actor.slice(0, 8)), " · ",
      new Date(entry.time_ms).toLocaleString(), entry.message ? ` · ${entry.message}` : ""));
  }
}

/** Title and priority, shared with every device (`PATCH /v1/docs/{id}/meta`). */
function renderMeta(id) {
  const box = $("#doc-meta");
  if (box.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;
  const doc = view.docs.find((d) => d.id === id) || { title: "", priority: 0 };
  const title = el("input", { type: "text", id: "meta-title", value: doc.title || "", "aria-label": "Title" });
  const priority = el("input", { type: "number", id: "meta-priority", value: doc.priority, "aria-label": "Sync priority (higher first)" });
  const save = action(el("button", { type: "button", class: "primary", id: "meta-save" }, "Save title and priority"),
    () => api(`/v1/docs/${id}/meta`, { method: "PATCH", body: JSON.stringify({ title: title.value, priority: Number(priority.value) }) }));
  box.replaceChildren(
    el("label", { for: "meta-title" }, "Title"), title,
    el("label", { for: "meta-priority" }, "Priority (higher syncs first; e.g. 100 for the wedding day)"), priority,
    save);
}

function isTag(value) {
  return value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 1 &&
    ["$counter", "$timestamp", "$bytes", "$str"].includes(Object.keys(value)[0]);
}

function renderTree(value, pointer) {
  if (value && typeof value === "object" && !isTag(value)) {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    return el("ul", {}, entries.map(([key, child]) => {
      const path = `${pointer}/${String(key).replace(/~/g, "~0").replace(/\//g, "~1")}`;
      return el("li", {}, el("span", { class: "key" }, `${key}: `), renderTree(child, path));
    }));
  }
  return renderLeaf(value, pointer);
}

function renderLeaf(value, pointer) {
  const span = el("span", { class: "leaf", "data-path": pointer });
  const shown = el("span", { class: "value-text" }, isTag(value) ? short(value) : String(value));
  const edit = el("button", { type: "button", class: "edit", "aria-label": `Edit ${pointer}` }, "Edit");
  edit.addEventListener("click", () => {
    view.editing = pointer;
    const input = el("input", { type: "text", value: typeof value === "string" ? value : JSON.stringify(value), "aria-label": `New value for ${pointer}` });
    const save = el("button", { type: "button", class: "primary save" }, "Save");
    const error = el("span", { class: "error" });
    save.addEventListener("click", async () => {
      let next = input.value;
      if (typeof value !== "string") {
        try { next = JSON.parse(next); } catch { /* a bare word is a string */ }
      }
      try {
        await api(`/v1/docs/${view.open}`, {
          method: "PATCH",
          body: JSON.stringify({ ops: [{ op: "set", path: pointer, value: next }], message: `edit ${pointer} from the dashboard` }),
        });
        view.editing = null;
        await renderDoc();
      } catch (e) {
        error.textContent = e.message;
      }
    });
    span.replaceChildren(input, save, error);
    input.focus();
  });
  span.append(shown, edit);
  return span;
}

// ---- conflicts -------------------------------------------------------------------

async function renderConflicts() {
  const s = view.status;
  const docs = s.conflicts ? s.conflicts.docs : [];
  const list = $("#conflict-list");
  const details = await Promise.all(docs.map((d) => api(`/v1/docs/${d.id}/conflicts`).then((c) => [d, c])));
  list.replaceChildren();
  if (!details.length) list.append(el("p", { id: "no-conflicts" }, "No open conflicts."));
  const log = [];
  for (const [doc, conflicts] of details) {
    for (const record of conflicts.log) log.push([doc, record]);
    for (const conflict of conflicts.current) {
      const values = el("div", { class: "values" });
      for (const value of conflict.values) {
        const who = value.device || value.actor.slice(0, 8);
        const keep = el("button", { type: "button", class: "primary keep" }, `Keep ${short(value.value)}`);
        keep.addEventListener("click", async () => {
          keep.disabled = true;
          try {
            await api(`/v1/docs/${doc.id}/conflicts/resolve`, {
              method: "POST",
              body: JSON.stringify({ path: conflict.path, keep: value.change }),
            });
            await refresh();
          } catch (e) {
            keep.disabled = false;
            keep.after(el("span", { class: "error" }, e.message));
          }
        });
        values.append(el("div", { class: "value", "data-change": value.change },
          el("div", { class: "shown" }, short(value.value)),
          el("div", { class: "muted" }, `by ${who}, ${changeTime(value.time)}`),
          keep));
      }
      list.append(el("div", { class: "conflict", "data-doc": doc.id, "data-path": conflict.path },
        el("h2", {}, `${doc.title || doc.id}: ${conflict.path}`), values));
    }
  }
  const past = $("#conflict-log");
  past.replaceChildren();
  for (const [doc, record] of log) {
    past.append(el("li", {}, `${doc.title || doc.id} ${record.path}: `,
      record.values.map((v) => `${v.winner ? "kept " : ""}${short(v.value)}`).join(" / ")));
  }
}

// ---- the page --------------------------------------------------------------------

function showTab(tab) {
  view.tab = tab;
  for (const button of document.querySelectorAll("nav button")) {
    if (button.dataset.tab === tab) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const section of ["devices", "documents", "conflicts"]) $(`#${section}`).hidden = section !== tab;
  render();
}

function render() {
  if (!view.status) return;
  renderBanner();
  renderDevices();
  renderDocs();
  if (view.tab === "conflicts") renderConflicts().catch(showError);
}

function showError(error) {
  $("#banner").className = "offline";
  $("#banner").textContent = `The daemon did not answer: ${error.message}`;
}

let refreshing = null;
async function refresh() {
  const [status, docs] = await Promise.all([api("/v1/status"), api("/v1/docs")]);
  view.status = status;
  view.docs = docs;
  render();
  if (view.open && view.tab === "documents") await renderDoc();
}

function scheduleRefresh() {
  if (refreshing) return;
  refreshing = setTimeout(() => {
    refreshing = null;
    refresh().catch(showError);
  }, 250);
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("nav button")) {
    button.addEventListener("click", () => showTab(button.dataset.tab));
  }
  $("#search").addEventListener("input", renderDocs);
  $("#doc-close").addEventListener("click", closeDoc);
  refresh().catch(showError);
  const events = new EventSource("/v1/events");
  for (const name of ["change", "created", "deleted", "conflict", "peer_connected", "peer_disconnected", "lagged"]) {
    events.addEventListener(name, scheduleRefresh);
  }
  // Health, round trips and "last seen" change without events.
  setInterval(scheduleRefresh, 5000);
});
