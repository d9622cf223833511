-- The browser page ({base}/Portal/) in Debian's chromium, driven by
-- playwright-core (browser/page.mjs) against the real nginx, store and a
-- STARTTLS capture server with AUTH. Screenshots of every state land in
-- artifacts/page/. Tag #browser: run once, in the Lua 5.4 pass (nginx runs
-- its own LuaJIT whatever busted runs under).
local kfsmtp = require "kfsmtp"
local H = require "helpers"
local cjson = require "cjson"

local ADMIN = { "CORP\\admin", "admin-Passw0rd" }
local READER = { "reader", "reader-Passw0rd" }
local RELAY_USER, RELAY_PASSWORD = "svc-mail", "Relay-Page-Secret-42"
local ARTIFACTS = (os.getenv("PWD") or ".") .. "/artifacts/page"

describe("the SMTP configuration page #browser", function()
  local smtp, srv, url
  setup(function()
    H.sh("mkdir -p " .. H.q(ARTIFACTS))
    smtp = H.start_smtp { mode = "starttls", auth = RELAY_USER .. ":" .. RELAY_PASSWORD }
    srv = H.start_nginx { workers = 1, extra = ("ca_file = %q,"):format(H.certs().ca),
      users = { { ADMIN[1], ADMIN[2], { "all" } }, { READER[1], READER[2], { "read" } } } }
    url = ("http://127.0.0.1:%d/KeyfactorAPI/Portal/"):format(srv.port)
  end)
  teardown(function()
    srv:stop()
    smtp:stop()
  end)

  -- The profile that reaches the capture server, as a person would type it.
  local function relay_profile()
    return { Host = "localhost", Port = smtp.port, UseSSL = true, SenderName = "Keyfactor Command",
      SenderAccount = "keyfactor@example.com", RelayAuthenticationType = 2,
      RelayUsername = RELAY_USER, RelayPassword = RELAY_PASSWORD }
  end

  local function store(profile, server, opts)
    assert(kfsmtp.open((server or srv).store):update(profile, opts))
  end

  local function browse(scenario, extra)
    local cfg = { url = url, artifacts = ARTIFACTS, admin = ADMIN, reader = READER }
    for k, v in pairs(extra or {}) do cfg[k] = v end
    local path = H.tmpdir() .. "/config.json"
    H.write(path, cjson.encode(cfg))
    local out = H.sh(("%snode browser/page.mjs %s %s"):format(H.plain, scenario, H.q(path)))
    local ok, seen = pcall(cjson.decode, out:match("[^\n]*$") ~= "" and out:match("[^\n]*$") or out)
    assert(ok and type(seen) == "table", "browser/page.mjs printed no JSON: " .. out)
    assert.is_nil(seen.error, seen.error)
    assert.are.same({}, seen.console_errors)
    assert.are.same({}, seen.dialogs)
    assert.truthy(#seen.screenshots > 0)
    for _, shot in ipairs(seen.screenshots) do assert.truthy(H.exists(shot), shot) end
    return seen
  end

  -- The result box: good or bad, its heading, and facts it must name.
  local function shows(seen, kind, heading, facts)
    assert.are.equal(kind, seen.result.kind, seen.result.text)
    assert.truthy(seen.result.heading:find(heading, 1, true), seen.result.heading)
    for _, fact in ipairs(facts or {}) do
      assert.truthy(seen.result.text:find(fact, 1, true), fact .. " in " .. seen.result.text)
    end
  end

  it("refuses a wrong password on its own form, without the browser's login dialog", function()
    local seen = browse("wrong-password")
    assert.are.equal("The user name or the password is wrong.", seen.problem)
    assert.is_false(seen.settings_visible)
  end)

  it("loads the profile, saves every edited field, and shows them again after a reload", function()
    store { Host = "old-relay.example.com", Port = 25, SenderAccount = "old@example.com" }
    local want = relay_profile()
    local seen = browse("edit-save-reload", { profile = want })
    assert.are.equal("Saved.", seen.save_status)
    local v = seen.after_reload
    assert.are.same({ want.Host, tostring(want.Port), true, want.SenderName, want.SenderAccount, "2", want.RelayUsername },
      { v.Host, v.Port, v.UseSSL, v.SenderName, v.SenderAccount, v.RelayAuthenticationType, v.RelayUsername })
    -- Write-only: stored, said to be stored, never sent back to the page.
    assert.are.equal("", v.RelayPassword)
    assert.truthy(seen.password_hint:find("A password is stored", 1, true))
    assert.falsy(seen.html:find(RELAY_PASSWORD, 1, true))
    local doc = cjson.decode(H.read(srv.store))
    assert.are.same({ want.Host, want.Port, want.RelayPassword }, { doc.Host, math.floor(doc.Port), doc.RelayPassword })
    -- This server has no secret providers: no choice of where the
    -- password comes from, only its field, as before.
    assert.is_false(seen.password.choice_visible)
    assert.is_true(seen.password.value_visible)
    assert.are.equal(0, seen.radios_visible)
  end)

  it("configures and tests OAuth client credentials (type 3): fields, stored secret, token, delivery", function()
    local tokens = H.start_token_server("page-app", "page-Client-Secret-9")
    local oauth_smtp = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    finally(function() oauth_smtp:stop() tokens:stop() end)
    store { Host = "old-relay.example.com", SenderAccount = "old@example.com" }
    local want = { Host = "localhost", Port = oauth_smtp.port, SenderAccount = "pki@example.com",
      RelayUsername = "pki@example.com", ClientId = "page-app", ClientSecret = "page-Client-Secret-9",
      TokenEndpoint = tokens.url, Scope = "https://outlook.office365.com/.default" }
    local seen = browse("oauth", { profile = want, recipient = "ops@example.com" })
    assert.is_false(seen.password_field_visible)
    local v = seen.after_reload
    assert.are.same({ "3", want.ClientId, want.TokenEndpoint, want.Scope, "" },
      { v.RelayAuthenticationType, v.ClientId, v.TokenEndpoint, v.Scope, v.ClientSecret })
    assert.truthy(seen.secret_hint:find("A client secret is stored", 1, true))
    assert.are.same({ false, true }, { seen.client_secret.choice_visible, seen.client_secret.value_visible })
    shows(seen, "good", "Test email accepted by the relay", { "OAUTHBEARER" })
    assert.falsy(seen.html:find(want.ClientSecret, 1, true))
    assert.falsy(seen.html:find(tokens:token(), 1, true))
    assert.are.equal("pki@example.com", oauth_smtp:messages()[1].meta.auth_login)
  end)

  it("edits OAuth's token request headers as lines, a refused one shown next to them", function()
    store({ Host = "localhost", Port = smtp.port, UseSSL = true, SenderAccount = "pki@example.com", SenderName = "",
      RelayAuthenticationType = 3, ClientId = "page-app", ClientSecret = { SecretValue = "page-Client-Secret-9" },
      TokenEndpoint = "https://login.example.com/token", Scope = "https://outlook.office365.com/.default",
      RequestHeaders = { { Name = "X-Tenant", Value = "contoso" } } }, nil, { api_version = 2 })
    local seen = browse("request-headers", { bad_headers = "X-Tenant: contoso\nHost: evil.example.com",
      good_headers = "X-Tenant: fabrikam\n\n  X-Subscription :  42  " })
    assert.are.equal("X-Tenant: contoso", seen.loaded)
    assert.truthy(seen.headers_error:find("RequestHeaders[2].Name Host is set by kfsmtp itself", 1, true), seen.headers_error)
    assert.are.same({ "true", "RequestHeaders" }, { seen.invalid, seen.focused })
    assert.are.equal("X-Tenant: fabrikam\nX-Subscription: 42", seen.after_reload)
    assert.are.same({ { Name = "X-Tenant", Value = "fabrikam" }, { Name = "X-Subscription", Value = "42" } },
      cjson.decode(H.read(srv.store)).RequestHeaders)
  end)

  it("shows a refused value next to the field it names", function()
    store(relay_profile())
    local seen = browse("field-error")
    assert.truthy(seen.port_error:find("Port", 1, true), seen.port_error)
    assert.are.equal("true", seen.port_invalid)
    assert.are.equal("Port", seen.focused)
    assert.truthy(seen.save_status:find("^Not saved"))
    assert.are.equal(smtp.port, math.floor(cjson.decode(H.read(srv.store)).Port), "nothing was stored")
  end)

  it("sends a test email and shows the relay's reply, the Message-ID, TLS facts and the transcript", function()
    store(relay_profile())
    local before = #smtp:messages()
    local seen = browse("test-success", { recipient = "pki-team@example.com" })
    shows(seen, "good", "Test email accepted by the relay",
      { "STARTTLS", "verified (chain and host name)", "TLSv1.3", "CN=localhost", "250" })
    assert.is_true(seen.transcript_visible)
    -- The credentials on the AUTH line (SASL initial response), masked.
    assert.truthy(seen.transcript:find("C: AUTH PLAIN ***\nS: 235", 1, true), seen.transcript)
    assert.falsy(seen.transcript:find(RELAY_PASSWORD, 1, true))
    local messages = smtp:messages()
    assert.are.equal(before + 1, #messages)
    assert.truthy(messages[#messages].raw:find("Message-ID: " .. seen.message_id, 1, true), seen.message_id)
    assert.are.same({ "pki-team@example.com" }, messages[#messages].meta.rcpt_tos)
  end)

  it("explains a refused login: the stage, the server's code and the fix", function()
    store(relay_profile())
    local seen = browse("test-auth-refused", { recipient = "pki-team@example.com", wrong_password = "not-" .. RELAY_PASSWORD })
    shows(seen, "bad", "Test failed at: authentication", { "535", "check RelayUsername", "0xA0530050" })
    assert.falsy(seen.html:find(RELAY_PASSWORD, 1, true))
  end)

  it("shows a greylisting refusal as temporary, not as a failure", function()
    local greylisting = H.start_hostile { behaviour = "greylist" }
    finally(function() greylisting:stop() end)
    store { Host = "127.0.0.1", Port = greylisting.port, SenderAccount = "keyfactor@example.com" }
    local seen = browse("test-greylisted", { recipient = "pki-team@example.com" })
    shows(seen, "temporary", "Temporary failure at: recipient", { "test again later", "450", "0xA05300B0",
      "first attempt from a new client is expected to fail" })
  end)

  it("checks without sending: the dialog stops before the message", function()
    store(relay_profile())
    local before = #smtp:messages()
    local seen = browse("check-without-sending", { recipient = "pki-team@example.com" })
    shows(seen, "good", "no email was sent")
    assert.are.equal(before, #smtp:messages())
  end)

  it("shows a reader the profile read-only, with no way to save or test", function()
    store(relay_profile())
    local seen = browse("read-only")
    assert.are.equal("localhost", seen.values.Host)
    assert.is_true(seen.note_visible)
    assert.is_false(seen.save_visible)
    assert.is_false(seen.test_visible)
    assert.are.equal("", seen.host_readonly)
    assert.is_true(seen.auth_disabled)
    assert.are.equal("A password is stored; it is never shown.", seen.password_hint)
  end)

  it("works from the keyboard alone on a 360 px screen, every control labelled", function()
    -- Anonymous: a stored password would have to be typed again for a new
    -- Host (the secret-reuse rule), which is another scenario's business.
    local anonymous = relay_profile()
    anonymous.RelayAuthenticationType, anonymous.RelayPassword = 0, nil
    store(anonymous)
    local seen = browse("keyboard-360", { width = 360, new_host = "relay-by-keyboard.example.com" })
    assert.are.equal("Host", seen.focused_after_sign_in)
    assert.are.equal("Saved.", seen.save_status)
    assert.is_true(seen.tabs_to_save < 40)
    assert.are.equal(360, seen.widths.viewport)
    assert.is_true(seen.widths.document <= 360, "the page is " .. seen.widths.document .. " px wide")
    assert.are.same({}, seen.unnamed)
    assert.are.equal("relay-by-keyboard.example.com", cjson.decode(H.read(srv.store)).Host)
  end)

  describe("with secret providers", function()
    -- UNSET_VAR is one the provider may read, but nginx is not given.
    local USER_VAR, PASSWORD_VAR, UNSET_VAR = "KFSMTP_PAGE_RELAY_USER", "KFSMTP_PAGE_RELAY_PASSWORD", "KFSMTP_PAGE_UNSET"
    local ENV_PASSWORD = "Env-Relay-Secret-77"
    local V2 = { ["x-keyfactor-api-version"] = "2", ["X-Kfsmtp-Details"] = "1" }
    local env_smtp, psrv, purl, providers
    setup(function()
      providers = { [1] = { type = "file", dir = H.tmpdir() }, [2] = { type = "env", names = { USER_VAR, PASSWORD_VAR, UNSET_VAR } } }
      -- The relay accepts only the password the environment holds.
      env_smtp = H.start_smtp { mode = "starttls", auth = RELAY_USER .. ":" .. ENV_PASSWORD }
      psrv = H.start_nginx { workers = 1, env = { [USER_VAR] = RELAY_USER, [PASSWORD_VAR] = ENV_PASSWORD },
        extra = ('ca_file = %q, secret_providers = { [1] = { type = "file", dir = %q }, [2] = { type = "env", names = { %q, %q, %q } } },'):format(
          H.certs().ca, providers[1].dir, USER_VAR, PASSWORD_VAR, UNSET_VAR),
        users = { { ADMIN[1], ADMIN[2], { "all" } }, { READER[1], READER[2], { "read" } } } }
      purl = ("http://127.0.0.1:%d/KeyfactorAPI/Portal/"):format(psrv.port)
    end)
    teardown(function()
      psrv:stop()
      env_smtp:stop()
    end)

    local function provider_profile(over)
      return H.with(relay_profile(), H.with({ Port = env_smtp.port, RelayPassword = "Stored-Value-Not-Used-1" }, over))
    end

    local function get_v2()
      local status, body, headers = psrv:request { user = ADMIN[1] .. ":" .. ADMIN[2], headers = V2 }
      assert.are.equal(200, status, body)
      return cjson.decode(body), headers, body
    end

    it("points the relay password at an environment variable, shows the reference, never a value, and tests with it", function()
      -- The user name is a reference already: shown where it lives, and
      -- sent back as it is.
      store(provider_profile { RelayUsername = { Provider = 2, Parameters = { Name = USER_VAR } } }, psrv,
        { api_version = 2, secret_providers = providers })
      local before = #env_smtp:messages()
      local seen = browse("provider-env", { url = purl, env_name = PASSWORD_VAR, recipient = "pki-team@example.com" })
      assert.are.equal("from provider 2 (Name " .. USER_VAR .. ")", seen.username)
      assert.are.equal("", seen.username_readonly)
      -- A value is stored to begin with: the choice is there, on it.
      assert.are.same({ true, false, true }, { seen.before.choice_visible, seen.before.from_provider, seen.before.value_visible })
      assert.truthy(seen.before.hint:find("A password is stored", 1, true), seen.before.hint)
      assert.are.same({ false, "2", "2 (env)", "Name" },
        { seen.chosen.value_visible, seen.chosen.provider, seen.chosen.provider_text, seen.chosen.parameter_label })
      assert.are.equal("Saved.", seen.save_status)
      local v = seen.after_reload
      assert.are.same({ true, true, false, "2", "Name", PASSWORD_VAR, "" },
        { v.choice_visible, v.from_provider, v.value_visible, v.provider, v.parameter_label, v.parameter, v.value })
      assert.truthy(v.hint:find("provider 2 (env), Name " .. PASSWORD_VAR, 1, true), v.hint)
      assert.are.equal(seen.username, seen.username_after_reload)
      -- The API shows the reference; nothing anywhere holds the value.
      local doc, headers, body = get_v2()
      assert.are.same({ SecretValue = cjson.null, Parameters = { Name = PASSWORD_VAR }, Provider = 2 }, doc.RelayPassword)
      assert.are.same({ SecretValue = cjson.null, Parameters = { Name = USER_VAR }, Provider = 2 }, doc.RelayUsername)
      assert.are.equal("1=file, 2=env", headers["x-kfsmtp-secret-providers"])
      assert.falsy(body:find(ENV_PASSWORD, 1, true))
      assert.falsy(H.read(psrv.store):find(ENV_PASSWORD, 1, true))
      assert.falsy(H.read(psrv.store):find("Stored-Value-Not-Used-1", 1, true), "the reference replaced the value")
      -- The test email logs in with the variable's value.
      shows(seen, "good", "Test email accepted by the relay", { "PLAIN" })
      assert.falsy(seen.html:find(ENV_PASSWORD, 1, true))
      local messages = env_smtp:messages()
      assert.are.equal(before + 1, #messages)
      assert.are.equal(RELAY_USER, messages[#messages].meta.auth_login)
      -- A reader sees where the password lives, and can change nothing.
      seen = browse("read-only", { url = purl, shot = "13b-provider-env-read-only" })
      assert.are.same({ true, "2", PASSWORD_VAR }, { seen.password.from_provider, seen.password.provider, seen.password.parameter })
      assert.are.equal("The password is read from provider 2 (env), Name " .. PASSWORD_VAR .. ", when it is needed; its value is never shown.",
        seen.password_hint)
      assert.is_true(seen.password_controls_disabled)
    end)

    it("shows a path outside a file provider's folder refused next to the password, and a good one after a reload", function()
      store(provider_profile { RelayUsername = { Provider = 2, Parameters = { Name = USER_VAR } } }, psrv,
        { api_version = 2, secret_providers = providers })
      -- On a phone: the choice fits, and every control has a label.
      local seen = browse("provider-file", { url = purl, width = 360, outside_path = "/etc/shadow", file_path = "smtp_password",
        username = "CORP\\svc-typed" })
      assert.are.equal("RelayUsername", seen.focused_after_replace)
      assert.truthy(seen.password_error:find("RelayPassword.Parameters.Path is outside the provider's folder", 1, true), seen.password_error)
      assert.are.equal("true", seen.invalid)
      assert.are.equal("RelayPassword-parameter", seen.focused)
      assert.truthy(seen.save_status:find("^Not saved"))
      assert.is_true(seen.widths.document <= 360, "the page is " .. seen.widths.document .. " px wide")
      assert.are.same({}, seen.unnamed)
      local v = seen.after_reload
      assert.are.same({ true, "1", "1 (file)", "Path", "smtp_password" },
        { v.from_provider, v.provider, v.provider_text, v.parameter_label, v.parameter })
      assert.truthy(v.hint:find("provider 1 (file), Path smtp_password", 1, true), v.hint)
      local doc = get_v2()
      assert.are.same({ SecretValue = cjson.null, Parameters = { Path = "smtp_password" }, Provider = 1 }, doc.RelayPassword)
      -- The typed user name replaced the reference.
      assert.are.same({ "CORP\\svc-typed", cjson.null, false },
        { seen.username_after_reload, seen.username_readonly, seen.replace_visible })
      assert.are.same({ SecretValue = "CORP\\svc-typed", Parameters = cjson.null, Provider = cjson.null }, doc.RelayUsername)
    end)

    it("names the provider as the stage when a reference cannot be read at test time", function()
      store(provider_profile(), psrv)
      local before = #env_smtp:messages()
      local seen = browse("provider-unreadable", { url = purl, env_name = UNSET_VAR, recipient = "pki-team@example.com" })
      shows(seen, "bad", "Test failed at: reading the secret from its provider", { "not set in the server's environment", "502" })
      assert.truthy(seen.password_error:find("provider 2", 1, true), seen.password_error)
      assert.are.equal(before, #env_smtp:messages())
    end)
  end)
end)
