// Drives the SMTP configuration page in Debian's chromium for
// spec/page_spec.lua: runs one scenario as a person would (labels, roles,
// keyboard), writes a screenshot of each state it reaches, and prints what
// it observed as JSON for the spec to assert on.
//   node browser/page.mjs SCENARIO CONFIG.json
// CONFIG: { url, artifacts, admin: [user, password], reader: [...], ... }
import { chromium } from "playwright-core";
import { readFileSync } from "node:fs";

const [scenario, configPath] = process.argv.slice(2);
const cfg = JSON.parse(readFileSync(configPath, "utf8"));

// What these machines need: no sandbox as root, and nothing that reaches
// for Google's servers through a closed network.
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

async function shot(page, out, name) {
  const path = `${cfg.artifacts}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  out.screenshots.push(path);
}

async function signIn(page, [user, password]) {
  await page.goto(cfg.url);
  await page.getByLabel("User name", { exact: true }).fill(user);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function signedIn(page) {
  await page.getByRole("heading", { name: "Mail settings" }).waitFor();
}

async function openAs(page, credentials) {
  await signIn(page, credentials);
  await signedIn(page);
}

async function fieldValues(page) {
  return page.evaluate(() => {
    const v = {};
    for (const el of document.querySelectorAll("#profile input, #profile select")) {
      v[el.id] = el.type === "checkbox" ? el.checked : el.value;
    }
    return v;
  });
}

async function result(page) {
  const box = page.locator("#result.good, #result.bad, #result.temporary");
  await box.waitFor();
  const cls = await box.getAttribute("class");
  return {
    kind: ["good", "temporary", "bad"].find((k) => cls.includes(k)),
    heading: await box.locator("h3").first().textContent(),
    text: await box.innerText(),
  };
}

// Does anything stick out of the screen, and has every control shown a
// label?
async function layout(page, out) {
  out.widths = await page.evaluate(() => ({ viewport: window.innerWidth, document: document.documentElement.scrollWidth }));
  out.unnamed = await page.evaluate(() => [...document.querySelectorAll("input, select, textarea, button")]
    .filter((el) => !el.closest("[hidden]"))
    .filter((el) => el.labels ? el.labels.length === 0 && el.tagName !== "BUTTON" : false)
    .map((el) => el.id));
}

// The field of a secret (RelayPassword, ClientSecret): its controls are
// found by their labels inside it, as a person reads them there.
function secretField(page, name) {
  return page.locator(".field", { has: page.locator(`#${name}`) });
}

// What a secret's field shows: where the secret comes from and the hint.
async function secretShown(page, name) {
  return page.evaluate((n) => {
    const $ = (id) => document.getElementById(id);
    const visible = (node) => node.getClientRects().length > 0;
    return {
      choice_visible: visible($(`${n}-source`)),
      from_provider: $(`${n}-source-provider`).checked,
      value_visible: visible($(n)),
      value: $(n).value,
      provider: $(`${n}-provider`).value,
      provider_text: $(`${n}-provider`).selectedOptions[0] ? $(`${n}-provider`).selectedOptions[0].textContent : "",
      parameter_label: $(`${n}-parameter-label`).textContent,
      parameter: $(`${n}-parameter`).value,
      hint: $(`${n}-stored`).textContent,
    };
  }, name);
}

// Chooses "From provider" for a secret, picks the provider by its text
// ("2 (env)") and types the parameter the page labels for it.
async function fromProvider(page, name, provider, parameter, value) {
  const field = secretField(page, name);
  await field.getByLabel("From provider").check();
  await field.getByLabel("Provider", { exact: true }).selectOption({ label: provider });
  await field.getByLabel(parameter, { exact: true }).fill(value);
}

// Signs in as the administrator, lets edit change the form, sends a test
// email to cfg.recipient and records the result box.
async function sendTest(page, out, edit) {
  await openAs(page, cfg.admin);
  if (edit) await edit();
  await page.getByLabel("Recipient").fill(cfg.recipient);
  await page.getByRole("button", { name: "Send test email" }).click();
  out.result = await result(page);
}

const SCENARIOS = {
  // Fill every field of a username/password profile, save, reload the
  // page, sign in again and read the form back.
  async "edit-save-reload"(page, out) {
    await openAs(page, cfg.admin);
    await shot(page, out, "01-loaded");
    await page.getByLabel("Host", { exact: true }).fill(cfg.profile.Host);
    await page.getByLabel("Port", { exact: true }).fill(String(cfg.profile.Port));
    await page.getByLabel("Use SSL/TLS").setChecked(cfg.profile.UseSSL);
    await page.getByLabel("Sender name").fill(cfg.profile.SenderName);
    await page.getByLabel("Sender account").fill(cfg.profile.SenderAccount);
    await page.getByLabel("Authentication", { exact: true }).selectOption("2");
    await page.getByLabel("Relay user name").fill(cfg.profile.RelayUsername);
    await page.getByLabel("Relay password").fill(cfg.profile.RelayPassword);
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status.good").waitFor();
    out.save_status = await page.locator("#save-status").textContent();
    await shot(page, out, "02-saved");
    await page.reload();
    await openAs(page, cfg.admin);
    out.after_reload = await fieldValues(page);
    out.password_hint = await page.locator("#RelayPassword-stored").textContent();
    out.password = await secretShown(page, "RelayPassword");
    out.radios_visible = await page.getByRole("radio").filter({ visible: true }).count();
    out.html = await page.content();
    await shot(page, out, "03-reloaded");
  },

  // Microsoft 365 style: OAuth client credentials, saved, then tested.
  async "oauth"(page, out) {
    await openAs(page, cfg.admin);
    await page.getByLabel("Authentication", { exact: true }).selectOption("3");
    await page.getByLabel("Host", { exact: true }).fill(cfg.profile.Host);
    await page.getByLabel("Port", { exact: true }).fill(String(cfg.profile.Port));
    await page.getByLabel("Use SSL/TLS").setChecked(true);
    await page.getByLabel("Sender account").fill(cfg.profile.SenderAccount);
    await page.getByLabel("Mailbox (RelayUsername)").fill(cfg.profile.RelayUsername);
    await page.getByLabel("Client ID").fill(cfg.profile.ClientId);
    await page.getByLabel("Client secret").fill(cfg.profile.ClientSecret);
    await page.getByLabel("Token endpoint").fill(cfg.profile.TokenEndpoint);
    await page.getByLabel("Scope").fill(cfg.profile.Scope);
    out.password_field_visible = await page.getByLabel("Relay password").isVisible();
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status.good").waitFor();
    await page.reload();
    await openAs(page, cfg.admin);
    out.after_reload = await fieldValues(page);
    out.secret_hint = await page.locator("#ClientSecret-stored").textContent();
    out.client_secret = await secretShown(page, "ClientSecret");
    await page.getByLabel("Recipient").fill(cfg.recipient);
    await page.getByRole("button", { name: "Send test email" }).click();
    out.result = await result(page);
    out.html = await page.content();
    await shot(page, out, "10-oauth-tested");
  },

  // OAuth's extra token request headers, one "Name: Value" a line: one
  // the API refuses is shown under the box; good ones come back after a
  // reload.
  async "request-headers"(page, out) {
    await openAs(page, cfg.admin);
    const box = page.getByLabel("Token request headers");
    out.loaded = await box.inputValue();
    await box.fill(cfg.bad_headers);
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#RequestHeaders-error:not([hidden])").waitFor();
    out.headers_error = await page.locator("#RequestHeaders-error").textContent();
    out.invalid = await box.getAttribute("aria-invalid");
    out.focused = await page.evaluate(() => document.activeElement.id);
    await shot(page, out, "17-request-headers-refused");
    await box.fill(cfg.good_headers);
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status.good").waitFor();
    await page.reload();
    await openAs(page, cfg.admin);
    out.after_reload = await page.getByLabel("Token request headers").inputValue();
    await shot(page, out, "18-request-headers-saved");
  },

  // A value the API refuses: the message sits next to the field it names.
  async "field-error"(page, out) {
    await openAs(page, cfg.admin);
    await page.getByLabel("Port", { exact: true }).fill("70000");
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#Port-error:not([hidden])").waitFor();
    out.port_error = await page.locator("#Port-error").textContent();
    out.port_invalid = await page.getByLabel("Port", { exact: true }).getAttribute("aria-invalid");
    out.focused = await page.evaluate(() => document.activeElement.id);
    out.save_status = await page.locator("#save-status").textContent();
    await shot(page, out, "04-field-error");
  },

  async "test-success"(page, out) {
    await sendTest(page, out);
    await page.getByText(/^Transcript \(/).click();
    out.transcript_visible = await page.locator("pre.transcript").isVisible();
    out.transcript = await page.locator("pre.transcript").textContent();
    out.message_id = await page.locator("dl.facts dt:text-is('Message-ID') + dd").textContent();
    await shot(page, out, "05-test-sent");
  },

  async "test-auth-refused"(page, out) {
    await sendTest(page, out, () => page.getByLabel("Relay password").fill(cfg.wrong_password));
    out.html = await page.content();
    await page.getByText(/^Transcript \(/).click();
    await shot(page, out, "06-test-auth-refused");
  },

  // A relay that greylists: the page must say "for now", not "failed".
  async "test-greylisted"(page, out) {
    await sendTest(page, out);
    await shot(page, out, "06b-test-greylisted");
  },

  async "check-without-sending"(page, out) {
    await openAs(page, cfg.admin);
    await page.getByLabel("Recipient").fill(cfg.recipient);
    await page.getByLabel("Check without sending, up to").selectOption("rcpt");
    await page.getByRole("button", { name: "Check without sending" }).click();
    out.result = await result(page);
    await shot(page, out, "07-checked");
  },

  async "read-only"(page, out) {
    await openAs(page, cfg.reader);
    out.values = await fieldValues(page);
    out.note_visible = await page.locator("#read-only-note").isVisible();
    out.save_visible = await page.getByRole("button", { name: "Save" }).isVisible();
    out.test_visible = await page.getByRole("button", { name: "Send test email" }).isVisible();
    out.host_readonly = await page.getByLabel("Host", { exact: true }).getAttribute("readonly");
    out.auth_disabled = await page.getByLabel("Authentication", { exact: true }).isDisabled();
    out.password_hint = await page.locator("#RelayPassword-stored").textContent();
    out.password = await secretShown(page, "RelayPassword");
    out.password_controls_disabled = await page.evaluate(() => ["RelayPassword-source-value", "RelayPassword-source-provider",
      "RelayPassword-provider"].every((id) => document.getElementById(id).disabled) && document.getElementById("RelayPassword-parameter").readOnly);
    await shot(page, out, cfg.shot || "08-read-only");
  },

  // Only the keyboard, on a 360 px wide screen: sign in, change a field,
  // save. Then: does anything stick out, and has every control a name?
  async "keyboard-360"(page, out) {
    await page.goto(cfg.url);
    // The user field has the focus when the page opens.
    await page.keyboard.type(cfg.admin[0]);
    await page.keyboard.press("Tab");
    await page.keyboard.type(cfg.admin[1]);
    await page.keyboard.press("Enter");
    await signedIn(page);
    out.focused_after_sign_in = await page.evaluate(() => document.activeElement.id);
    await page.keyboard.press("ControlOrMeta+a");
    await page.keyboard.type(cfg.new_host);
    let tabs = 0;
    while (tabs < 40 && await page.evaluate(() => document.activeElement.id) !== "save") {
      await page.keyboard.press("Tab");
      tabs += 1;
    }
    out.tabs_to_save = tabs;
    await page.keyboard.press("Enter");
    await page.locator("#save-status.good").waitFor();
    out.save_status = await page.locator("#save-status").textContent();
    await layout(page, out);
    await shot(page, out, "09-keyboard-360");
  },

  // A server with secret providers (cfg.url is its page): the relay user
  // name is stored as a reference already; the administrator points the
  // password at an environment variable, saves, reloads, and tests.
  async "provider-env"(page, out) {
    await openAs(page, cfg.admin);
    out.username = await page.getByLabel("Relay user name").inputValue();
    out.username_readonly = await page.getByLabel("Relay user name").getAttribute("readonly");
    out.before = await secretShown(page, "RelayPassword");
    await fromProvider(page, "RelayPassword", "2 (env)", "Name", cfg.env_name);
    out.chosen = await secretShown(page, "RelayPassword");
    await shot(page, out, "11-provider-env-chosen");
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status.good").waitFor();
    out.save_status = await page.locator("#save-status").textContent();
    await page.reload();
    await openAs(page, cfg.admin);
    out.after_reload = await secretShown(page, "RelayPassword");
    out.username_after_reload = await page.getByLabel("Relay user name").inputValue();
    await shot(page, out, "12-provider-env-reloaded");
    await page.getByLabel("Recipient").fill(cfg.recipient);
    await page.getByRole("button", { name: "Send test email" }).click();
    out.result = await result(page);
    out.html = await page.content();
    await shot(page, out, "13-provider-env-tested");
  },

  // A file provider: a path outside its folder is refused next to the
  // password's controls; a good one is saved and shown after a reload.
  // The user name, a reference, becomes a typed value on the way.
  async "provider-file"(page, out) {
    await openAs(page, cfg.admin);
    await page.getByRole("button", { name: "Type a user name instead" }).click();
    out.focused_after_replace = await page.evaluate(() => document.activeElement.id);
    await page.getByLabel("Relay user name").fill(cfg.username);
    await fromProvider(page, "RelayPassword", "1 (file)", "Path", cfg.outside_path);
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#RelayPassword-error:not([hidden])").waitFor();
    out.password_error = await page.locator("#RelayPassword-error").textContent();
    out.invalid = await secretField(page, "RelayPassword").getByLabel("Path", { exact: true }).getAttribute("aria-invalid");
    out.focused = await page.evaluate(() => document.activeElement.id);
    out.save_status = await page.locator("#save-status").textContent();
    await layout(page, out);
    await shot(page, out, "14-provider-file-refused");
    await secretField(page, "RelayPassword").getByLabel("Path", { exact: true }).fill(cfg.file_path);
    await page.getByRole("button", { name: "Save" }).click();
    await page.locator("#save-status.good").waitFor();
    await page.reload();
    await openAs(page, cfg.admin);
    out.after_reload = await secretShown(page, "RelayPassword");
    out.username_after_reload = await page.getByLabel("Relay user name").inputValue();
    out.username_readonly = await page.getByLabel("Relay user name").getAttribute("readonly");
    out.replace_visible = await page.getByRole("button", { name: "Type a user name instead" }).isVisible();
    await shot(page, out, "15-provider-file-reloaded");
  },

  // A reference the server cannot read at test time: the stage says so,
  // and the message sits next to the reference.
  async "provider-unreadable"(page, out) {
    await sendTest(page, out, () => fromProvider(page, "RelayPassword", "2 (env)", "Name", cfg.env_name));
    out.password_error = await page.locator("#RelayPassword-error").textContent();
    await shot(page, out, "16-provider-unreadable");
  },

  async "wrong-password"(page, out) {
    await signIn(page, [cfg.admin[0], "not-the-password"]);
    const problem = page.locator("#sign-in-problem");
    await problem.waitFor();
    out.problem = await problem.textContent();
    out.settings_visible = await page.locator("#settings-section").isVisible();
    await shot(page, out, "00-wrong-password");
  },
};

const out = { scenario, screenshots: [], console_errors: [], dialogs: [] };
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
try {
  const context = await browser.newContext({ viewport: { width: cfg.width || 1024, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  // An API answer of 4xx/5xx is one the page shows; chromium logs it as
  // an error anyway. Any other error on the console is the page's fault.
  page.on("console", (m) => {
    const api = /\/SMTP(\/Test)?$/.test(m.location().url || "");
    if (m.type() === "error" && !(api && m.text().startsWith("Failed to load resource"))) {
      out.console_errors.push(`${m.text()} (${m.location().url})`);
    }
  });
  page.on("pageerror", (e) => out.console_errors.push(String(e)));
  page.on("dialog", (d) => { out.dialogs.push(d.message()); d.dismiss(); });
  const run = SCENARIOS[scenario];
  if (!run) throw new Error(`no scenario ${scenario}`);
  await run(page, out);
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
