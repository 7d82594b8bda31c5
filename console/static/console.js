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
    const canListen = body.dataset.listen === "1";
    const meter = document.getElementById("listen-status");
    let player = null;
    // Listen-in: 100 ms PCM16 chunks at 8 kHz from /ws/listen/ID, scheduled back to back with WebAudio.
    function stopListening() {
      stopWhisper();
      if (player) { player.ws.close(); player.ctx.close(); player = null; }
      if (meter) meter.dataset.state = "off";
      render();
    }
    // Whisper (coach): the microphone, resampled by WebAudio to 8 kHz, sent as 20 ms PCM16 messages up
    // /ws/whisper/ID; the hotline mixes it into what the agent hears only (the caller never hears it).
    const wmeter = document.getElementById("whisper-status");
    let coach = null;
    function stopWhisper() {
      const w = coach;
      if (!w) return;
      coach = null;
      if (w.ws.readyState <= 1) w.ws.close(1000);
      if (w.proc) w.proc.disconnect();
      if (w.stream) w.stream.getTracks().forEach((tr) => tr.stop());
      if (w.ctx) w.ctx.close();
      if (wmeter) { wmeter.dataset.state = "off"; wmeter.textContent = ""; }
      render();
    }
    async function whisper(callId) {
      stopWhisper();
      const w = { callId, ws: null, ctx: null, proc: null, stream: null, sent: 0 };
      coach = w;
      render();
      const fail = (why) => {
        if (coach !== w) return;
        stopWhisper();
        if (wmeter) { wmeter.dataset.state = "failed"; wmeter.textContent = `${t("whisper_failed")}: ${why}`; }
      };
      try {
        w.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 } });
      } catch (e) { fail(String(e)); return; }
      if (coach !== w) { w.stream.getTracks().forEach((tr) => tr.stop()); return; }
      w.ctx = new AudioContext({ sampleRate: 8000 });  // the browser's own resampler does 48 kHz -> 8 kHz
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/whisper/" + encodeURIComponent(callId));
      w.ws = ws;
      ws.onmessage = (m) => {
        if (typeof m.data !== "string") return;
        const d = JSON.parse(m.data);
        if (d.ended) (d.reason ? fail(d.reason) : stopWhisper());  // a reason: refused or cut by the call's worker
      };
      ws.onclose = (ev) => { if (coach === w) (ev.code === 1000 || ev.code === 1005 ? stopWhisper() : fail(`${ev.code} ${ev.reason}`)); };
      ws.onopen = () => {
        const src = w.ctx.createMediaStreamSource(w.stream);
        const proc = w.ctx.createScriptProcessor(512, 1, 1);
        w.proc = proc;
        let carry = new Int16Array(0);
        proc.onaudioprocess = (e) => {
          if (ws.readyState !== 1) return;
          const x = e.inputBuffer.getChannelData(0);
          const pcm = new Int16Array(carry.length + x.length);
          pcm.set(carry);
          for (let i = 0; i < x.length; i++) pcm[carry.length + i] = Math.max(-32768, Math.min(32767, Math.round(x[i] * 32767)));
          let off = 0;
          for (; off + 160 <= pcm.length; off += 160) ws.send(pcm.slice(off, off + 160).buffer);  // 20 ms each
          carry = pcm.slice(off);
          w.sent += off * 2;
          if (wmeter) {
            wmeter.dataset.state = "on"; wmeter.dataset.call = callId; wmeter.dataset.bytes = String(w.sent);
            wmeter.textContent = `${t("whispering")} · ${Math.round(w.sent / 16000)} s`;
          }
        };
        src.connect(proc);
        proc.connect(w.ctx.destination);  // a ScriptProcessor runs only when connected; its output is silence
      };
    }
    window.addEventListener("pagehide", () => stopWhisper());
    function listen(callId) {
      stopListening();
      const ctx = new AudioContext();
      const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/listen/" + encodeURIComponent(callId));
      ws.binaryType = "arraybuffer";
      const p = { callId, ctx, ws, next: 0, bytes: 0, chunks: 0, energy: 0 };
      player = p;
      ws.onmessage = (m) => {
        if (typeof m.data === "string") {
          const info = JSON.parse(m.data);
          if (info.ended && player === p) stopListening();
          return;
        }
        const pcm = new Int16Array(m.data);
        const buf = ctx.createBuffer(1, pcm.length, 8000);
        const ch = buf.getChannelData(0);
        let sum = 0;
        for (let i = 0; i < pcm.length; i++) { ch[i] = pcm[i] / 32768; sum += ch[i] * ch[i]; }
        const src = ctx.createBufferSource();
        src.buffer = buf;
        src.connect(ctx.destination);
        p.next = Math.max(p.next, ctx.currentTime + 0.15);
        src.start(p.next);
        p.next += buf.duration;
        p.bytes += m.data.byteLength; p.chunks += 1; p.energy += sum;
        if (meter) {
          meter.dataset.state = "on"; meter.dataset.call = callId; meter.dataset.bytes = String(p.bytes);
          meter.dataset.energy = String(Math.round(p.energy)); meter.dataset.chunks = String(p.chunks);
          meter.textContent = `${t("listening")} ${callId} · ${Math.round(p.bytes / 16000)} s`;
        }
      };
      ws.onclose = () => { if (player === p) stopListening(); };
      render();
    }
    const render = () => {
      liveCalls.replaceChildren();
      const angry = (c) => (c.sentiment && c.sentiment.angry && c.state !== "ended" ? 1 : 0);
      for (const c of [...calls.values()].sort((a, b) => angry(b) - angry(a))) {  // angry callers first
        const lines = el("ol", { class: "transcript" }, ...c.lines.map(lineItem));
        const head = el("h3", {}, `${c.caller || "?"} · ${c.state}` + (c.intent ? ` · ${c.intent}` : "") +
          (c.agent ? ` · ${c.agent}` : ""));
        const s = c.sentiment;
        if (s) {
          head.append(" ", el("span", { class: "mood " + s.label + (s.angry ? " flagged" : ""), "data-mood": s.label,
            title: String(s.score) }, t("mood_" + s.label) + (s.angry ? " ⚑" : "")));
        }
        if (canListen && c.state !== "ended") {
          const listening = player && player.callId === c.call_id;
          const btn = el("button", { type: "button", class: "listen" + (listening ? " on" : ""), "data-listen": c.call_id },
            listening ? t("listen_stop") : t("listen"));
          btn.addEventListener("click", () => (listening ? stopListening() : listen(c.call_id)));
          head.append(" ", btn);
          if (listening && c.state === "with_agent") {
            const on = coach && coach.callId === c.call_id;
            const wb = el("button", { type: "button", class: "whisper" + (on ? " on" : ""), "data-whisper": c.call_id },
              on ? t("whisper_stop") : t("whisper"));
            wb.addEventListener("click", () => (on ? stopWhisper() : whisper(c.call_id)));
            head.append(" ", wb);
          }
        }
        const cls = "live-call " + c.state + (s && s.angry ? " angry" : "");
        liveCalls.append(el("article", { class: cls, "data-call": c.call_id, "data-angry": s && s.angry ? "1" : "0" },
          head, lines));
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
        else if (msg.topic === "call.sentiment") { c.sentiment = { score: msg.score, label: msg.label, angry: msg.angry, minimum: msg.minimum }; }
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
    const moodEl = document.getElementById("pop-mood");
    const showMood = (s) => {
      if (!moodEl) return;
      if (!s) { moodEl.replaceChildren("—"); return; }
      moodEl.replaceChildren(el("span", { class: "mood " + s.label + (s.angry ? " flagged" : ""), "data-mood": s.label },
        t("mood_" + s.label) + (s.angry ? " ⚑" : "")));
    };
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
      const routingEl = document.getElementById("pop-routing");  // needs, priority, skills relaxed
      if (routingEl) routingEl.textContent = p.routing || "—";
      showMood(p.sentiment);
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
      } else if (msg.topic === "call.sentiment" && msg.call_id === current) showMood(msg);
      else if (msg.topic === "call.ended" && msg.call_id === current) pop.classList.remove("ringing");
    });
  }
})();
