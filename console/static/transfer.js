// The agent desktop's transfer form (console/templates/_transfer.html, console/transfer_api.py): targets are
// the queues and the agents logged in (only ready ones can be chosen); Transfer, Consult, Complete, Cancel.
(function () {
  const form = document.getElementById("transfer-form");
  if (!form) return;
  const i18n = JSON.parse(document.getElementById("i18n").textContent || "{}");
  const t = (k) => i18n[k] || k;
  const me = document.body.dataset.user;
  const csrf = document.body.dataset.csrf;
  const result = document.getElementById("transfer-result");
  const byId = (id) => document.getElementById(id);
  const callId = () => byId("wrapup-call").value;
  const option = (value, label, disabled) => {
    const o = document.createElement("option");
    o.value = value; o.textContent = label; o.disabled = !!disabled;
    return o;
  };

  async function loadTargets() {
    try {
      const r = await fetch("/api/transfer-targets");
      if (r.ok) {
        const data = await r.json();
        const chosen = byId("transfer-target").value;
        byId("transfer-queues").replaceChildren(...data.queues.map((q) => option("queue:" + q, q)));
        byId("transfer-agents").replaceChildren(...data.agents.filter((a) => a.id !== me).map((a) =>
          option("agent:" + a.id, `${a.name} (${t(a.state)})`, !a.ready)));
        const again = [...byId("transfer-target").options].find((o) => o.value === chosen && !o.disabled);
        if (again) byId("transfer-target").value = chosen;
      }
    } catch (e) { /* the next load tries again */ }
    setTimeout(loadTargets, 5000);
  }

  function consulting(on) {
    byId("consult-complete").hidden = !on;
    byId("consult-cancel").hidden = !on;
    byId("consult-go").disabled = on;
    byId("transfer-go").disabled = on;
  }

  async function post(path, body) {
    const id = callId();
    if (!id) { result.textContent = result.dataset.noCall; return false; }
    const r = await fetch(`/api/calls/${encodeURIComponent(id)}/${path}`, {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body || {}),
    });
    const data = await r.json().catch(() => ({}));
    result.textContent = r.ok ? result.dataset.asked : (data.error || r.statusText);
    result.dataset.status = String(r.status);
    return r.ok;
  }

  function target() {
    const [kind, name] = byId("transfer-target").value.split(/:(.*)/s);
    return kind === "agent" ? { agent: name } : { queue: name };
  }

  byId("transfer-go").addEventListener("click", () => post("transfer", {
    ...target(), mode: byId("transfer-mode").value, note: byId("transfer-note").value }));
  byId("consult-go").addEventListener("click", async () => {
    if (await post("consult", { ...target(), note: byId("transfer-note").value })) consulting(true);
  });
  byId("consult-complete").addEventListener("click", async () => {
    if (await post("consult/complete")) consulting(false);
  });
  byId("consult-cancel").addEventListener("click", async () => {
    if (await post("consult/cancel")) consulting(false);
  });
  loadTargets();
})();
