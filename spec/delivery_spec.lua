-- Real test deliveries to aiosmtpd on loopback: plain, STARTTLS, implicit
-- TLS, AUTH; certificate checks; failures by stage; what arrived.
local kfsmtp = require "kfsmtp"
local H = require "helpers"

local SECRET = "Tr0ub4dor&3-unique"
local USER = "CORP\\svc-mail"

local function request(srv, over)
  local t = { Host = "127.0.0.1", Port = srv and srv.port or 25, SenderAccount = "kf@example.com",
    SenderName = "Keyfactor Command", TestRecipient = "ops@example.com" }
  for k, v in pairs(over or {}) do t[k] = v end
  return t
end

local function store() return kfsmtp.open(H.store_path()) end

local function wait_messages(srv, n)
  local deadline = H.now_ms() + 5000
  local list = srv:messages()
  while #list < n and H.now_ms() < deadline do
    H.sleep(0.02)
    list = srv:messages()
  end
  return list
end

describe("a plain delivery", function()
  local srv
  setup(function() srv = H.start_smtp { mode = "plain" } end)
  teardown(function() srv:stop() end)

  it("is accepted, with the envelope and headers of SPEC §2", function()
    local before = #srv:messages()
    local res, info = store():test(request(srv), { helo = "kf-test.example.net" })
    assert.is_nil(info and info.Message)
    assert.are.same({ Host = "127.0.0.1", Id = 1, Port = srv.port, RelayAuthenticationType = 0,
      RelayUsername = "", SenderAccount = "kf@example.com", SenderName = "Keyfactor Command",
      TestRecipient = "ops@example.com", UseSSL = false }, res)
    local msgs = wait_messages(srv, before + 1)
    local m = msgs[before + 1]
    assert.are.equal("kf@example.com", m.meta.mail_from)
    assert.are.same({ "ops@example.com" }, m.meta.rcpt_tos)
    assert.are.equal("kf-test.example.net", m.meta.helo)
    assert.is_false(m.meta.tls)
    local headers, body = H.parse_message(m.raw)
    assert.are.equal("Keyfactor Command <kf@example.com>", headers.from)
    assert.are.equal("ops@example.com", headers.to)
    assert.are.equal(info.message_id, headers["message-id"])
    assert.truthy(headers.date:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d %+0000$"), headers.date)
    assert.truthy(headers.subject and #headers.subject > 0)
    assert.are.equal("1.0", headers["mime-version"])
    assert.are.equal("text/plain; charset=UTF-8", headers["content-type"])
    assert.truthy(body:find("127.0.0.1", 1, true))
    assert.truthy(body:find(tostring(srv.port), 1, true))
    assert.truthy(body:find("no TLS", 1, true))
    -- CRLF only, every line within 998 octets.
    assert.falsy(m.raw:gsub("\r\n", ""):find("[\r\n]"))
    for line in m.raw:gmatch("([^\n]*)\n") do assert.is_true(#line <= 999) end
  end)

  it("reports what happened in info", function()
    local _, info = assert(store():test(request(srv)))
    assert.are.equal("none", info.tls.mode)
    assert.is_false(info.tls.verified)
    assert.are.equal("none", info.auth_mechanism)
    assert.truthy(info.greeting:match("^220"))
    assert.truthy(info.reply:match("^250 "), info.reply)
    assert.truthy(info.queue_id and info.queue_id:match("^KF%d+$"), info.reply)
    assert.truthy(info.message_id:match("^<.+@example%.com>$"))
    for _, k in ipairs { "connect", "tls", "auth", "delivery", "total" } do
      assert.are.equal("number", type(info.timings[k]), k)
      assert.is_true(info.timings[k] >= 0)
    end
    assert.is_true(info.timings.total >= info.timings.delivery)
    assert.are.same({}, info.warnings)
    assert.is_nil(info.transcript)
  end)

  it("encodes a non-ASCII display name as RFC 2047 words", function()
    local before = #srv:messages()
    assert(store():test(request(srv, { SenderName = "Zertifikatsstelle Köln – Prüfung" })))
    local m = wait_messages(srv, before + 1)[before + 1]
    local headers = H.parse_message(m.raw)
    assert.truthy(headers.from:match("^=%?UTF%-8%?Q%?.*%?= <kf@example%.com>$"), headers.from)
    assert.truthy(headers.from:find("K=C3=B6ln", 1, true))
    local raw_from = m.raw:match("From: (.-)\r\n[^ ]")
    for word in raw_from:gmatch("=%?[^ ]-%?=") do assert.is_true(#word <= 75) end
  end)

  it("quotes an ASCII display name with specials", function()
    local before = #srv:messages()
    assert(store():test(request(srv, { SenderName = 'Ops, "Night" Shift' })))
    local headers = H.parse_message(wait_messages(srv, before + 1)[before + 1].raw)
    assert.are.equal('"Ops, \\"Night\\" Shift" <kf@example.com>', headers.from)
  end)

  it("names the recipient stage, code, enhanced code and reply when RCPT is refused", function()
    local before = #srv:messages()
    local res, err = store():test(request(srv, { TestRecipient = "nobody@example.com" }), { transcript = true })
    assert.is_nil(res)
    assert.are.equal("rcpt", err.stage)
    assert.are.equal(502, err.status)
    assert.are.equal(550, err.smtp_code)
    assert.are.equal("5.1.1", err.enhanced_code)
    assert.truthy(err.smtp_reply:find("User unknown", 1, true))
    assert.truthy(err.Message:find("nobody@example.com", 1, true))
    assert.truthy(err.Message:find("TestRecipient", 1, true))
    local t = table.concat(err.transcript, "\n")
    assert.truthy(t:find("C: RCPT TO:<nobody@example.com>\nS: 550 5.1.1", 1, true), t)
    assert.are.equal(before, #srv:messages())
  end)

  it("names the mail stage when the sender is refused", function()
    local _, err = store():test(request(srv, { SenderAccount = "blocked@example.com" }))
    assert.are.equal("mail", err.stage)
    assert.are.equal(553, err.smtp_code)
    assert.are.equal("5.7.1", err.enhanced_code)
    assert.truthy(err.Message:find("SenderAccount", 1, true))
  end)

  it("gives a transcript of the dialog when asked", function()
    local _, info = assert(store():test(request(srv), { transcript = true }))
    local t = table.concat(info.transcript, "\n")
    assert.truthy(t:find("^S: 220"))
    assert.truthy(t:find("C: EHLO ", 1, true))
    assert.truthy(t:find("C: MAIL FROM:<kf@example.com>", 1, true))
    assert.truthy(t:find("C: RCPT TO:<ops@example.com>", 1, true))
    assert.truthy(t:find("C: DATA", 1, true))
    assert.truthy(t:find("S: 250 2.0.0 OK", 1, true))
  end)

  it("refuses to go on without AUTH when credentials are set but AUTH is not offered", function()
    local before = #srv:messages()
    local _, err = store():test(request(srv, { RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET }))
    assert.are.equal("auth", err.stage)
    assert.are.equal("0xA0530052", err.ErrorCode)
    assert.truthy(err.Message:find("UseSSL", 1, true))
    assert.are.equal(before, #srv:messages(), "nothing was delivered")
    assert.is_false(H.mentions(err, SECRET))
  end)

  it("fails at the tls stage, never downgrading, when UseSSL is on and STARTTLS is not offered", function()
    local before = #srv:messages()
    local _, err = store():test(request(srv, { UseSSL = true }), { transcript = true })
    assert.are.equal("tls", err.stage)
    assert.are.equal("0xA0530032", err.ErrorCode)
    assert.truthy(err.Message:find("STARTTLS", 1, true))
    assert.falsy(table.concat(err.transcript, "\n"):find("MAIL FROM", 1, true))
    assert.are.equal(before, #srv:messages())
  end)
end)

describe("STARTTLS with AUTH", function()
  local srv, certs
  setup(function()
    certs = H.certs()
    srv = H.start_smtp { mode = "starttls", auth = USER .. ":" .. SECRET, require_tls = true, auth_required = true }
  end)
  teardown(function() srv:stop() end)

  it("delivers over verified TLS with the strongest common mechanism", function()
    local before = #srv:messages()
    local res, info = store():test(request(srv, { Host = "localhost", UseSSL = true,
      RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET }),
      { ca_file = certs.ca, transcript = true })
    assert.is_nil(info.Message)
    assert.is_true(res.UseSSL)
    assert.are.equal("starttls", info.tls.mode)
    assert.is_true(info.tls.verified)
    assert.truthy(info.tls.version:match("^TLSv1%.[23]$"), info.tls.version)
    assert.truthy(info.tls.cert.subject:find("CN=localhost", 1, true))
    assert.truthy(info.tls.cert.issuer:find("kfsmtp test CA", 1, true))
    assert.truthy(info.tls.cert.sha256:match("^%x+$") and #info.tls.cert.sha256 == 64)
    assert.truthy(info.tls.cert.not_after:match("^%d%d%d%d%-%d%d%-%d%dT"))
    local names = table.concat(info.tls.cert.names, ",")
    assert.truthy(names:find("localhost", 1, true) and names:find("127.0.0.1", 1, true))
    -- aiosmtpd offers LOGIN and PLAIN; libcurl ranks PLAIN (one round trip) first.
    assert.are.equal("PLAIN", info.auth_mechanism)
    assert.is_true(info.timings.tls > 0)
    assert.is_true(info.timings.auth > 0)
    local m = wait_messages(srv, before + 1)[before + 1]
    assert.is_true(m.meta.tls)
    assert.are.equal(USER, m.meta.auth_login)
    assert.truthy(H.parse_message(m.raw)["content-type"])
    -- The secret appears nowhere in what we return.
    assert.is_false(H.mentions(res, SECRET))
    assert.is_false(H.mentions(info, SECRET))
    local t = table.concat(info.transcript, "\n")
    -- The AUTH line keeps its mechanism; every payload line is masked.
    local exchange = t:match("\n(C: AUTH PLAIN.-)\nS: 235")
    assert.truthy(exchange, t)
    for line in exchange:gmatch("[^\n]+") do
      assert.truthy(line:match("^C: AUTH PLAIN$") or line:match("^C: AUTH PLAIN %*%*%*$")
        or line == "C: ***" or line:match("^S: 334"), line)
    end
    -- The credentials ride on the AUTH line (SASL initial response): one
    -- round trip, no 334 challenge in between.
    assert.are.equal("C: AUTH PLAIN ***", exchange)
    -- Neither the secret nor the base64 of the username (a prefix of any
    -- PLAIN or LOGIN payload) appears.
    assert.falsy(t:find("Q09SUFxzdmMtbWFpbA", 1, true))
    assert.falsy(t:find("AENPUlBcc3ZjLW1haWwA", 1, true))
  end)

  it("fails verification against the system store, naming the fix", function()
    local _, err = store():test(request(srv, { Host = "localhost", UseSSL = true,
      RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET }))
    assert.are.equal("tls", err.stage)
    assert.are.equal("0xA0530031", err.ErrorCode)
    assert.truthy(err.Message:find("ca_file", 1, true))
  end)

  it("fails verification with a CA that did not sign the certificate", function()
    local _, err = store():test(request(srv, { Host = "localhost", UseSSL = true,
      RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET }), { ca_file = certs.other_ca })
    assert.are.equal("0xA0530031", err.ErrorCode)
  end)

  it("tls_verify = false connects and says so", function()
    local _, info = assert(store():test(request(srv, { Host = "localhost", UseSSL = true,
      RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET }), { tls_verify = false }))
    assert.is_false(info.tls.verified)
    assert.truthy(table.concat(info.warnings, " "):find("verification is off", 1, true))
  end)

  it("reports rejected credentials at the auth stage with the server's codes", function()
    local _, err = store():test(request(srv, { Host = "localhost", UseSSL = true,
      RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = "wrong-" .. SECRET }),
      { ca_file = certs.ca, transcript = true })
    assert.are.equal("auth", err.stage)
    assert.are.equal("0xA0530050", err.ErrorCode)
    assert.are.equal(535, err.smtp_code)
    assert.are.equal("5.7.8", err.enhanced_code)
    assert.truthy(err.Message:find("RelayPassword", 1, true))
    assert.is_false(H.mentions(err, SECRET))
  end)

  it("uses the stored password when a test omits it for the stored Host and username", function()
    local s = store()
    assert(s:update(request(srv, { Host = "localhost", UseSSL = true,
      RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET })))
    local form = s:get() -- what a form loaded with GET would send back
    form.TestRecipient = "ops@example.com"
    local _, info = s:test(form, { ca_file = certs.ca })
    assert.is_nil(info.Message)
    assert.are.equal("PLAIN", info.auth_mechanism)
  end)
end)

describe("implicit TLS", function()
  local srv, certs
  setup(function()
    certs = H.certs()
    srv = H.start_smtp { mode = "implicit", auth = USER .. ":" .. SECRET }
  end)
  teardown(function() srv:stop() end)

  it("is used with tls_mode = implicit on an ephemeral port", function()
    local before = #srv:messages()
    local _, info = store():test(request(srv, { UseSSL = true, RelayAuthenticationType = 2,
      RelayUsername = USER, RelayPassword = SECRET }), { ca_file = certs.ca, tls_mode = "implicit" })
    assert.is_nil(info.Message)
    assert.are.equal("implicit", info.tls.mode)
    assert.is_true(info.tls.verified)
    local m = wait_messages(srv, before + 1)[before + 1]
    assert.is_true(m.meta.tls)
    assert.are.equal(USER, m.meta.auth_login)
  end)

  it("a plain SMTP client meets silence and is told about implicit TLS", function()
    local t0 = H.now_ms()
    local _, err = store():test(request(srv), { connect_timeout_ms = 1000 })
    assert.is_true(H.now_ms() - t0 < 3000)
    assert.are.equal("greeting", err.stage)
    assert.are.equal(504, err.status)
    assert.truthy(err.Message:find("implicit", 1, true))
  end)
end)

describe("pinned_pubkey", function()
  it("accepts the server's own key and refuses any other", function()
    local certs = H.certs()
    local srv = H.start_smtp { mode = "starttls" }
    finally(function() srv:stop() end)
    local pin = H.sh((H.plain .. "openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64"):format(H.q(certs.cert))):gsub("%s+", "")
    local other = H.sh((H.plain .. "openssl x509 -in %s -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | openssl enc -base64"):format(H.q(certs.other_ca))):gsub("%s+", "")
    local req = request(srv, { Host = "localhost", UseSSL = true })
    local _, info = store():test(req, { ca_file = certs.ca, pinned_pubkey = "sha256//" .. pin })
    local _, err = store():test(req, { ca_file = certs.ca, pinned_pubkey = "sha256//" .. other })
    srv:stop()
    assert.is_nil(info.Message)
    assert.is_true(info.tls.verified)
    assert.are.equal("tls", err.stage)
    assert.are.equal("0xA0530031", err.ErrorCode)
    assert.truthy(err.Message:find("pinned_pubkey", 1, true))
  end)
end)

describe("an IPv6 literal Host", function()
  it("is bracketed for libcurl and delivers", function()
    local srv = H.start_smtp { mode = "plain", host = "::1" }
    finally(function() srv:stop() end)
    local before = #srv:messages()
    local res, info = store():test(request(srv, { Host = "::1" }))
    local res2, info2 = store():test(request(srv, { Host = "[::1]" }))
    local n = #wait_messages(srv, before + 2)
    srv:stop()
    assert.is_nil(info.Message)
    assert.is_nil(info2.Message)
    assert.are.equal("::1", res.Host)
    assert.are.equal("[::1]", res2.Host)
    assert.are.equal(before + 2, n)
  end)
end)

describe("a certificate for another host name", function()
  it("fails at the tls stage naming the host", function()
    local certs = H.certs()
    local srv = H.start_smtp { mode = "starttls", cert = certs.wronghost_cert, key = certs.wronghost_key }
    finally(function() srv:stop() end)
    local _, err = store():test(request(srv, { Host = "localhost", UseSSL = true }), { ca_file = certs.ca })
    srv:stop()
    assert.are.equal("tls", err.stage)
    assert.are.equal("0xA0530031", err.ErrorCode)
    assert.truthy(err.Message:find("localhost", 1, true))
  end)
end)

describe("a plain server on an implicit-TLS setting", function()
  it("is named as a wrong TLS mode", function()
    local srv = H.start_smtp { mode = "plain" }
    finally(function() srv:stop() end)
    local _, err = store():test(request(srv, { UseSSL = true }), { tls_mode = "implicit", timeout_ms = 5000 })
    srv:stop()
    assert.are.equal("tls", err.stage)
    assert.are.equal("0xA0530033", err.ErrorCode)
    assert.truthy(err.Message:find("plain text", 1, true))
  end)
end)

describe("a relay that accepts STARTTLS and goes on in plain text", function()
  it("is named as broken TLS, and the fix is not to turn TLS off", function()
    local srv = H.start_hostile { behaviour = "starttls_plain" }
    finally(function() srv:stop() end)
    local _, err = store():test(request(srv, { UseSSL = true }), { timeout_ms = 5000 })
    assert.are.equal("tls", err.stage)
    assert.are.equal("0xA0530030", err.ErrorCode)
    assert.truthy(err.Message:find("accepted STARTTLS but then answered in plain text", 1, true), err.Message)
    assert.truthy(err.Message:find("do not set UseSSL to false", 1, true), err.Message)
  end)
end)

describe("an unreachable or silent server", function()
  it("a closed port fails at connect, at once", function()
    local t0 = H.now_ms()
    local _, err = store():test(request(nil, { Port = H.closed_port() }), { connect_timeout_ms = 2000 })
    assert.is_true(H.now_ms() - t0 < 2000)
    assert.are.equal("connect", err.stage)
    assert.are.equal(502, err.status)
    assert.truthy(err.Message:lower():find("refused", 1, true))
  end)

  it("a server that never greets fails at greeting within the timeout", function()
    local srv = H.start_smtp { behaviour = "silent" }
    finally(function() srv:stop() end)
    local t0 = H.now_ms()
    local _, err = store():test(request(srv), { connect_timeout_ms = 800, timeout_ms = 5000 })
    local took = H.now_ms() - t0
    srv:stop()
    assert.is_true(took >= 700 and took < 2500, "took " .. took .. " ms")
    assert.are.equal("greeting", err.stage)
    assert.are.equal(504, err.status)
    assert.are.equal("0xA0530021", err.ErrorCode)
  end)

  it("a 421 greeting fails at greeting with the server's reply", function()
    local srv = H.start_smtp { behaviour = "greet421" }
    finally(function() srv:stop() end)
    local _, err = store():test(request(srv))
    srv:stop()
    assert.are.equal("greeting", err.stage)
    assert.are.equal(421, err.smtp_code)
    assert.are.equal("4.3.2", err.enhanced_code)
  end)

  it("a host name that does not resolve fails at resolve", function()
    local _, err = store():test(request(nil, { Host = "no-such-host.invalid" }), { connect_timeout_ms = 3000 })
    assert.are.equal("resolve", err.stage)
    assert.are.equal(502, err.status)
  end)
end)

describe("credentials without TLS", function()
  it("are allowed, and info.warnings says so", function()
    local srv = H.start_smtp { mode = "plain", auth = USER .. ":" .. SECRET, auth_plaintext = true }
    finally(function() srv:stop() end)
    local _, info = store():test(request(srv, { RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET }))
    srv:stop()
    assert.is_nil(info.Message)
    assert.truthy(table.concat(info.warnings, " "):find("without TLS", 1, true))
  end)
end)

describe("a server that offers CRAM-MD5 but cannot check it", function()
  local srv
  setup(function() srv = H.start_hostile { behaviour = "cram_broken", starttls = true } end)
  teardown(function() srv:stop() end)

  local function login_req()
    return request(srv, { Host = "localhost", UseSSL = true, RelayAuthenticationType = 2,
      RelayUsername = "svc", RelayPassword = "pw-cram" })
  end

  it("is tried once more with PLAIN over TLS, and info.warnings names both mechanisms", function()
    local res, info = store():test(login_req(), { ca_file = H.certs().ca })
    assert.is_table(res, info and info.Message)
    assert.are.equal("PLAIN", info.auth_mechanism)
    local warned = table.concat(info.warnings, " ")
    assert.truthy(warned:find("refused CRAM-MD5 and accepted PLAIN", 1, true), warned)
    local cmds = srv:commands()
    assert.truthy(cmds:find("AUTH CRAM-MD5", 1, true) and cmds:find("AUTH PLAIN", 1, true), cmds)
  end)

  it("goes straight to the mechanism auth_mechanism forces", function()
    os.remove(srv.dir .. "/commands.log")
    local res, info = store():test(login_req(), { ca_file = H.certs().ca, auth_mechanism = "LOGIN" })
    assert.is_table(res, info and info.Message)
    assert.are.equal("LOGIN", info.auth_mechanism)
    assert.falsy(srv:commands():find("CRAM-MD5", 1, true))
    assert.are.equal(0, #info.warnings)
  end)

  it("names the refused mechanism when it is forced and refused", function()
    local _, err = store():test(login_req(), { ca_file = H.certs().ca, auth_mechanism = "CRAM-MD5" })
    assert.are.equal("auth", err.stage)
    assert.truthy(err.Message:find("with CRAM-MD5", 1, true), err.Message)
  end)

  it("is not tried with PLAIN without TLS", function()
    local _, err = store():test(request(srv, { RelayAuthenticationType = 2, RelayUsername = "svc", RelayPassword = "pw" }),
      { tls_mode = "none" })
    assert.are.equal("auth", err.stage)
    assert.truthy(err.Message:find("CRAM-MD5", 1, true), err.Message)
  end)
end)
