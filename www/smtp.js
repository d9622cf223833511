// The SMTP configuration page. It is a client of the HTTP API like any
// other: Basic credentials of an API user, X-Keyfactor-Requested-With,
// version 2 of the API (so the OAuth fields show; its credentials are
// Keyfactor's secret objects), and X-Kfsmtp-Details for the stage, the
// server's reply, TLS facts and the transcript. The credentials live in
// this page's memory only: a reload asks again.
"use strict";

(function () {
  // The page sits at {base}/Portal/; the API is {base}/SMTP.
  const API_BASE = location.pathname.replace(/\/Portal(\/.*)?$/i, "");
  const MODIFY = "/system_settings/modify/";
  // Each secret belongs to one RelayAuthenticationType.
  const SECRET_OF_TYPE = { 2: "RelayPassword", 3: "ClientSecret" };
  const TEXT_FIELDS = ["Host", "SenderName", "SenderAccount", "TokenEndpoint", "Scope", "Audience"];
  // Version 2 gives these as secret objects that show their value
  // (SecretValue), or where it lives when it is a provider reference.
  const SHOWN_SECRETS = ["RelayUsername", "ClientId"];
  const STAGES = {
    validate: "checking the settings",
    resolve: "looking up the host name",
    connect: "connecting",
    greeting: "waiting for the server's greeting",
    tls: "TLS",
    ehlo: "EHLO (the server's capabilities)",
    auth: "authentication",
    mail: "sender (MAIL FROM)",
    rcpt: "recipient (RCPT TO)",
    data: "message (DATA)",
    token: "OAuth token endpoint",
    secret: "reading the secret from its provider",
  };
  // A secret provider's type says the one parameter that finds a secret
  // in it (kfsmtp.secrets).
  const PARAMETER_OF_TYPE = { file: "Path", env: "Name" };
  const PARAMETER_HINT = {
    Path: "The file's path inside the provider's folder, e.g. smtp_password.",
    Name: "An environment variable the operator lets this provider read, e.g. SMTP_PASSWORD.",
  };

  const $ = (id) => document.getElementById(id);
  let authorization = null;
  let canModify = false;
  // A RelayUsername or ClientId that is a provider reference, as loaded:
  // sent back unchanged until someone chooses to type a value instead.
  let shownReferences = {};
  // The server's secret providers, [{ id, type }], from
  // X-Kfsmtp-Secret-Providers: none, and the page offers no choice.
  let providers = [];
  // What is stored for RelayPassword and ClientSecret: null (nothing),
  // "value", or the reference { Provider, Parameters }.
  let storedSecrets = {};

  function basicAuthorization(user, password) {
    // UTF-8, as the server's WWW-Authenticate (charset="UTF-8") asks.
    const bytes = new TextEncoder().encode(user + ":" + password);
    let binary = "";
    bytes.forEach((b) => { binary += String.fromCharCode(b); });
    return "Basic " + btoa(binary);
  }

  async function call(method, path, body) {
    const headers = {
      "Authorization": authorization,
      "X-Keyfactor-Requested-With": "kfsmtp-page",
      "x-keyfactor-api-version": "2",
      "X-Kfsmtp-Details": "1",
      // Asks for a 401 without WWW-Authenticate, so the browser leaves
      // signing in to this page's form instead of its own dialog.
      "X-Requested-With": "XMLHttpRequest",
      "Accept": "application/json",
    };
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API_BASE + path, init);
    } catch (e) {
      return { status: 0, doc: { Message: "The server could not be reached (" + e.message + "). Check that it is running, then try again." } };
    }
    const text = await response.text();
    let doc = {};
    if (text !== "") {
      try {
        doc = JSON.parse(text);
      } catch (e) {
        doc = { Message: "The server answered HTTP " + response.status + " with a body that is not JSON." };
      }
    }
    return { status: response.status, doc, headers: response.headers };
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function facts(pairs) {
    const dl = el("dl", { class: "facts" });
    for (const [name, value] of pairs) {
      if (value === undefined || value === null || value === "") continue;
      dl.append(el("dt", null, name), el("dd", null, String(value)));
    }
    return dl;
  }

  // ------------------------------------------------------------------
  // Field errors: next to the field err.field names.

  function clearFieldErrors() {
    for (const p of document.querySelectorAll(".field-error")) {
      p.hidden = true;
      p.textContent = "";
    }
    for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  function showFieldError(field, message) {
    if (field === "SenderAddress") field = "SenderAccount";
    // A secret taken from a provider is refused for its parameter.
    const input = isSecretField(field) && sourceOf(field) === "provider" ? $(field + "-parameter") : $(field);
    const slot = $(field + "-error");
    if (!input || !slot || input.closest("[hidden]")) return false;
    slot.textContent = message;
    slot.hidden = false;
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return true;
  }

  // ------------------------------------------------------------------
  // The profile form.

  function showAuthFields() {
    const type = $("RelayAuthenticationType").value;
    for (const node of document.querySelectorAll("[data-auth]")) {
      node.hidden = !node.dataset.auth.split(" ").includes(type);
    }
    $("RelayUsername-label").textContent = type === "3" ? "Mailbox (RelayUsername)" : "Relay user name";
  }

  function isReference(secret) {
    return secret !== null && typeof secret === "object" && secret.Provider !== null && secret.Provider !== undefined;
  }

  // "from provider 2 (Name SMTP_USER)": where, never what.
  function describeReference(ref) {
    const [param, where] = Object.entries(ref.Parameters || {})[0] || [];
    return "from provider " + ref.Provider + (param ? " (" + param + " " + where + ")" : "");
  }

  // ------------------------------------------------------------------
  // RelayPassword and ClientSecret: a value typed here (empty keeps the
  // stored one), or, where the server has providers, a reference to one.

  function isSecretField(name) {
    return Object.values(SECRET_OF_TYPE).includes(name);
  }

  // "1=file, 2=env" --> [{ id: 1, type: "file" }, { id: 2, type: "env" }].
  function parseProviders(header) {
    const list = [];
    for (const part of (header || "").split(",")) {
      const m = /^\s*(\d+)\s*=\s*([\w-]+)\s*$/.exec(part);
      if (m) list.push({ id: Number(m[1]), type: m[2] });
    }
    return list;
  }

  function providerById(id) {
    return providers.find((p) => p.id === id) || null;
  }

  function sourceOf(name) {
    return providers.length > 0 && $(name + "-source-provider").checked ? "provider" : "value";
  }

  // The parameter the chosen provider takes; for one the server no longer
  // has, the one the stored reference gives.
  function parameterOf(name) {
    const id = Number($(name + "-provider").value);
    const p = providerById(id);
    if (p) return PARAMETER_OF_TYPE[p.type] || "Name";
    const stored = storedSecrets[name];
    const given = isReference(stored) && stored.Provider === id ? Object.keys(stored.Parameters)[0] : null;
    return given || "Name";
  }

  function secretHint(name) {
    const what = name === "ClientSecret" ? "client secret" : "password";
    const stored = storedSecrets[name];
    const fromProvider = sourceOf(name) === "provider";
    if (!stored) return "None is stored yet.";
    if (stored === "value") {
      const said = "A " + what + " is stored; it is never shown.";
      if (!canModify) return said;
      return said + (fromProvider ? " Saving a provider reference replaces it." : " Leave this empty to keep it, or type a new one.");
    }
    const p = providerById(stored.Provider);
    const [param, where] = Object.entries(stored.Parameters)[0] || [];
    const said = "The " + what + " is read from provider " + stored.Provider + " (" + (p ? p.type : "not configured now") + ")"
      + (param ? ", " + param + " " + where : "") + ", when it is needed; its value is never shown.";
    if (!canModify || fromProvider) return said;
    return said + " Leave this empty to keep that reference, or type a " + what + " to store instead.";
  }

  // Shows the controls of the chosen source, the parameter's name, and
  // the hint that goes with both.
  function showSource(name) {
    const fromProvider = sourceOf(name) === "provider";
    $(name).hidden = fromProvider;
    $(name + "-reference").hidden = !fromProvider;
    const param = parameterOf(name);
    $(name + "-parameter-label").textContent = param;
    $(name + "-parameter-hint").textContent = PARAMETER_HINT[param] || "";
    $(name + "-stored").textContent = secretHint(name);
  }

  function fillStoredSecret(name, stored) {
    storedSecrets[name] = stored;
    const ref = isReference(stored) ? stored : null;
    const select = $(name + "-provider");
    const options = providers.map((p) => el("option", { value: String(p.id) }, p.id + " (" + p.type + ")"));
    // A reference to a provider the server has no more still shows.
    if (ref && !providerById(ref.Provider)) {
      options.push(el("option", { value: String(ref.Provider) }, ref.Provider + " (not configured now)"));
    }
    select.replaceChildren(...options);
    if (ref) select.value = String(ref.Provider);
    $(name + "-parameter").value = ref ? Object.values(ref.Parameters)[0] || "" : "";
    $(name + "-source-" + (ref && providers.length > 0 ? "provider" : "value")).checked = true;
    $(name + "-source").hidden = providers.length === 0;
    $(name).value = "";
    $(name).placeholder = stored ? "(stored, unchanged)" : "";
    showSource(name);
  }

  function showStoredSecrets(profile) {
    for (const [type, name] of Object.entries(SECRET_OF_TYPE)) {
      const secret = profile[name];
      const stored = isReference(secret) ? { Provider: secret.Provider, Parameters: secret.Parameters || {} }
        : profile.RelayAuthenticationType === Number(type) ? "value" : null;
      fillStoredSecret(name, stored);
    }
  }

  // The secret as the request sends it: a reference, a typed value, or
  // nothing (keep the stored one, which the API does by itself).
  function secretOf(name) {
    if (sourceOf(name) === "provider") {
      return { Provider: Number($(name + "-provider").value), Parameters: { [parameterOf(name)]: $(name + "-parameter").value.trim() } };
    }
    return $(name).value !== "" ? { SecretValue: $(name).value } : undefined;
  }

  // ------------------------------------------------------------------
  // RelayUsername and ClientId: shown, or where they live.

  function fillShownSecret(name, secret) {
    const input = $(name);
    const ref = isReference(secret) ? { Provider: secret.Provider, Parameters: secret.Parameters || {} } : null;
    if (ref) shownReferences[name] = ref; else delete shownReferences[name];
    input.value = ref ? describeReference(ref) : (secret && typeof secret === "object" ? secret.SecretValue || "" : secret || "");
    // Read-only while it stands for the reference: an edit would be taken
    // for a value.
    input.readOnly = ref !== null || !canModify;
    input.toggleAttribute("data-reference", ref !== null);
    $(name + "-replace").hidden = ref === null || !canModify;
  }

  function shownSecret(name) {
    return shownReferences[name] || { SecretValue: $(name).value.trim() };
  }

  function replaceShownReference(name) {
    delete shownReferences[name];
    const input = $(name);
    input.removeAttribute("data-reference");
    input.readOnly = false;
    input.value = "";
    $(name + "-replace").hidden = true;
    input.focus();
  }

  // ------------------------------------------------------------------
  // The whole form.

  // RequestHeaders as text, one "Name: Value" a line, and back. A line
  // without a colon is a name with an empty value; the API judges both.
  function headersText(list) {
    return (list || []).map((h) => h.Name + ": " + h.Value).join("\n");
  }

  function headersList(text) {
    const list = [];
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.trim();
      if (line === "") continue;
      const colon = line.indexOf(":");
      list.push(colon < 0 ? { Name: line, Value: "" }
        : { Name: line.slice(0, colon).trim(), Value: line.slice(colon + 1).trim() });
    }
    return list;
  }

  function fill(profile) {
    for (const name of TEXT_FIELDS) $(name).value = profile[name] || "";
    $("RequestHeaders").value = headersText(profile.RequestHeaders);
    for (const name of SHOWN_SECRETS) fillShownSecret(name, profile[name]);
    $("Port").value = String(profile.Port);
    $("UseSSL").checked = profile.UseSSL === true;
    $("RelayAuthenticationType").value = String(profile.RelayAuthenticationType);
    showStoredSecrets(profile);
    showAuthFields();
  }

  // The request body, from the form.
  function collect() {
    const type = Number($("RelayAuthenticationType").value);
    const port = $("Port").value.trim();
    const req = {
      Host: $("Host").value.trim(),
      Port: /^\d{1,5}$/.test(port) ? Number(port) : port,
      UseSSL: $("UseSSL").checked,
      SenderName: $("SenderName").value,
      SenderAccount: $("SenderAccount").value.trim(),
      RelayAuthenticationType: type,
      RelayUsername: type === 0 ? { SecretValue: "" } : shownSecret("RelayUsername"),
    };
    if (type === 3) {
      req.ClientId = shownSecret("ClientId");
      for (const name of ["TokenEndpoint", "Scope", "Audience"]) req[name] = $(name).value.trim();
      req.RequestHeaders = headersList($("RequestHeaders").value);
    }
    const secret = SECRET_OF_TYPE[type] && secretOf(SECRET_OF_TYPE[type]);
    if (secret) req[SECRET_OF_TYPE[type]] = secret;
    return req;
  }

  function setStatus(node, text, kind) {
    node.textContent = text;
    node.classList.toggle("good", kind === "good");
    node.classList.toggle("bad", kind === "bad");
  }

  function setReadOnly(readOnly) {
    for (const input of $("profile").querySelectorAll("input, textarea")) {
      if (input.type === "checkbox" || input.type === "radio") input.disabled = readOnly;
      else input.readOnly = readOnly || input.hasAttribute("data-reference");
    }
    for (const name of SHOWN_SECRETS) $(name + "-replace").hidden = readOnly || !shownReferences[name];
    for (const select of $("profile").querySelectorAll("select")) select.disabled = readOnly;
    $("save-actions").hidden = readOnly;
    $("read-only-note").hidden = !readOnly;
    $("test-section").hidden = readOnly;
  }

  async function load() {
    const r = await call("GET", "/SMTP");
    if (r.status !== 200) return r;
    const granted = (r.headers.get("X-Kfsmtp-Permissions") || "").split(" ");
    canModify = granted.includes(MODIFY);
    providers = parseProviders(r.headers.get("X-Kfsmtp-Secret-Providers"));
    fill(r.doc);
    return r;
  }

  // ------------------------------------------------------------------
  // Signing in and out.

  async function signIn(event) {
    event.preventDefault();
    const problem = $("sign-in-problem");
    const user = $("sign-in-user").value.trim();
    const password = $("sign-in-password").value;
    if (user === "" || password === "") {
      problem.textContent = "Type the user name and the password.";
      problem.hidden = false;
      $(user === "" ? "sign-in-user" : "sign-in-password").focus();
      return;
    }
    authorization = basicAuthorization(user, password);
    $("sign-in-button").disabled = true;
    const r = await load();
    $("sign-in-button").disabled = false;
    if (r.status !== 200) {
      authorization = null;
      problem.textContent = r.status === 401 ? "The user name or the password is wrong."
        : r.status === 403 ? "This user may not view the SMTP settings: it needs the permission /system_settings/read/."
          : (r.doc.Message || ("The server answered HTTP " + r.status + "."));
      problem.hidden = false;
      $("sign-in-password").focus();
      return;
    }
    problem.hidden = true;
    $("sign-in-password").value = "";
    $("who-name").textContent = user;
    $("who").hidden = false;
    $("sign-in-section").hidden = true;
    $("settings-section").hidden = false;
    setReadOnly(!canModify);
    $("Host").focus();
  }

  function signOut() {
    authorization = null;
    canModify = false;
    shownReferences = {};
    providers = [];
    clearFieldErrors();
    $("profile").reset();
    for (const name of Object.values(SECRET_OF_TYPE)) fillStoredSecret(name, null);
    for (const name of SHOWN_SECRETS) fillShownSecret(name, null);
    $("test").reset();
    $("result").hidden = true;
    $("result").replaceChildren();
    setStatus($("save-status"), "");
    $("who").hidden = true;
    $("settings-section").hidden = true;
    $("test-section").hidden = true;
    $("sign-in-section").hidden = false;
    $("sign-in-user").focus();
  }

  // ------------------------------------------------------------------
  // Saving.

  async function save(event) {
    event.preventDefault();
    clearFieldErrors();
    const status = $("save-status");
    setStatus(status, "Saving…");
    $("save").disabled = true;
    const r = await call("PUT", "/SMTP", collect());
    $("save").disabled = false;
    if (r.status === 200) {
      fill(r.doc);
      setStatus(status, "Saved.", "good");
      return;
    }
    if (r.status === 401) return expired();
    const details = r.doc.Details || {};
    setStatus(status, "Not saved: " + (r.doc.Message || ("HTTP " + r.status)), "bad");
    if (details.field) showFieldError(details.field, r.doc.Message);
  }

  function expired() {
    signOut();
    const problem = $("sign-in-problem");
    problem.textContent = "The server no longer accepts these credentials: sign in again.";
    problem.hidden = false;
  }

  // ------------------------------------------------------------------
  // Testing.

  function tlsFacts(tls) {
    if (!tls || tls.mode === "none") {
      return [el("h3", null, "TLS"), el("p", null, "No TLS: the conversation, and any credentials, crossed the network in clear text.")];
    }
    const cert = tls.cert || {};
    return [
      el("h3", null, "TLS"),
      facts([
        ["Mode", tls.mode === "implicit" ? "implicit TLS (from the first byte)" : "STARTTLS"],
        ["Version", tls.version],
        ["Certificate", tls.verified ? "verified (chain and host name)" : "NOT verified"],
        ["Subject", cert.subject],
        ["Issuer", cert.issuer],
        ["Names", (cert.names || []).join(", ")],
        ["Expires", cert.not_after],
        ["SHA-256", cert.sha256],
      ]),
    ];
  }

  function transcriptOf(lines) {
    if (!lines || lines.length === 0) return null;
    return el("details", null,
      el("summary", null, "Transcript (" + lines.length + " lines, secrets shown as ***)"),
      el("pre", { class: "transcript" }, lines.join("\n")));
  }

  function showSuccess(info, quitAfter) {
    const t = info.timings || {};
    const parts = [];
    if (quitAfter) {
      parts.push(el("h3", null, "Check passed: stopped after " + quitAfter + ", no email was sent"));
    } else {
      parts.push(el("h3", null, "Test email accepted by the relay"));
      parts.push(el("p", null, "Accepted is not delivered: if it does not arrive, the relay's own logs say why."));
    }
    parts.push(facts([
      ["Relay reply", info.reply],
      ["Message-ID", info.message_id],
      ["Queue ID", info.queue_id],
      ["Greeting", info.greeting],
      ["Authentication", info.auth_mechanism],
      ["Offered", (info.auth_mechanisms_offered || []).join(" ")],
    ]));
    parts.push(el("h3", null, "Timings"));
    // A phase that did not happen (no TLS, no AUTH) is left out.
    const ms = (x) => (x ? (Math.round(x * 10) / 10) + " ms" : "");
    parts.push(facts([
      ["Connect", ms(t.connect)],
      ["TLS", ms(t.tls)],
      ["Authentication", ms(t.auth)],
      ["Delivery", ms(t.delivery)],
      ["Total", ms(t.total)],
    ]));
    parts.push(...tlsFacts(info.tls));
    if (info.warnings && info.warnings.length) {
      parts.push(el("h3", null, "Warnings"), el("ul", null, ...info.warnings.map((w) => el("li", null, w))));
    }
    parts.push(transcriptOf(info.transcript));
    return parts;
  }

  function showFailure(status, doc) {
    const d = doc.Details || {};
    const stage = d.stage ? (STAGES[d.stage] || d.stage) : null;
    const reply = [d.smtp_code, d.enhanced_code].filter((x) => x).join(" ");
    // A 4xx refusal (greylisting, limits, a queue in trouble) is for now:
    // said first, so that nobody changes settings that are right.
    const parts = [
      el("h3", null, (d.temporary ? "Temporary failure at: " : "Test failed at: ") + (stage || "the server")),
      d.temporary ? el("p", { class: "temporary" }, "The server refused for now, not for good: test again later before changing anything.") : null,
      el("p", { class: "fix" }, doc.Message || ("HTTP " + status)),
      facts([
        ["Stage", d.stage],
        ["Server code", reply],
        ["Server reply", d.smtp_reply],
        ["Token endpoint", d.http_status ? "HTTP " + d.http_status + (d.error ? " " + d.error : "") : ""],
        ["Endpoint says", d.error_description],
        ["Library", d.detail],
        ["ErrorCode", doc.ErrorCode],
        ["HTTP status", status],
      ]),
      transcriptOf(d.transcript),
    ];
    return parts;
  }

  async function runTest(quitAfter) {
    clearFieldErrors();
    const result = $("result");
    const req = collect();
    req.TestRecipient = $("TestRecipient").value.trim();
    if (quitAfter) req.QuitAfter = quitAfter;
    for (const id of ["send-test", "check"]) $(id).disabled = true;
    result.hidden = false;
    result.className = "result";
    result.replaceChildren(el("p", null, quitAfter ? "Checking…" : "Sending the test email…"));
    const r = await call("POST", "/SMTP/Test", req);
    for (const id of ["send-test", "check"]) $(id).disabled = false;
    if (r.status === 401) return expired();
    if (r.status === 200) {
      result.className = "result good";
      result.replaceChildren(...showSuccess(r.doc.Details || {}, quitAfter).filter((x) => x));
    } else {
      result.className = (r.doc.Details || {}).temporary ? "result temporary" : "result bad";
      result.replaceChildren(...showFailure(r.status, r.doc).filter((x) => x));
      const field = (r.doc.Details || {}).field;
      if (field && showFieldError(field, r.doc.Message)) return;
    }
    result.focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in").addEventListener("submit", signIn);
    $("sign-out").addEventListener("click", signOut);
    $("profile").addEventListener("submit", save);
    $("reload").addEventListener("click", async () => {
      clearFieldErrors();
      const r = await load();
      if (r.status === 401) return expired();
      setStatus($("save-status"), r.status === 200 ? "Showing the stored settings." : ("Could not load: " + (r.doc.Message || r.status)), r.status === 200 ? null : "bad");
    });
    $("RelayAuthenticationType").addEventListener("change", showAuthFields);
    for (const name of SHOWN_SECRETS) $(name + "-replace").addEventListener("click", () => replaceShownReference(name));
    for (const name of Object.values(SECRET_OF_TYPE)) {
      for (const id of [name + "-source-value", name + "-source-provider", name + "-provider"]) {
        $(id).addEventListener("change", () => showSource(name));
      }
    }
    $("test").addEventListener("submit", (event) => { event.preventDefault(); runTest(null); });
    $("check").addEventListener("click", () => runTest($("QuitAfter").value));
    showAuthFields();
    $("sign-in-user").focus();
  });
})();
