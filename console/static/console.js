// The console's live parts: the wallboard and the agent's screen pop over one WebSocket.
// Plain DOM, text only (never innerHTML with data): transcripts are untrusted input.
"use strict";
(function () {
  const body = document.body;
  const i18n = JSON.parse(document.getElementById("i18n").textContent || "{}");
  const t = (k) => i18n[k] || k;
  const me = body.dataset.user;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c === null || c === undefined ? "" : c);
    return e;
  }

  function lineItem(ln) {
    return el("li", { class: ln.speaker }, el("b", { "data-speaker": ln.speaker }, i18n["sp_" + ln.speaker] || ln.speaker),
      " " + ln.text);
  }

  function connect(onMessage) {
    let delay = 500;
    function open() {
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/events");
      ws.onopen = () => { delay = 500; body.dataset.live = "connected"; };
      ws.onmessage = (m) => onMessage(JSON.parse(m.data));
      ws.onclose = () => {
        body.dataset.live = "closed";
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 10000);
      };
    }
    open();
  }

  // -- wallboard ---------------------------------------------------------------------------
  const liveCalls = document.getElementById("live-calls");
  if (liveCalls) {
    const calls = new Map();
    const render = () => {
      liveCalls.replaceChildren();
      for (const c of calls.values()) {
        const lines = el("ol", { class: "transcript" }, ...c.lines.map(lineItem));
        const head = el("h3", {}, `${c.caller || "?"} · ${c.state}` + (c.intent ? ` · ${c.intent}` : "") +
          (c.agent ? ` · ${c.agent}` : ""));
        liveCalls.append(el("article", { class: "live-call " + c.state, "data-call": c.call_id }, head, lines));
      }
      document.getElementById("calls-count").textContent = String([...calls.values()].filter((c) => c.state !== "ended").length);
    };
    connect((msg) => {
      if (msg.topic === "snapshot") {
        calls.clear();
        for (const c of msg.calls) calls.set(c.call_id, c);
      } else {
        let c = calls.get(msg.call_id);
        if (!c) { c = { call_id: msg.call_id, caller: "", state: "ivr", lines: [], intent: null, agent: null }; calls.set(msg.call_id, c); }
        if (msg.topic === "call.started") { c.caller = msg.caller; }
        else if (msg.topic === "call.transcript") { c.lines.push({ speaker: msg.speaker, text: msg.text }); }
        else if (msg.topic === "call.intent") { c.intent = msg.intent; }
        else if (msg.topic === "call.queued") { c.state = "queued"; c.queue = msg.queue; }
        else if (msg.topic === "call.agent_assigned") { c.state = "with_agent"; c.agent = msg.agent; }
        else if (msg.topic === "call.ended") { c.state = "ended"; setTimeout(() => { calls.delete(msg.call_id); render(); }, 30000); }
      }
      render();
    });

    const fmt = (v, suffix) => (v === null || v === undefined ? "—" : v + (suffix || ""));
    async function poll() {
      try {
        const [q, a] = await Promise.all([fetch("/api/queues"), fetch("/api/agents")]);
        if (q.ok) {
          const rows = (await q.json()).queues.map((x) => el("tr", {}, el("td", {}, x.name), el("td", {}, String(x.waiting)),
            el("td", {}, fmt(x.longest_wait_s, " s")), el("td", {}, fmt(x.service_level_pct, " %")),
            el("td", {}, String(x.answered)), el("td", {}, String(x.abandoned))));
          document.querySelector("#queues tbody").replaceChildren(...rows);
        }
        if (a.ok) {
          const rows = (await a.json()).agents.map((x) => el("tr", { class: x.state }, el("td", {}, x.id),
            el("td", { class: "state " + x.state }, t(x.state)), el("td", {}, fmt(Math.round(x.in_state_s))),
            el("td", {}, x.call_id || "")));
          document.querySelector("#agents tbody").replaceChildren(...rows);
        }
      } catch (e) { /* the next poll tries again */ }
      setTimeout(poll, 2000);
    }
    poll();
  }

  // -- agent desktop: screen pop -------------------------------------------------------------
  const pop = document.getElementById("screen-pop");
  if (pop) {
    let current = document.getElementById("wrapup-call").value || null;
    const show = (p) => {
      if (!p) return;
      current = p.call_id;
      document.getElementById("pop-waiting").hidden = true;
      document.getElementById("pop-body").hidden = false;
      document.getElementById("pop-caller").textContent = p.caller || "";
      document.getElementById("pop-verified").textContent = p.verified === null || p.verified === undefined ? "—" : String(p.verified);
      document.getElementById("pop-intent").textContent = p.intent || "—";
      document.getElementById("pop-slots").textContent = Object.entries(p.slots || {}).map(([k, v]) => `${k}=${v}`).join(" ");
      document.getElementById("pop-language").textContent = p.language || "";
      document.getElementById("pop-transcript").replaceChildren(...(p.transcript || []).map(lineItem));
      document.getElementById("wrapup-call").value = p.call_id;
      document.getElementById("wrapup-save").disabled = false;
      pop.classList.add("ringing");
    };
    const stateEl = document.getElementById("agent-state");
    async function pollState() {
      try {
        const r = await fetch("/api/agents/" + encodeURIComponent(me));
        if (r.ok) {
          const a = await r.json();
          stateEl.textContent = t(a.state);
          stateEl.className = "state " + a.state;
          stateEl.dataset.state = a.state;
          for (const b of document.querySelectorAll(".state-btn")) b.disabled = b.value === a.state || ["ringing", "on_call"].includes(a.state);
        }
      } catch (e) { /* the next poll tries again */ }
      setTimeout(pollState, 2000);
    }
    if (document.querySelector(".state-btn")) pollState();
    connect((msg) => {
      if (msg.topic === "snapshot") show(msg.screen_pop);
      else if (msg.topic === "call.agent_assigned" && msg.agent === me) show(msg.screen_pop);
      else if (msg.topic === "call.transcript" && msg.call_id === current) {
        document.getElementById("pop-transcript").append(lineItem(msg));
      } else if (msg.topic === "call.ended" && msg.call_id === current) pop.classList.remove("ringing");
    });
  }
})();
