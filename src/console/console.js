// mcp-zt console: confirmations, live sessions and the live audit tail. Served from the
// binary; the pages read without it. Everything from the server is inserted as text.
"use strict";

document.addEventListener("submit", (ev) => {
  const msg = ev.target.getAttribute("data-confirm");
  if (msg && !window.confirm(msg)) {
    ev.preventDefault();
  }
});

function cell(row, value) {
  const td = document.createElement("td");
  td.textContent = value;
  row.appendChild(td);
}

function time(secs) {
  return new Date(secs * 1000).toISOString().replace(/\.\d+Z$/, "Z");
}

// Sessions: the table under [data-live-sessions] (all, or one serial's) follows the server.
for (const box of document.querySelectorAll("[data-live-sessions]")) {
  const serial = box.getAttribute("data-live-sessions");
  const body = box.querySelector("tbody");
  if (!body) continue;
  const refresh = async () => {
    try {
      const r = await fetch("/console/sessions.json", { cache: "no-store" });
      if (!r.ok) return;
      const list = await r.json();
      const rows = list.filter((c) => !serial || c.serial === serial);
      box.setAttribute("data-count", String(rows.length));
      if (!serial) return; // the full list keeps its server-rendered cut buttons
      body.replaceChildren();
      for (const c of rows) {
        const tr = document.createElement("tr");
        cell(tr, c.addr);
        cell(tr, time(c.since));
        body.appendChild(tr);
      }
    } catch (e) {
      // A revoked console loses its connection: nothing to show.
    }
  };
  refresh();
  setInterval(refresh, 500);
}

// The live audit tail.
const live = document.getElementById("live");
if (live && window.EventSource) {
  const es = new EventSource(live.getAttribute("data-stream"));
  es.onmessage = (m) => {
    const li = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = m.data;
    li.appendChild(code);
    live.prepend(li);
    while (live.children.length > 200) live.lastChild.remove();
  };
}
