// The console's only script: progressive enhancement. Every page works without it.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

function fmt(n) { return Number(n).toLocaleString("en-US"); }

function localTimes(root) {
  for (const el of root.querySelectorAll("[data-local]")) {
    const at = new Date(el.dataset.local);
    if (isNaN(at)) continue;
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    el.textContent = "(" + at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) + " " + zone + ")";
  }
}

function tiles(container, counts, attr) {
  container.replaceChildren();
  const names = Object.keys(counts);
  if (!names.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "No attempt has finished yet.";
    container.append(p);
  }
  for (const name of names) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = fmt(counts[name]);
    dd.setAttribute(attr, name);
    div.append(dt, dd);
    container.append(div);
  }
}

function live(section) {
  // The events table follows the page's own filter and page; the charts and lists come as server markup.
  const table = document.querySelector("#events-list");
  const query = new URLSearchParams(location.search);
  query.delete("notice");
  if (table) query.set("events", "1");
  const url = section.dataset.liveUrl + (query.toString() ? "?" + query : "");
  const tick = async () => {
    let data;
    try {
      const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (!answer.ok) return;
      data = await answer.json();
    } catch (e) { return; }
    for (const [status, n] of Object.entries(data.counts)) {
      const el = section.querySelector(`[data-count="${status}"]`);
      if (el) el.textContent = fmt(n);
    }
    section.querySelector('[data-live="terminal"]').textContent = fmt(data.progress.terminal);
    section.querySelector('[data-live="total"]').textContent = fmt(data.progress.total);
    const badge = document.querySelector('[data-live="status"]');
    if (badge) { badge.textContent = data.status; badge.className = "status s-" + data.status; }
    const bar = section.querySelector(".bar");
    const pct = data.progress.total ? Math.min(100, Math.round(100 * data.progress.terminal / data.progress.total)) : 0;
    bar.firstElementChild.style.width = pct + "%";
    bar.setAttribute("aria-valuenow", data.progress.terminal);
    bar.setAttribute("aria-valuemax", data.progress.total);
    tiles(section.querySelector("#by-outcome"), data.outcomes, "data-outcome");
    for (const [name, markup] of Object.entries(data.html || {})) {
      const target = document.querySelector(name === "events" ? "#events-list" : "#" + name);
      if (target && target.dataset.markup !== markup) { target.innerHTML = markup; target.dataset.markup = markup; localTimes(target); }
    }
    const count = document.querySelector('[data-live="events-total"]');
    if (count && data.events_total !== undefined) count.textContent = fmt(data.events_total);
    if (data.status !== section.dataset.loadedStatus) {
      section.querySelector('[data-live="status-text"]').textContent = data.status;
      section.querySelector("#stale").hidden = false;
    }
  };
  setInterval(tick, 1000);
}

function channelFields(form) {
  const channel = form.querySelector("#f-telnyx_conversation_channel");
  const apply = () => {
    const sms = channel.value === "sms_chat";
    for (const el of form.querySelectorAll(".sms-only")) el.hidden = !sms;
    for (const el of form.querySelectorAll(".call-only")) el.hidden = sms;
  };
  channel.addEventListener("change", apply);
  apply();
}

function splitLine(line, delimiter) {
  const cells = [];
  let cell = "", quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') { cell += '"'; i++; }
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === delimiter) { cells.push(cell); cell = ""; }
    else cell += ch;
  }
  cells.push(cell);
  return cells;
}

function normalized(header) { return header.trim().toLowerCase().replace(/[\s.\-]+/g, "_"); }

function parseMapping(text) {
  const map = new Map();
  for (const line of text.split(/\r?\n/)) {
    const at = line.lastIndexOf("=");
    if (at < 0 || line.trim().startsWith("#")) continue;
    const header = line.slice(0, at).trim(), target = line.slice(at + 1).trim();
    if (header && target) map.set(header, target);
  }
  return map;
}

// The call list's header and first row, read in the browser: the columns found (each with a field that writes
// its line of the Column mapping) and the SMS template's preview with the mapped variable names.
function callList(form) {
  const file = form.querySelector("#f-file");
  const text = form.querySelector("#f-text");
  const area = form.querySelector("#f-mapping");
  const out = form.querySelector("#preview");
  const found = form.querySelector("#columns-found");
  let header = [], first = [];
  const targetOf = (map, h) => map.get(h.trim()) || map.get(normalized(h)) || "";
  const render = () => {
    if (!header.length) { out.textContent = "choose a file"; return; }
    const map = parseMapping(area.value);
    const row = {};
    header.forEach((h, i) => {
      const target = targetOf(map, h) || normalized(h);
      if (target !== "-") row[target] = (first[i] || "").trim();
    });
    out.textContent = text.value.replace(/\{\{\s*([A-Za-z0-9_.]+)\s*\}\}/g, (m, name) => (name in row ? row[name] : m));
  };
  const columns = () => {
    const body = found.querySelector("tbody");
    body.replaceChildren();
    const map = parseMapping(area.value);
    header.forEach((h, i) => {
      const tr = document.createElement("tr");
      const name = document.createElement("td"), value = document.createElement("td"), cell = document.createElement("td");
      name.textContent = h.trim();
      value.textContent = (first[i] || "").trim();
      const input = document.createElement("input");
      input.setAttribute("list", "targets");
      input.setAttribute("aria-label", "Map " + h.trim() + " to");
      input.placeholder = normalized(h);
      input.value = targetOf(map, h);
      input.addEventListener("input", () => {
        const current = parseMapping(area.value);
        current.delete(normalized(h));
        if (input.value.trim()) current.set(h.trim(), input.value.trim()); else current.delete(h.trim());
        area.value = [...current].map(([k, t]) => k + " = " + t).join("\n");
        render();
      });
      cell.append(input);
      tr.append(name, value, cell);
      body.append(tr);
    });
    found.hidden = !header.length;
  };
  file.addEventListener("change", () => {
    const chosen = file.files[0];
    header = []; first = [];
    if (!chosen) { columns(); render(); return; }
    chosen.slice(0, 65536).text().then((head) => {
      const lines = head.replace(/^\uFEFF/, "").split(/\r?\n/).filter((l) => l.trim());
      if (lines.length) {
        const delimiter = [",", ";", "\t"].sort((a, b) => lines[0].split(b).length - lines[0].split(a).length)[0];
        header = splitLine(lines[0], delimiter);
        first = lines.length > 1 ? splitLine(lines[1], delimiter) : [];
      }
      columns();
      render();
    });
  });
  text.addEventListener("input", render);
  area.addEventListener("input", render);
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const section = document.querySelector("[data-live-url]");
  if (section) live(section);
  const form = document.querySelector("#new-campaign");
  if (form) { channelFields(form); callList(form); }
});
