// codestudio web UI: every button calls /api/v1 with the page's CSRF token.
// No dependencies; live state and job output come as server-sent events.
"use strict";
(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function api(method, path, body, contentType) {
    const headers = { "X-CSRF-Token": csrf(), "Accept": "application/json" };
    let payload;
    if (body !== undefined && body !== null) {
      if (contentType) { headers["Content-Type"] = contentType; payload = body; }
      else { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
    }
    const response = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
    const text = await response.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
    if (!response.ok) {
      const err = new Error((data && data.error && data.error.message) || response.statusText);
      err.status = response.status; err.body = data && data.error;
      throw err;
    }
    return { status: response.status, data };
  }

  function show(el, text) { if (!el) return; el.hidden = false; el.textContent = text; }
  function append(el, text) { if (!el) return; el.hidden = false; el.textContent += text + "\n"; el.scrollTop = el.scrollHeight; }

  function follow(job, log, done) {
    const source = new EventSource(`/api/v1/jobs/${job.id}/events`);
    source.addEventListener("line", (e) => append(log, JSON.parse(e.data)));
    source.addEventListener("state", (e) => { if (log) log.dataset.state = JSON.parse(e.data).state; });
    source.addEventListener("end", (e) => {
      source.close();
      const end = JSON.parse(e.data);
      log.dataset.state = end.state;
      if (end.state === "failed") append(log, `FAILED: ${end.error ? end.error.message : "unknown error"}`);
      else {
        const r = end.result || {};
        if (r.exit_status !== undefined) append(log, `exit status ${r.exit_status}`);
        append(log, "done");
      }
      log.classList.add(end.state);
      if (done) done(end);
    });
  }

  function errorBox(form) { return form && form.querySelector("[data-error]"); }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-api]");
    if (button) {
      event.preventDefault();
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
      const [method, path] = button.dataset.api.split(" ");
      const log = button.dataset.log ? document.querySelector(button.dataset.log) : null;
      if (log) { log.textContent = ""; log.className = "joblog"; delete log.dataset.state; }
      try {
        const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
        const { status, data } = await api(method, path, body);
        if (status === 202 && data && data.id) {
          append(log, `job ${data.id}: ${data.kind} ${data.target}`);
          follow(data, log, () => { if (button.hasAttribute("data-reload")) location.reload(); });
        } else if (button.hasAttribute("data-reload")) location.reload();
        else if (log) append(log, JSON.stringify(data, null, 2));
      } catch (err) {
        if (log) { append(log, `error: ${err.message}`); log.dataset.state = "failed"; }
        else window.alert(err.message);
      }
      return;
    }
    const open = event.target.closest("button[data-open]");
    if (open) {
      event.preventDefault();
      // Open the window while the click still counts as a user gesture; the link comes after.
      const win = open.hasAttribute("data-newtab") ? window.open("about:blank", "_blank") : null;
      if (win) win.opener = null;
      try {
        const { data } = await api("GET", `/api/v1/studios/${open.dataset.open}/open?port=${open.dataset.port}`);
        if (win) { win.location.href = data.url; return; }
        const frame = document.querySelector(open.dataset.frame);
        frame.hidden = false; frame.src = data.url;
        document.querySelectorAll("button.tab").forEach((b) => b.classList.toggle("current", b === open));
      } catch (err) { if (win) win.close(); window.alert(err.message); }
      return;
    }
    const tail = event.target.closest("button[data-tail]");
    if (tail) {
      event.preventDefault();
      const target = document.querySelector(tail.dataset.target);
      const response = await fetch(`/api/v1/studios/${tail.dataset.tail}/logs?tail=200`, { credentials: "same-origin" });
      target.textContent = await response.text();
      return;
    }
    const followLogs = event.target.closest("button[data-follow-logs]");
    if (followLogs) {
      event.preventDefault();
      const target = document.querySelector(followLogs.dataset.target);
      target.textContent = "";
      const source = new EventSource(`/api/v1/studios/${followLogs.dataset.followLogs}/logs/events?tail=50`);
      source.addEventListener("line", (e) => append(target, JSON.parse(e.data)));
      source.addEventListener("end", () => source.close());
      source.onerror = () => source.close();
      return;
    }
    const verb = event.target.closest("button[data-verb]");
    if (verb) {
      event.preventDefault();
      const form = verb.closest("form");
      const user = form.elements.user.value;
      const paths = { sessions: ["DELETE", `/api/v1/users/${encodeURIComponent(user)}/sessions`],
                      disable: ["POST", `/api/v1/users/${encodeURIComponent(user)}/disable`],
                      enable: ["POST", `/api/v1/users/${encodeURIComponent(user)}/enable`] };
      const [method, path] = paths[verb.dataset.verb];
      try { const { data } = await api(method, path); form.querySelector("[data-result]").textContent = JSON.stringify(data); }
      catch (err) { show(errorBox(form), err.message); }
    }
  });

  document.addEventListener("change", (event) => {
    if (event.target.id === "project-select") {
      document.getElementById("new-project-label").hidden = event.target.value !== "";
    }
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.matches("[data-create-studio]")) {
      // Studios live in projects the user is a member of; "New project" creates one first (its owner).
      event.preventDefault();
      const f = Object.fromEntries(new FormData(form).entries());
      try {
        let project = f.project;
        if (!project) {
          project = f.new_project;
          await api("POST", "/api/v1/projects", { key: project });
        }
        await api("POST", "/api/v1/studios", { project, name: f.name, template: f.template });
        location.reload();
      } catch (err) { show(errorBox(form), err.message); }
      return;
    }
    if (form.matches("[data-api-form], [data-api-form-path]")) {
      event.preventDefault();
      const fields = Object.fromEntries(new FormData(form).entries());
      let method = "POST", path;
      if (form.dataset.apiForm) [method, path] = form.dataset.apiForm.split(" ");
      else {
        path = form.dataset.apiFormPath.replace(/\{(\w+)\}/g, (_, k) => { const v = fields[k]; delete fields[k]; return encodeURIComponent(v); });
      }
      try {
        const { data } = await api(method, path, fields);
        if (form.dataset.showToken) show(document.querySelector(form.dataset.showToken), `your new token (shown only now):\n${data.token}`);
        else if (form.hasAttribute("data-reload")) location.reload();
      } catch (err) { show(errorBox(form), err.message); }
      return;
    }
    if (form.matches("[data-upload]")) {
      event.preventDefault();
      const file = form.querySelector('input[type="file"]').files[0];
      const text = file ? await file.text() : form.querySelector("textarea").value;
      const view = form.querySelector(".yaml");
      const box = errorBox(form);
      box.hidden = true;
      try {
        const { data } = await api("POST", "/api/v1/templates", text, "application/yaml");
        location.href = `/admin/templates/${encodeURIComponent(data.id)}`;
      } catch (err) {
        show(box, err.message);
        view.innerHTML = "";
        const problems = (err.body && err.body.problems) || [];
        text.split("\n").forEach((line, i) => {
          const li = document.createElement("li");
          li.id = `U${i + 1}`;
          const code = document.createElement("code");
          code.textContent = line;
          li.appendChild(code);
          problems.filter((p) => p.line === i + 1).forEach((p) => {
            li.classList.add("problem");
            const note = document.createElement("div");
            note.className = "problem-note";
            note.textContent = p.message;
            li.appendChild(note);
          });
          view.appendChild(li);
        });
        view.hidden = false;
      }
    }
  });

  // Live studio states on pages that show them.
  if (document.querySelector("[data-live-studios]")) {
    const source = new EventSource("/api/v1/events");
    source.addEventListener("studio", (e) => {
      const s = JSON.parse(e.data);
      document.querySelectorAll(`[data-state-of="${CSS.escape(s.id)}"]`).forEach((el) => {
        el.textContent = s.state; el.className = `state state-${s.state}`;
      });
      document.querySelectorAll(`[data-message-of="${CSS.escape(s.id)}"]`).forEach((el) => { el.textContent = s.message || ""; });
    });
  }
})();
