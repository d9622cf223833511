-- timeout_ms is one deadline for the whole call: token fetch, delivery,
-- the one retry and QUIT included. Every call returns within timeout_ms
-- + 1 s whatever the servers do. The servers here do what no real one
-- can be made to do on purpose (spec/support/hostile.py).
local kfsmtp = require "kfsmtp"
local H = require "helpers"

local CLIENT, SECRET, MAILBOX = "app-deadline", "client-Secret-dl", "kf-mailbox@example.com"
local GRACE_MS = 1000

-- store:test(req, opts), timed: res, info_or_err, milliseconds.
local function timed_test(req, opts)
  local t0 = H.now_ms()
  local res, info = kfsmtp.open(H.store_path()):test(req, opts)
  return res, info, H.now_ms() - t0
end

local function plain_req(srv, over)
  local t = { Host = "127.0.0.1", Port = srv.port, SenderAccount = "kf@example.com",
    TestRecipient = "ops@example.com" }
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

local function within(took, timeout_ms)
  assert.is_true(took < timeout_ms + GRACE_MS, ("took %.0f ms with timeout_ms = %d"):format(took, timeout_ms))
end

describe("one deadline per call", function()
  local TIMEOUT = 3000
  local opts = { timeout_ms = TIMEOUT, connect_timeout_ms = 2000 }

  it("holds when the server accepts the message and never answers QUIT", function()
    local srv = H.start_hostile { behaviour = "quit_silent" }
    finally(function() srv:stop() end)
    local res, info, took = timed_test(plain_req(srv), opts)
    within(took, TIMEOUT)
    assert.is_table(res, info and info.Message)
    assert.truthy(info.reply:find("queued as HOSTILE", 1, true))
    assert.truthy(srv:commands():find("QUIT", 1, true), "QUIT was sent")
  end)

  it("holds when the server refuses RCPT and never answers QUIT", function()
    local srv = H.start_hostile { behaviour = "rcpt_refused_silent" }
    finally(function() srv:stop() end)
    local res, err, took = timed_test(plain_req(srv), opts)
    within(took, TIMEOUT)
    assert.is_nil(res)
    assert.are.equal("rcpt", err.stage)
    assert.are.equal(550, err.smtp_code)
  end)

  it("holds when the final reply drips one byte a second", function()
    local srv = H.start_hostile { behaviour = "final_drip" }
    finally(function() srv:stop() end)
    local res, err, took = timed_test(plain_req(srv), opts)
    within(took, TIMEOUT)
    assert.is_nil(res)
    assert.are.equal(504, err.status, err.Message)
    assert.are.equal("data", err.stage)
  end)

  it("holds when the final reply is an endless stream of 250- lines", function()
    local srv = H.start_hostile { behaviour = "final_flood" }
    finally(function() srv:stop() end)
    local res, err, took = timed_test(plain_req(srv), opts)
    within(took, TIMEOUT)
    assert.is_nil(res)
    -- The deadline (504), or libcurl's own cap on a reply's size (502).
    assert.are.equal("data", err.stage, err.Message)
    assert.truthy(err.status == 504 or err.status == 502, err.Message)
  end)
end)

describe("a server that floods a probe's reply", function()
  it("gets no more than the deadline and a bounded reply", function()
    local srv = H.start_hostile { behaviour = "mail_flood" }
    finally(function() srv:stop() end)
    local res, err, took = timed_test(plain_req(srv), { quit_after = "rcpt", timeout_ms = 2000, transcript = true })
    within(took, 2000)
    assert.is_nil(res)
    assert.are.equal("mail", err.stage)
    assert.is_true(#(err.smtp_reply or "") + #table.concat(err.transcript or {}, "\n") < 400 * 1024,
      "kept " .. #(err.smtp_reply or "") .. " bytes of reply")
  end)
end)

describe("one deadline for the token fetch and the delivery", function()
  local TIMEOUT = 2000
  local tokens, slow_smtp
  setup(function()
    tokens = H.start_token_server(CLIENT, SECRET, "--delay-ms 800")
    slow_smtp = H.start_hostile { behaviour = "auth_refused", oauth = true, greeting_delay_ms = 800 }
  end)
  teardown(function() tokens:stop() slow_smtp:stop() end)

  local function req(scope)
    return { Host = "127.0.0.1", Port = slow_smtp.port, RelayAuthenticationType = 3,
      RelayUsername = MAILBOX, SenderAccount = MAILBOX, TestRecipient = "ops@example.com",
      ClientId = CLIENT, ClientSecret = SECRET, Scope = scope or "smtp", TokenEndpoint = tokens.url }
  end
  local function opts() return { ca_file = H.certs().ca, timeout_ms = TIMEOUT, connect_timeout_ms = 2000 } end

  it("covers a slow token endpoint and a slow server together", function()
    local fetched = tokens:requests()
    local res, err, took = timed_test(req(), opts())
    within(took, TIMEOUT)
    assert.is_nil(res)
    assert.are.equal("auth", err.stage, err.Message)
    assert.are.equal(fetched + 1, tokens:requests())
    -- Now the token is cached: the relay refuses it, the retry fetches a
    -- new one (slow) and delivers again (slow), all within the deadline.
    res, err, took = timed_test(req(), opts())
    within(took, TIMEOUT)
    assert.is_nil(res)
    assert.truthy(err.status == 502 or err.status == 504, err.Message)
  end)

  it("gives a token that cannot come in time the token stage", function()
    -- A scope no token was cached for.
    local res, err, took = timed_test(req("smtp-uncached"), { ca_file = H.certs().ca, timeout_ms = 500 })
    within(took, 500)
    assert.is_nil(res)
    assert.are.equal("token", err.stage)
    assert.are.equal(504, err.status)
    assert.truthy(err.Message:find("timeout_ms (500 ms", 1, true), err.Message)
  end)
end)

describe("info.timings", function()
  it("has the token fetch, and a total that covers the whole call", function()
    local tokens = H.start_token_server(CLIENT, SECRET, "--delay-ms 300")
    local smtp = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true }
    finally(function() tokens:stop() smtp:stop() end)
    local req = { Host = "localhost", Port = smtp.port, UseSSL = true, RelayAuthenticationType = 3,
      RelayUsername = MAILBOX, SenderAccount = MAILBOX, TestRecipient = "ops@example.com",
      ClientId = CLIENT, ClientSecret = SECRET, Scope = "smtp2", TokenEndpoint = tokens.url }
    local res, info, took = timed_test(req, { ca_file = H.certs().ca })
    assert.is_table(res, info and info.Message)
    local t = info.timings
    assert.is_true(t.token >= 300, "token " .. t.token)
    assert.is_true(t.total >= t.token + t.connect, ("total %s, token %s"):format(t.total, t.token))
    assert.is_true(t.total <= took)
  end)
end)
