-- RelayAuthenticationType 3: OAuth 2.0 client credentials against a local
-- token endpoint (HTTPS, the suite's CA) and an SMTP server that accepts
-- XOAUTH2 / OAUTHBEARER only with the token most recently issued.
local kfsmtp = require "kfsmtp"
local H = require "helpers"

local CLIENT, SECRET, MAILBOX = "app-7f3c", "client-Secret-0wL", "kf-mailbox@example.com"

describe("OAuth 2.0 client credentials", function()
  local certs, tokens, smtp, xoauth_only, plain_auth
  setup(function()
    certs = H.certs()
    tokens = H.start_token_server(CLIENT, SECRET)
    smtp = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    xoauth_only = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true, oauth_mechs = "XOAUTH2" }
    plain_auth = H.start_smtp { mode = "starttls", auth = "svc:pw" }
  end)
  teardown(function()
    smtp:stop() xoauth_only:stop() plain_auth:stop()
    tokens:stop()
  end)

  local function req(srv, over)
    local t = { Host = "localhost", Port = srv.port, UseSSL = true, RelayAuthenticationType = 3,
      RelayUsername = MAILBOX, SenderAccount = MAILBOX, TestRecipient = "ops@example.com",
      ClientId = CLIENT, ClientSecret = SECRET, Scope = "https://outlook.office365.com/.default",
      TokenEndpoint = tokens.url }
    for k, v in pairs(over or {}) do t[k] = v end
    return t
  end
  local opts = function() return { ca_file = certs.ca, transcript = true } end

  it("fetches a token, authenticates with OAUTHBEARER and delivers; no secret or token in the output", function()
    local before = #smtp:messages()
    local res, info = kfsmtp.open(H.store_path()):test(req(smtp), opts())
    assert.is_nil(info.Message)
    assert.are.equal("OAUTHBEARER", info.auth_mechanism)
    local m = smtp:messages()[before + 1]
    assert.are.equal(MAILBOX, m.meta.auth_login)
    local token = tokens:token()
    assert.truthy(token:match("^tok%-"))
    for _, secret in ipairs { SECRET, token } do
      assert.is_false(H.mentions(res, secret))
      assert.is_false(H.mentions(info, secret))
    end
    assert.falsy(smtp:commands():find(token, 1, true))
    local last = H.decode_json(H.read(tokens.dir .. "/last_request.json"))
    assert.are.equal("https://outlook.office365.com/.default", last.scope)
  end)

  it("uses XOAUTH2 where OAUTHBEARER is not offered, and reuses the cached token", function()
    local fetched = tokens:requests()
    for _ = 1, 2 do
      local _, info = kfsmtp.open(H.store_path()):test(req(xoauth_only), opts())
      assert.is_nil(info.Message)
      assert.are.equal("XOAUTH2", info.auth_mechanism)
    end
    assert.are.equal(fetched + 1, tokens:requests(), "a token for this relay, then the cached one")
  end)

  it("fetches a new token once when the relay refuses the cached one", function()
    local fetched = tokens:requests()
    H.write(tokens.token_file, "revoked") -- the relay no longer accepts the cached token
    local _, info = kfsmtp.open(H.store_path()):test(req(smtp), opts())
    assert.is_nil(info.Message)
    assert.are.equal(fetched + 1, tokens:requests())
  end)

  it("reports a wrong client secret at the token stage, with the endpoint's error, sending nothing to the relay", function()
    local before = smtp:commands()
    local _, err = kfsmtp.open(H.store_path()):test(req(smtp, { ClientSecret = "wrong-" .. SECRET }), opts())
    assert.are.equal("token", err.stage)
    assert.are.equal(502, err.status)
    assert.are.equal("0xA05300A0", err.ErrorCode)
    assert.are.equal(401, err.http_status)
    assert.are.equal("invalid_client", err.error)
    assert.truthy(err.Message:find("AADSTS7000215", 1, true))
    assert.truthy(err.Message:find("ClientSecret", 1, true))
    assert.are.equal(before, smtp:commands())
    assert.is_false(H.mentions(err, SECRET))
  end)

  it("reports an unreachable token endpoint at the token stage", function()
    local _, err = kfsmtp.open(H.store_path()):test(req(smtp,
      { TokenEndpoint = ("http://127.0.0.1:%d/token"):format(H.closed_port()), ClientSecret = "other" }), opts())
    assert.are.equal("token", err.stage)
    assert.are.equal(502, err.status)
  end)

  it("says clearly when the relay offers neither XOAUTH2 nor OAUTHBEARER", function()
    local _, err = kfsmtp.open(H.store_path()):test(req(plain_auth), opts())
    assert.are.equal("auth", err.stage)
    assert.are.equal("0xA0530051", err.ErrorCode)
    assert.truthy(err.Message:find("XOAUTH2", 1, true))
    assert.falsy(plain_auth:commands():find("AUTH PLAIN", 1, true), "no password mechanism was tried")
  end)

  it("stores ClientSecret like a password: kept, reused, never returned", function()
    local path = H.store_path()
    local store = kfsmtp.open(path)
    local p = assert(store:update(req(smtp, { ClientSecret = { SecretValue = SECRET } })))
    assert.is_nil(p.ClientSecret)
    assert.is_false(H.mentions(p, SECRET))
    assert.truthy(H.read(path):find(SECRET, 1, true))
    -- Version 1's shape (the default) has no OAuth field; version 2's has all but the secret.
    assert.is_nil(p.ClientId)
    local v2 = store:get { api_version = 2 }
    assert.are.same({ CLIENT, tokens.url, "https://outlook.office365.com/.default", "" },
      { v2.ClientId.SecretValue, v2.TokenEndpoint, v2.Scope, v2.Audience })
    assert.is_false(H.mentions(v2, SECRET))
    assert.has_error(function() store:get { api_version = 3 } end, "kfsmtp.get: api_version must be 1 or 2, not 3")
    -- configure sets the default shape; a call's own option still wins.
    kfsmtp.configure { api_version = 2 }
    finally(function() kfsmtp.configure { api_version = 1 } end)
    assert.are.equal(CLIENT, kfsmtp.get { store = path }.ClientId.SecretValue)
    assert.is_nil(kfsmtp.get({ store = path, api_version = 1 }).ClientId)
    -- A test with only the v1 fields of GET plus a recipient uses the stored OAuth settings.
    local form = store:get()
    form.TestRecipient = "ops@example.com"
    local _, info = store:test(form, opts())
    assert.is_nil(info.Message)
  end)

  it("validates the OAuth fields", function()
    local store = kfsmtp.open(H.store_path())
    local _, err = store:test(req(smtp, { TokenEndpoint = "http://login.example.com/token" }), opts())
    assert.are.equal("TokenEndpoint", err.field)
    assert.truthy(err.Message:find("https", 1, true))
    _, err = store:test(req(smtp, { ClientId = "" }), opts())
    assert.are.equal("ClientId", err.field)
    _, err = store:test(req(smtp, { ClientSecret = "" }), opts())
    assert.are.equal("ClientSecret", err.field)
    _, err = store:test(req(smtp, { TokenEndpoint = "https://user:pw@login.example.com/token" }), opts())
    assert.are.equal("TokenEndpoint", err.field)
    _, err = store:test(req(smtp, { ClientSecret = { SecretValue = 42 } }), opts())
    assert.are.equal("ClientSecret", err.field)
  end)
end)

describe("the token request's extra headers (core.fetch_token's headers)", function()
  local core = require "kfsmtp.core"
  local certs, tokens
  setup(function()
    certs = H.certs()
    tokens = H.start_token_server(CLIENT, SECRET)
  end)
  teardown(function() tokens:stop() end)

  local function request(headers)
    return { endpoint = tokens.url, client_id = CLIENT, client_secret = SECRET, scope = "smtp",
      ca_file = certs.ca, headers = headers }
  end
  local function fetch(headers) return core.fetch_token(request(headers)) end
  -- The error raised, called straight from pcall so that Lua puts no
  -- caller's line in front of it.
  local function raised(headers)
    local ok, err = pcall(core.fetch_token, request(headers))
    assert.is_false(ok)
    return err
  end
  -- The last request's headers as the endpoint received them: names in
  -- order, and values by lowercased name.
  local function received()
    local last = H.decode_json(H.read(tokens.dir .. "/last_request.json"))
    local names, values = {}, {}
    for _, h in ipairs(last.headers) do
      names[#names + 1] = h[1]
      values[h[1]:lower()] = h[2]
    end
    return names, values, last
  end
  local function position(list, name)
    for i, v in ipairs(list) do
      if v == name then return i end
    end
  end

  it("sends each one, in order, after Accept", function()
    local r = fetch { "X-Api-Key: gw-key-7f3c", "Ocp-Apim-Trace: true", "X-Colons: a: b:c", "X-Empty;" }
    assert.is_true(r.ok, r.curl_error)
    assert.are.equal(200, r.http_status)
    local names, values, last = received()
    assert.are.equal("client_credentials", last.grant_type)
    assert.are.equal("gw-key-7f3c", values["x-api-key"])
    assert.are.equal("true", values["ocp-apim-trace"])
    assert.are.equal("a: b:c", values["x-colons"])
    -- "Name;" is libcurl's form for an empty value.
    assert.are.equal("", values["x-empty"])
    assert.are.equal("application/json", values.accept)
    local accept, key, trace = position(names, "Accept"), position(names, "X-Api-Key"), position(names, "Ocp-Apim-Trace")
    assert.is_true(accept < key and key < trace, table.concat(names, ", "))
  end)

  it("sends none when headers is absent or empty", function()
    for _, headers in ipairs { false, {} } do
      assert.is_true(fetch(headers or nil).ok)
      local names = received()
      assert.is_nil(position(names, "X-Api-Key"), table.concat(names, ", "))
    end
  end)

  it("sends 32 of 8192 bytes each; one more, or a longer one, raises", function()
    local list = {}
    for i = 1, 32 do
      local name = ("X-Many-%02d: "):format(i)
      list[i] = name .. ("v"):rep(8192 - #name)
    end
    assert.is_true(fetch(list).ok)
    local _, values = received()
    for i = 1, 32 do
      assert.are.equal(8192 - #"X-Many-00: ", #values[("x-many-%02d"):format(i)])
    end
    list[33] = "X-One-More: x"
    local fetched = tokens:requests()
    assert.are.equal("kfsmtp.core.fetch_token: field 'headers' must be an array of at most 32 strings", raised(list))
    list[33] = nil
    list[7] = list[7] .. "v"
    assert.are.equal("kfsmtp.core.fetch_token: field 'headers[7]' must be a string of at most 8192 bytes", raised(list))
    assert.are.equal(fetched, tokens:requests(), "nothing was sent")
  end)

  it("raises, sending nothing, for an entry that could start another line or is not Name: Value", function()
    local fetched = tokens:requests()
    local bad = {
      { { "X-A: 1", "X-B: 2\r\nX-Injected: 3" }, "headers[2]" },
      { { "X-A: 1\nX-Injected: 3" }, "headers[1]" },
      { { "X-A: 1\r" }, "headers[1]" },
      { { "X-A: 1\0X-Injected: 3" }, "headers[1]" },
      { { "\r\nX-Injected: 3" }, "headers[1]" },
      { { "no colon" }, "headers[1]" },
      { { ": no name" }, "headers[1]" },
      { { "Bad Name: x" }, "headers[1]" },
      { { "X-Semi;x" }, "headers[1]" },
      { { "X-Semi; x" }, "headers[1]" },
      { { "X-A: 1", 42 }, "headers[2]" },
      { { "X-A: 1", nil, "X-C: 3" }, "headers[2]" },
      { { x = "X-A: 1" }, "headers[1]" },
      { { "X-A: 1", { "X-B: 2" } }, "headers[2]" },
      { "X-A: 1", "headers" },
      { true, "headers" },
    }
    for _, case in ipairs(bad) do
      local err, prefix = raised(case[1]), "kfsmtp.core.fetch_token: field '" .. case[2] .. "' must be "
      assert.are.equal(prefix, err:sub(1, #prefix))
    end
    assert.are.equal([[kfsmtp.core.fetch_token: field 'headers[2]' must be "Name: Value" without CR or LF]],
      raised { "X-A: 1", "X-B: 2\r\nX-Injected: 3" })
    assert.are.equal("kfsmtp.core.fetch_token: field 'headers[2]' must be a string, not nil", raised { "X-A: 1", nil, "X-C: 3" })
    assert.are.equal("kfsmtp.core.fetch_token: field 'headers' must be an array of at most 32 strings, not a string", raised "X-A: 1")
    assert.are.equal(fetched, tokens:requests(), "nothing was sent")
  end)
end)

describe("the token's round trips", function()
  local tokens, smtp
  setup(function()
    -- A token that lives 60 s is never kept (kfsmtp keeps one until a
    -- minute before it expires): every test asks the endpoint.
    tokens = H.start_token_server(CLIENT, SECRET, "--expires-in 60")
    smtp = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
  end)
  teardown(function() smtp:stop() tokens:stop() end)

  it("asks the endpoint again on the connection it kept from the last request", function()
    local store = kfsmtp.open(H.store_path())
    local t = { Host = "localhost", Port = smtp.port, UseSSL = true, RelayAuthenticationType = 3,
      RelayUsername = MAILBOX, SenderAccount = MAILBOX, TestRecipient = "ops@example.com",
      ClientId = CLIENT, ClientSecret = SECRET, Scope = "smtp", TokenEndpoint = tokens.url }
    for _ = 1, 3 do
      local _, info = store:test(t, { ca_file = H.certs().ca })
      assert.is_nil(info.Message)
    end
    assert.are.equal(3, tokens:requests())
    assert.are.equal("1\n", H.read(tokens.dir .. "/connections"), "one connection, one TLS handshake")
  end)
end)

describe("the token cache under nginx", function()
  local ADMIN = "admin:Admin-Pass-1"
  local tokens, smtp, srv
  setup(function()
    tokens = H.start_token_server(CLIENT, SECRET)
    smtp = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    srv = H.start_nginx { users = { { "admin", "Admin-Pass-1", { "all" } } }, workers = 1,
      extra = ("ca_file = %q,"):format(H.certs().ca) }
  end)
  teardown(function() srv:stop() smtp:stop() tokens:stop() end)

  it("is one per worker: tests in any of its worker threads use the token fetched once", function()
    local body = require("cjson").encode { Host = "localhost", Port = smtp.port, UseSSL = true,
      RelayAuthenticationType = 3, RelayUsername = MAILBOX, SenderAccount = MAILBOX, TestRecipient = "ops@example.com",
      ClientId = CLIENT, ClientSecret = SECRET, Scope = "smtp", TokenEndpoint = tokens.url }
    local status, answer = srv:request { method = "POST", path = "/KeyfactorAPI/SMTP/Test", user = ADMIN, body = body }
    assert.are.equal(200, status, answer)
    assert.are.equal(1, tokens:requests())
    -- Twelve at once: the worker's thread pool (16 threads, each its own
    -- Lua VM) runs them side by side.
    local dir = H.tmpdir()
    H.write(dir .. "/body", body)
    local out = H.sh(("for i in $(seq 12); do curl -s -o /dev/null -w '%%{http_code}\\n' -u %s "
      .. "-H 'X-Keyfactor-Requested-With: APIClient' -H 'Content-Type: application/json' --data-binary @%s "
      .. "http://127.0.0.1:%d/KeyfactorAPI/SMTP/Test & done; wait"):format(H.q(ADMIN), H.q(dir .. "/body"), srv.port))
    assert.are.equal(("200\n"):rep(12), out)
    assert.are.equal(1, tokens:requests(), "no worker thread fetched a token of its own")
    assert.are.equal(13, #smtp:messages())
  end)
end)

describe("the token cache's rules", function()
  local core = require "kfsmtp.core"

  -- Tests of one client against an XOAUTH2 server taking tokens from
  -- tokens; --> the number of token requests they made.
  local function requests_for(tokens, ports)
    local before = tokens:requests()
    for _, port in ipairs(ports) do
      local _, info = kfsmtp.open(H.store_path()):test({ Host = "localhost", Port = port, UseSSL = true,
        RelayAuthenticationType = 3, RelayUsername = MAILBOX, SenderAccount = MAILBOX, TestRecipient = "ops@example.com",
        ClientId = CLIENT, ClientSecret = SECRET, Scope = "smtp", TokenEndpoint = tokens.url }, { ca_file = H.certs().ca })
      assert.is_nil(info.Message)
    end
    return tokens:requests() - before
  end

  it("keeps a token for the relay it was fetched for only", function()
    local tokens = H.start_token_server(CLIENT, SECRET)
    local smtp_a = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    local smtp_b = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    finally(function() smtp_a:stop() smtp_b:stop() tokens:stop() end)
    assert.are.equal(1, requests_for(tokens, { smtp_a.port, smtp_a.port }))
    -- Another relay: a token of its own (the server takes only the latest,
    -- so A's next test fetches again too).
    assert.are.equal(1, requests_for(tokens, { smtp_b.port, smtp_b.port }))
  end)

  it("reads expires_in sent as text, and keeps nothing for a value that would wrap", function()
    local text = H.start_token_server(CLIENT, SECRET, "--expires-in 3599 --expires-in-text")
    local wrap = H.start_token_server(CLIENT, SECRET, "--expires-in -9223372036854775808 --expires-in-text")
    local smtp = H.start_smtp { mode = "starttls", oauth_token_file = text.token_file, oauth_only = true }
    local smtp_wrap = H.start_smtp { mode = "starttls", oauth_token_file = wrap.token_file, oauth_only = true }
    finally(function() smtp:stop() smtp_wrap:stop() text:stop() wrap:stop() end)
    assert.are.equal(1, requests_for(text, { smtp.port, smtp.port }), "\"3599\": kept")
    assert.are.equal(2, requests_for(wrap, { smtp_wrap.port, smtp_wrap.port }), "a huge negative lifetime: used once")
  end)

  it("keeps tokens up to 64 KiB, refuses longer ones or NUL without raising", function()
    local key = "spec-size-" .. H.sh("head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \\n'")
    finally(function() core.token_cache_forget(key) end)
    local big = ("t"):rep(64 * 1024)
    assert.is_true(core.token_cache_put(key, big, 60))
    assert.are.equal(big, core.token_cache_get(key))
    assert.is_false(core.token_cache_put(key, big .. "t", 60))
    assert.is_false(core.token_cache_put(key, "a\0b", 60))
    assert.is_false(core.token_cache_put(key, "", 60))
    core.token_cache_forget(key)
    assert.is_nil(core.token_cache_get(key))
  end)

  it("when full, drops the token used longest ago, not the one that expires first", function()
    local prefix = "spec-lru-" .. H.sh("head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \\n'") .. "-"
    local keys = {}
    finally(function() for _, k in ipairs(keys) do core.token_cache_forget(k) end end)
    -- A client's token that lives a minute, then 64 others that live a day,
    -- the client's token used in between: the cache holds 64.
    keys[1] = prefix .. "in-use"
    assert.is_true(core.token_cache_put(keys[1], "tok-in-use", 60))
    for i = 1, 64 do
      keys[#keys + 1] = prefix .. i
      assert.is_true(core.token_cache_put(keys[#keys], "tok-" .. i, 24 * 3600))
      assert.are.equal("tok-in-use", core.token_cache_get(keys[1]), "after " .. i .. " more")
    end
    -- The first of the day-long ones went.
    assert.is_nil(core.token_cache_get(prefix .. "1"))
  end)
end)
