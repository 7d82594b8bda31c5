// The chat page: POST /api/chat per message; replies are shown as text only (never innerHTML).
"use strict";
(function () {
  const logEl = document.getElementById("chat-log");
  if (!logEl) return;
  const i18n = JSON.parse(document.getElementById("i18n").textContent || "{}");
  const t = (k) => i18n[k] || k;
  const csrf = document.body.dataset.csrf;
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-text");
  const langSel = document.getElementById("chat-lang");
  let session = "";
  let ended = false;

  function line(who, text) {
    const li = document.createElement("li");
    li.className = who === "bot" ? "system" : "caller";
    const b = document.createElement("b");
    b.textContent = who === "bot" ? t("sp_system") : t("chat_you");
    li.append(b, " " + text);
    logEl.append(li);
    logEl.scrollTop = logEl.scrollHeight;
  }

  async function send(text) {
    const r = await fetch("/api/chat", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ session: session, text: text, lang: langSel.value }),
    });
    const data = await r.json();
    if (!r.ok) { line("bot", "(" + (data.error || r.status) + ")"); return; }
    for (const s of data.texts) line("bot", s);
    if (data.transfer) line("bot", "→ " + t("chat_transfer") + " " + data.transfer.queue);
    input.type = data.secret ? "password" : "text";  // PIN or card number: not shown on screen
    input.dataset.secret = data.secret ? "yes" : "no";
    ended = data.ended;
    document.getElementById("chat").dataset.state = ended ? "ended" : "open";
    if (ended) line("bot", "— " + t("chat_ended") + " —");
  }

  async function start() {
    session = "c" + Math.random().toString(36).slice(2, 12) + Date.now().toString(36);
    logEl.textContent = "";
    await send(null);
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (ended) await start();
    const text = input.value;
    line("you", input.dataset.secret === "yes" ? "•".repeat(text.length) : text);
    input.value = "";
    send(text);
  });
  document.getElementById("chat-new").addEventListener("click", start);
  if (document.getElementById("chat").dataset.enabled === "yes") start();
})();
