-- Real mail servers, configured as operators configure them
-- (spec/support/realmail.lua): Postfix 3.7 with Dovecot SASL and postgrey,
-- and Exim 4.96. Each server starts once for this file.
--
-- The success paths (PLAIN, LOGIN, CRAM-MD5; STARTTLS and implicit TLS)
-- must be accepted, with a queue id, and the server's own log must show
-- that message. Each failure situation is checked loosely: the stage and
-- the codes, which come straight from the server, never the Message (the
-- diagnosis is its own concern). The reply lines and the EHLO the server
-- sent are compared with spec/support/real_replies.lua, the fixture the
-- diagnosis specs read, so that it stays what these servers really say.
--
--   KFSMTP_CAPTURE_REPLIES=FILE busted --lua=lua5.4 spec/realmail_spec.lua
-- writes what the servers said, in the fixture's form, to FILE instead of
-- comparing (to capture it again after a server upgrade).
--
-- Tag #realmail: the Lua 5.4 pass only (scripts/check.sh).
local kfsmtp = require "kfsmtp"
local H = require "helpers"
local errors = require "kfsmtp.errors"
local R = require "realmail"
local REPLIES = require "real_replies"

local HELO = "kfsmtp-client.test"
local CAPTURE = os.getenv("KFSMTP_CAPTURE_REPLIES")
local captured = {}

-- A test request: t.user (default "alice"; false: anonymous), t.password,
-- t.from (default the user's own address), t.to (default an outside
-- recipient), t.ssl (default true).
local function request(port, t)
  local user = t.user == nil and "alice" or t.user
  local r = {
    Host = "127.0.0.1", Port = port, SenderName = "kfsmtp realmail spec",
    SenderAccount = t.from or ((user or "alice") .. "@" .. R.DOMAIN),
    TestRecipient = t.to or R.OUTSIDE, UseSSL = t.ssl ~= false,
  }
  if user then
    r.RelayAuthenticationType, r.RelayUsername, r.RelayPassword = 2, user, t.password or R.USERS[user]
  end
  return r
end

local function test(port, t, opts)
  opts = opts or {}
  opts.ca_file, opts.helo, opts.transcript = H.certs().ca, HELO, true
  opts.timeout_ms = opts.timeout_ms or 15000
  return kfsmtp.open(H.store_path()):test(request(port, t or {}), opts)
end

local function lines(s)
  local list = {}
  for line in (s or ""):gmatch("[^\r\n]+") do list[#list + 1] = line end
  return list
end

-- The server's lines answering the last EHLO of a transcript.
local function last_ehlo(transcript)
  local ehlo
  for _, line in ipairs(transcript or {}) do
    if line:match("^C: EHLO ") then
      ehlo = {}
    elseif line:match("^C: ") then
      if ehlo and #ehlo > 0 then ehlo.done = true end
    elseif ehlo and not ehlo.done then
      ehlo[#ehlo + 1] = line:match("^S: (.*)$")
    end
  end
  if ehlo then ehlo.done = nil end
  return ehlo or {}
end

local function accepted(res, info, mechanism, tls_mode)
  assert.is_table(res, info and info.Message)
  assert.truthy(info.reply:match("^250 "), info.reply)
  assert.is_string(info.queue_id, info.reply)
  assert.are.equal(mechanism, info.auth_mechanism)
  assert.are.equal(tls_mode, info.tls.mode)
  assert.are.equal(tls_mode ~= "none", info.tls.verified)
  assert.are.same({}, info.warnings)
end

-- The client's command that the reply answered ("" for the greeting):
-- the last command before the reply, an AUTH's masked payload skipped.
local function command_of(transcript, reply)
  if not reply then return nil end
  local command = ""
  for _, line in ipairs(transcript or {}) do
    if line == "S: " .. reply then return command end
    if line:match("^C: ") and line ~= "C: ***" then command = line:sub(4) end
  end
  return nil
end

-- The failure as kfsmtp reports it: the stage, the ErrorCode of want.kind,
-- the server's codes, temporary, the fix the Message must name (want.says)
-- and a wrong one it must not (want.not_says); and the server's reply and
-- EHLO as the fixture has them.
local function refused(server, situation, err, want)
  assert.is_table(err)
  assert.is_nil(err.Host, "the test succeeded")
  assert.are.equal(want.stage, err.stage, err.Message)
  assert.are.equal(want.status or 502, err.status, err.Message)
  assert.are.equal(want.smtp_code, err.smtp_code, err.Message)
  assert.are.equal(want.enhanced_code, err.enhanced_code, err.Message)
  if not CAPTURE then
    assert.are.equal(want.kind, err.kind, err.Message)
    assert.are.equal(errors.CODES[want.kind][1], err.ErrorCode)
    assert.are.equal(want.temporary or false, err.temporary)
    for _, phrase in ipairs(want.says or {}) do
      assert.truthy(err.Message:find(phrase, 1, true), ("%q lacks %q"):format(err.Message, phrase))
    end
    for _, phrase in ipairs(want.not_says or {}) do
      assert.falsy(err.Message:find(phrase, 1, true), ("%q has %q"):format(err.Message, phrase))
    end
  end
  local reply = lines(err.smtp_reply)
  local seen = { command = command_of(err.transcript, reply[1]), reply = reply, ehlo = last_ehlo(err.transcript) }
  if CAPTURE then
    captured[situation] = captured[situation] or {}
    captured[situation][server] = seen
    return
  end
  local fixture = REPLIES[situation] and REPLIES[situation][server]
  assert.is_table(fixture, "spec/support/real_replies.lua has no " .. situation .. "." .. server)
  assert.are.same(fixture.command, seen.command)
  assert.are.same(fixture.reply, seen.reply)
  assert.are.same(fixture.ehlo, seen.ehlo)
end

-- What each situation is, for the fixture.
local ABOUT = {
  relay_denied = "anonymous client, a recipient outside the server's domains (127.0.0.1 is not a trusted network)",
  client_host_rejected = "anonymous client on the submission port (smtpd_client_restrictions = permit_sasl_authenticated, reject)",
  sender_not_owned = "alice logged in, MAIL FROM bob's address (reject_sender_login_mismatch)",
  auth_only_after_tls = "credentials with UseSSL false where AUTH is offered only after STARTTLS; outside recipient: no AUTH is sent",
  auth_only_after_tls_local_recipient = "the same with a recipient in the server's own domain: kfsmtp stops at DATA, after its 354",
  starttls_required = "plain MAIL FROM on the submission port (smtpd_tls_security_level = encrypt)",
  sender_not_logged_in = "anonymous client sending as alice's address on a port with reject_sender_login_mismatch",
  greylisted = "the first attempt of this client, sender and recipient (postgrey, delay 300 s)",
  connection_rate_limited = "the second connection within a minute (smtpd_client_connection_rate_limit = 1)",
  auth_failed = "a wrong password (CRAM-MD5)",
  cram_md5_hash_only = "the right password, CRAM-MD5 offered, the password stored only as a SHA512-CRYPT hash: refused like a wrong one",
  implicit_tls_port_without_tls = "UseSSL true on an implicit-TLS port other than 465, so STARTTLS: the server waits for TLS, no greeting comes (kfsmtp times out)",
  plain_port_with_implicit_tls = "tls_mode implicit on a STARTTLS port: the server's plain greeting comes where TLS was expected",
}

local versions = {}

local function quote(s) return (("%q"):format(s):gsub("\\\n", "\\n")) end

local function list_lines(out, indent, key, list)
  if #list == 0 then
    out[#out + 1] = ("%s%s = {},"):format(indent, key)
    return
  end
  out[#out + 1] = ("%s%s = {"):format(indent, key)
  for _, line in ipairs(list) do out[#out + 1] = indent .. "  " .. quote(line) .. "," end
  out[#out + 1] = indent .. "},"
end

-- spec/support/real_replies.lua as captured (KFSMTP_CAPTURE_REPLIES).
local function write_capture()
  local out = {
    "-- The reply lines real mail servers sent kfsmtp in each failure situation,",
    "-- captured by spec/realmail_spec.lua (KFSMTP_CAPTURE_REPLIES=FILE) from the",
    "-- servers of spec/support/realmail.lua: " .. (versions.postfix or "?") .. " with " .. (versions.dovecot or "?") .. " for SASL",
    "-- and " .. (versions.postgrey or "?") .. ", and " .. (versions.exim or "?") .. ", as Debian 12 ships them.",
    "-- realmail_spec compares each entry with what the live server says, so the",
    "-- fixture cannot drift from them; the diagnosis specs read it.",
    "--",
    "--   [situation][server] = { command = the client's command the reply",
    "--   answered (\"\" for the greeting, nil where no reply came), reply = its",
    "--   lines, ehlo = the server's last EHLO reply before it }",
    "-- Host names: Postfix is mx.example.test, Exim exim.example.test, the",
    "-- client says EHLO kfsmtp-client.test from 127.0.0.1.",
    "return {",
    "  servers = {",
  }
  for _, k in ipairs(H.keys(versions)) do out[#out + 1] = ("    %s = %s,"):format(k, quote(versions[k])) end
  out[#out + 1] = "  },"
  for _, situation in ipairs(H.keys(captured)) do
    out[#out + 1] = ("  %s = {"):format(situation)
    out[#out + 1] = ("    about = %s,"):format(quote(ABOUT[situation]))
    for _, server in ipairs(H.keys(captured[situation])) do
      local seen = captured[situation][server]
      out[#out + 1] = ("    %s = {"):format(server)
      if seen.command then out[#out + 1] = ("      command = %s,"):format(quote(seen.command)) end
      list_lines(out, "      ", "reply", seen.reply)
      list_lines(out, "      ", "ehlo", seen.ehlo)
      out[#out + 1] = "    },"
    end
    out[#out + 1] = "  },"
  end
  out[#out + 1] = "}"
  H.write(CAPTURE, table.concat(out, "\n") .. "\n")
end

local function pattern(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

describe("real mail servers #realmail", function()
  teardown(function()
    if CAPTURE then write_capture() end
  end)

  describe("Postfix 3.7 (Dovecot SASL, postgrey)", function()
    local pf, p
    local started_ms
    setup(function()
      local t0 = H.now_ms()
      pf = R.start_postfix()
      p = pf.ports
      started_ms = H.now_ms() - t0
    end)
    teardown(function() pf:stop() end)

    -- The log lines of one accepted message: the login on the smtpd line,
    -- its Message-ID, and the discard that ended it.
    local function logged(info, mechanism, user, rcpt)
      local q = info.queue_id
      local client = q .. ": client=localhost[127.0.0.1]"
      if mechanism ~= "none" then client = ("%s, sasl_method=%s, sasl_username=%s"):format(client, mechanism, user) end
      assert.is_true(pf:log_shows(client), pf:log())
      assert.is_true(pf:log_shows(q .. ": message-id=" .. info.message_id), pf:log())
      assert.is_true(pf:log_shows(pattern(q .. ": to=<" .. rcpt .. ">, relay=none,") .. ".-status=sent", true), pf:log())
    end

    -- A probe ends with QUIT: Postfix's own disconnect line counts it, and
    -- nothing is queued. Each probe runs on a port of its own so that its
    -- disconnect line is the last one.
    for _, case in ipairs { { "auth", "submission", "ehlo=2 starttls=1 auth=1 quit=1 commands=5" },
        { "rcpt", "submission_plain", "ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 quit=1 commands=7" } } do
      it("quit_after " .. case[1] .. " ends the session with QUIT, as Postfix logs it, and queues nothing", function()
        local before = select(2, pf:log():gsub("message%-id=", ""))
        local res, info = test(p[case[2]], nil, { quit_after = case[1] })
        assert.is_table(res, info and info.Message)
        assert.is_true(pf:log_shows("disconnect from localhost[127.0.0.1] " .. case[3]), pf:log())
        assert.are.equal(before, select(2, pf:log():gsub("message%-id=", "")), "a message was queued")
      end)
    end

    it("starts in a few seconds, from its own configuration folder", function()
      assert.truthy(started_ms < 20000, started_ms)
      assert.is_true(pf:log_shows("daemon started -- version 3.7."), pf:log())
      assert.is_true(pf:log_shows("configuration " .. pf.dir .. "/postfix/etc"), pf:log())
      versions.postfix = "Postfix " .. pf:log():match("daemon started %-%- version (%S+),")
      versions.dovecot = "Dovecot " .. pf:log():match("Dovecot v(%S+)")
      versions.postgrey = H.sh("postgrey --version"):match("^(%S+ %S+)")
    end)

    it("MX port: STARTTLS, then CRAM-MD5 (the strongest offered) relays for the login", function()
      local res, info = test(p.mx)
      accepted(res, info, "CRAM-MD5", "starttls")
      assert.truthy(info.reply:match("^250 2%.0%.0 Ok: queued as " .. info.queue_id .. "$"), info.reply)
      logged(info, "CRAM-MD5", "alice", R.OUTSIDE)
    end)

    it("MX port: an anonymous client may send to the server's own domain", function()
      local rcpt = "ops@" .. R.POSTFIX_DOMAIN
      local res, info = test(p.mx, { user = false, to = rcpt })
      accepted(res, info, "none", "starttls")
      logged(info, "none", nil, rcpt)
    end)

    it("submission port (TLS required): CRAM-MD5", function()
      local res, info = test(p.submission)
      accepted(res, info, "CRAM-MD5", "starttls")
      logged(info, "CRAM-MD5", "alice", R.OUTSIDE)
    end)

    it("submission port offering PLAIN alone: PLAIN", function()
      local res, info = test(p.submission_plain, { user = "bob" })
      accepted(res, info, "PLAIN", "starttls")
      logged(info, "PLAIN", "bob", R.OUTSIDE)
    end)

    it("submission port offering LOGIN alone: LOGIN", function()
      local res, info = test(p.submission_login)
      accepted(res, info, "LOGIN", "starttls")
      logged(info, "LOGIN", "alice", R.OUTSIDE)
    end)

    it("implicit-TLS port (smtpd_tls_wrappermode): CRAM-MD5", function()
      local res, info = test(p.smtps, nil, { tls_mode = "implicit" })
      accepted(res, info, "CRAM-MD5", "implicit")
      logged(info, "CRAM-MD5", "alice", R.OUTSIDE)
    end)

    it("a password stored only as a hash works with PLAIN", function()
      local res, info = test(p.submission_plain, { user = "hashed" })
      accepted(res, info, "PLAIN", "starttls")
      logged(info, "PLAIN", "hashed", R.OUTSIDE)
    end)

    it("relay denied: anonymous client, outside recipient, MX port", function()
      local res, err = test(p.mx, { user = false })
      assert.is_nil(res)
      refused("postfix", "relay_denied", err, { stage = "rcpt", smtp_code = 554, enhanced_code = "5.7.1",
        kind = "relay_denied", says = { "Set RelayAuthenticationType to 2" }, not_says = { "SenderAccount", "check TestRecipient" } })
    end)

    it("client host rejected: anonymous client on the submission port", function()
      local res, err = test(p.submission, { user = false })
      assert.is_nil(res)
      refused("postfix", "client_host_rejected", err, { stage = "rcpt", smtp_code = 554, enhanced_code = "5.7.1",
        kind = "client_rejected", says = { "refused this machine's address" }, not_says = { "SenderAccount" } })
    end)

    it("sender not owned: alice sends as bob (reject_sender_login_mismatch)", function()
      local res, err = test(p.submission, { from = "bob@" .. R.DOMAIN })
      assert.is_nil(res)
      refused("postfix", "sender_not_owned", err, { stage = "rcpt", smtp_code = 553, enhanced_code = "5.7.1",
        kind = "sender_rejected", says = { "send as <bob@", "Send As" }, not_says = { "TestRecipient" } })
    end)

    -- No AUTH without TLS: whatever the server refuses later (a relay
    -- denial), the cause is that the configured credentials could not be
    -- used (SPEC: credentials are never skipped), and the fix is UseSSL.
    it("AUTH only after TLS: UseSSL false with credentials, outside recipient", function()
      local res, err = test(p.mx, { ssl = false })
      assert.is_nil(res)
      refused("postfix", "auth_only_after_tls", err, { stage = "auth", smtp_code = 554, enhanced_code = "5.7.1",
        kind = "auth_not_offered", says = { "It offers STARTTLS", "set UseSSL to true" }, not_says = { "SenderAccount" } })
      for _, line in ipairs(err.transcript) do assert.falsy(line:match("^C: AUTH"), line) end
    end)

    it("AUTH only after TLS: UseSSL false with credentials, local recipient", function()
      local res, err = test(p.mx, { ssl = false, to = "ops@" .. R.POSTFIX_DOMAIN })
      assert.is_nil(res)
      refused("postfix", "auth_only_after_tls_local_recipient", err, { stage = "auth",
        kind = "auth_not_offered", says = { "set UseSSL to true", "nothing was delivered" } })
      for _, line in ipairs(err.transcript) do assert.falsy(line:match("^C: AUTH"), line) end
    end)

    -- reject_sender_login_mismatch on a port that takes anonymous clients:
    -- alice's address without alice's login. Postfix delays the refusal
    -- to RCPT, and its text, not the stage, says what is wrong.
    it("sender not logged in: an owned address sent anonymously", function()
      local res, err = test(p.sender_check, { user = false, ssl = false, from = "alice@" .. R.DOMAIN })
      assert.is_nil(res)
      refused("postfix", "sender_not_logged_in", err, { stage = "rcpt", smtp_code = 553, enhanced_code = "5.7.1",
        kind = "auth_required", says = { "only from authenticated clients", "RelayAuthenticationType to 2" },
        not_says = { "check TestRecipient", "Send As" } })
    end)

    it("STARTTLS required: plain MAIL on the submission port", function()
      local res, err = test(p.submission, { user = false, ssl = false })
      assert.is_nil(res)
      refused("postfix", "starttls_required", err, { stage = "mail", smtp_code = 530, enhanced_code = "5.7.0",
        kind = "starttls_required", says = { "set UseSSL to true" }, not_says = { "SenderAccount" } })
    end)

    it("greylisted by postgrey: the first attempt", function()
      local res, err = test(p.greylist, { user = false, ssl = false, to = "ops@" .. R.POSTFIX_DOMAIN })
      assert.is_nil(res)
      refused("postfix", "greylisted", err, { stage = "rcpt", smtp_code = 450, enhanced_code = "4.2.0",
        kind = "greylisted", temporary = true, says = { "first attempt from a new client is expected to fail", "test again later" },
        not_says = { "check TestRecipient", "RelayAuthenticationType" } })
    end)

    it("connection rate limit (1 a minute): the second connection", function()
      local rcpt = "ops@" .. R.POSTFIX_DOMAIN
      local res, info = test(p.ratelimit, { user = false, ssl = false, to = rcpt })
      accepted(res, info, "none", "none")
      local err
      res, err = test(p.ratelimit, { user = false, ssl = false, to = rcpt })
      assert.is_nil(res)
      refused("postfix", "connection_rate_limited", err, { stage = "greeting", smtp_code = 421, enhanced_code = "4.7.0",
        kind = "rate_limited", temporary = true, says = { "went over its limits", "temporary" } })
      assert.is_true(pf:log_shows("warning: Connection rate limit exceeded: 2 from localhost[127.0.0.1]"), pf:log())
    end)

    it("a wrong password", function()
      local res, err = test(p.submission, { password = "not-" .. R.USERS.alice })
      assert.is_nil(res)
      -- CRAM-MD5 is refused, then PLAIN over TLS once more: refused too.
      refused("postfix", "auth_failed", err, { stage = "auth", smtp_code = 535, enhanced_code = "5.7.8",
        kind = "auth", says = { "rejected the credentials with PLAIN", "check RelayUsername" } })
      assert.is_true(pf:log_shows("cram-md5(alice,127.0.0.1): Password mismatch"), pf:log())
    end)

    -- Dovecot offers CRAM-MD5, but has only a hash of this password: the
    -- right password is refused like a wrong one (only Dovecot's log says
    -- why), so kfsmtp tries PLAIN over TLS once more, and says so.
    it("CRAM-MD5 offered, the password stored only as a hash: PLAIN once more, with a warning", function()
      local res, info = test(p.submission, { user = "hashed" })
      assert.is_table(res, info and info.Message)
      assert.are.equal("PLAIN", info.auth_mechanism)
      assert.truthy(table.concat(info.warnings, " "):find("refused CRAM-MD5 and accepted PLAIN", 1, true))
      logged(info, "PLAIN", "hashed", R.OUTSIDE)
      assert.is_true(pf:log_shows("Requested CRAM-MD5 scheme, but we have only SHA512-CRYPT"), pf:log())
    end)

    it("CRAM-MD5 forced on a hash-only password: refused, naming CRAM-MD5", function()
      local res, err = test(p.submission, { user = "hashed" }, { auth_mechanism = "CRAM-MD5" })
      assert.is_nil(res)
      refused("postfix", "cram_md5_hash_only", err, { stage = "auth", smtp_code = 535, enhanced_code = "5.7.8",
        kind = "auth", says = { "with CRAM-MD5", "set auth_mechanism to PLAIN or LOGIN" } })
    end)

    it("implicit-TLS port with UseSSL true on a port other than 465 (so STARTTLS): no greeting comes", function()
      local res, err = test(p.smtps, nil, { timeout_ms = 1500 })
      assert.is_nil(res)
      refused("postfix", "implicit_tls_port_without_tls", err, { stage = "greeting", status = 504,
        kind = "greeting_timeout", says = { 'Set tls_mode = "implicit" (or use port 465)' },
        not_says = { "set UseSSL to true" } })
    end)

    it("STARTTLS port with tls_mode implicit: a plain greeting instead of TLS", function()
      local res, err = test(p.submission, nil, { tls_mode = "implicit" })
      assert.is_nil(res)
      refused("postfix", "plain_port_with_implicit_tls", err, { stage = "tls", kind = "tls_mode",
        says = { "answered in plain text, not TLS" } })
    end)
  end)

  describe("Exim 4.96", function()
    local ex, p, tokens
    local started_ms
    local CLIENT, CLIENT_SECRET = "kfsmtp-realmail", "client-Secret-realmail-1"
    setup(function()
      -- Exim's oauth port takes what this endpoint issued last; Exim reads
      -- the file as its own user.
      tokens = H.start_token_server(CLIENT, CLIENT_SECRET)
      H.sh("chmod 0755 " .. H.q(tokens.dir) .. " && chmod 0644 " .. H.q(tokens.token_file))
      local t0 = H.now_ms()
      ex = R.start_exim { oauth_token_files = { tokens.token_file } }
      p = ex.ports
      started_ms = H.now_ms() - t0
    end)
    teardown(function() ex:stop() tokens:stop() end)

    -- Exim's line for an accepted message (<=, with the authenticator and
    -- the Message-ID) and its end (the :blackhole: router, Completed).
    local function logged(info, authenticator, user)
      local q = info.queue_id
      assert.is_true(ex:log_shows(("%s <= %s@%s H=(%s) [127.0.0.1] P=esmtpsa X=TLS1.3"):format(q, user, R.DOMAIN, HELO)), ex:log())
      assert.is_true(ex:log_shows(pattern(("A=%s:%s "):format(authenticator, user)) .. "S=%d+ " .. pattern("id=" .. info.message_id:sub(2, -2)), true), ex:log())
      assert.is_true(ex:log_shows(("%s => :blackhole: <%s> R=discard_all"):format(q, R.OUTSIDE)), ex:log())
      assert.is_true(ex:log_shows(q .. " Completed"), ex:log())
    end

    it("starts in a few seconds, from its own configuration file", function()
      assert.truthy(started_ms < 20000, started_ms)
      assert.is_true(ex:log_shows("exim 4.96 daemon started"), ex:log())
    end)

    it("submission port: STARTTLS, then CRAM-MD5 (the strongest offered)", function()
      local res, info = test(p.submission)
      accepted(res, info, "CRAM-MD5", "starttls")
      assert.truthy(info.greeting:find("ESMTP Exim 4.96", 1, true), info.greeting)
      versions.exim = info.greeting:match("ESMTP (Exim %S+)")
      assert.truthy(info.reply:match("^250 OK id=" .. pattern(info.queue_id) .. "$"), info.reply)
      logged(info, "CRAM", "alice")
    end)

    it("port offering PLAIN alone: PLAIN", function()
      local res, info = test(p.plain, { user = "bob" })
      accepted(res, info, "PLAIN", "starttls")
      logged(info, "PLAIN", "bob")
    end)

    it("port offering LOGIN alone: LOGIN", function()
      local res, info = test(p.login)
      accepted(res, info, "LOGIN", "starttls")
      logged(info, "LOGIN", "alice")
    end)

    -- Type 3 against a real server: Exim's plaintext driver takes the
    -- XOAUTH2 initial response and checks the bearer token.
    local function oauth_test()
      local mailbox = "alice@" .. R.DOMAIN
      return kfsmtp.open(H.store_path()):test({ Host = "127.0.0.1", Port = p.oauth, UseSSL = true,
        RelayAuthenticationType = 3, RelayUsername = mailbox, SenderAccount = mailbox, TestRecipient = R.OUTSIDE,
        ClientId = CLIENT, ClientSecret = CLIENT_SECRET, Scope = "smtp", TokenEndpoint = tokens.url },
        { ca_file = H.certs().ca, helo = HELO, transcript = true, timeout_ms = 15000 })
    end

    it("port offering XOAUTH2 alone: type 3 fetches a token and logs in with it", function()
      local fetched = tokens:requests()
      local res, info = oauth_test()
      accepted(res, info, "XOAUTH2", "starttls")
      assert.are.equal(fetched + 1, tokens:requests())
      assert.is_true(ex:log_shows(("%s <= alice@%s H=(%s) [127.0.0.1] P=esmtpsa X=TLS1.3"):format(info.queue_id, R.DOMAIN, HELO)), ex:log())
      assert.is_true(ex:log_shows(("A=XOAUTH2:alice@%s "):format(R.DOMAIN)), ex:log())
      local token = tokens:token()
      assert.is_false(H.mentions(info, token))
    end)

    it("port offering XOAUTH2 alone: a token Exim no longer takes is fetched again, once", function()
      oauth_test() -- a token in the cache
      local fetched = tokens:requests()
      H.write(tokens.token_file, "revoked\n")
      local res, info = oauth_test()
      accepted(res, info, "XOAUTH2", "starttls")
      assert.are.equal(fetched + 1, tokens:requests())
      assert.is_true(ex:log_shows("XOAUTH2 authenticator failed"), ex:log())
    end)

    it("implicit-TLS port (tls_on_connect_ports): CRAM-MD5", function()
      local res, info = test(p.smtps, nil, { tls_mode = "implicit" })
      accepted(res, info, "CRAM-MD5", "implicit")
      logged(info, "CRAM", "alice")
    end)

    it("relay denied: anonymous client, outside recipient", function()
      local res, err = test(p.submission, { user = false })
      assert.is_nil(res)
      refused("exim", "relay_denied", err, { stage = "rcpt", smtp_code = 550,
        kind = "relay_denied", says = { "Set RelayAuthenticationType to 2" }, not_says = { "SenderAccount" } })
    end)

    it("AUTH only after TLS: UseSSL false with credentials, outside recipient", function()
      local res, err = test(p.submission, { ssl = false })
      assert.is_nil(res)
      refused("exim", "auth_only_after_tls", err, { stage = "auth", smtp_code = 550,
        kind = "auth_not_offered", says = { "It offers STARTTLS", "set UseSSL to true" } })
      for _, line in ipairs(err.transcript) do assert.falsy(line:match("^C: AUTH"), line) end
    end)

    it("AUTH only after TLS: UseSSL false with credentials, local recipient", function()
      local res, err = test(p.submission, { ssl = false, to = "ops@" .. R.EXIM_DOMAIN })
      assert.is_nil(res)
      refused("exim", "auth_only_after_tls_local_recipient", err, { stage = "auth",
        kind = "auth_not_offered", says = { "set UseSSL to true" } })
    end)

    it("a wrong password", function()
      local res, err = test(p.submission, { password = "not-" .. R.USERS.alice })
      assert.is_nil(res)
      refused("exim", "auth_failed", err, { stage = "auth", smtp_code = 535,
        kind = "auth", says = { "rejected the credentials with PLAIN", "check RelayUsername" } })
      assert.is_true(ex:log_shows("CRAM authenticator failed for (" .. HELO .. ") [127.0.0.1]: 535 Incorrect authentication data (set_id=alice)"), ex:log())
    end)

    it("implicit-TLS port with UseSSL true on a port other than 465 (so STARTTLS): no greeting comes", function()
      local res, err = test(p.smtps, nil, { timeout_ms = 1500 })
      assert.is_nil(res)
      refused("exim", "implicit_tls_port_without_tls", err, { stage = "greeting", status = 504,
        kind = "greeting_timeout", says = { 'Set tls_mode = "implicit" (or use port 465)' },
        not_says = { "set UseSSL to true" } })
    end)

    it("STARTTLS port with tls_mode implicit: a plain greeting instead of TLS", function()
      local res, err = test(p.submission, nil, { tls_mode = "implicit" })
      assert.is_nil(res)
      refused("exim", "plain_port_with_implicit_tls", err, { stage = "tls", kind = "tls_mode",
        says = { "answered in plain text, not TLS" } })
    end)
  end)
end)
