-- Unit specs for kfsmtp.diagnosis: one case per branch of from_delivery,
-- fed the result tables kfsmtp.core.deliver returns for a failed delivery
-- (built here by hand: no server), and the reply parsing.
local diagnosis = require "kfsmtp.diagnosis"
local errors = require "kfsmtp.errors"
local core = require "kfsmtp.core"
local H = require "helpers"
local with = H.with

local CURLE = core.CURLE
-- libcurl codes the diagnosis does not single out (so the core does not
-- export them); the values are libcurl's.
local COULDNT_RESOLVE_HOST, COULDNT_CONNECT, WEIRD_SERVER_REPLY = 6, 7, 8
local SSL_CONNECT_ERROR, ABORTED_BY_CALLBACK, SEND_ERROR, RECV_ERROR, LOGIN_DENIED = 35, 42, 55, 56, 67


local CTX = { host = "mail.example.com", port = 587, tls_mode = "starttls", sender = "kf@example.com",
  recipient = "ops@example.com", oauth = false, connect_timeout_ms = 10000, timeout_ms = 30000 }

local EHLO = { "250-mail.example.com", "250-PIPELINING", "250-SIZE 10240000", "250-STARTTLS",
  "250-AUTH PLAIN LOGIN", "250-ENHANCEDSTATUSCODES", "250 8BITMIME" }

-- What kfsmtp.core.deliver returns when a delivery fails at `stage`.
local function failed(stage, curl_code, curl_error, over)
  return with({ ok = false, stage = stage, curl_code = curl_code, curl_error = curl_error, reply = "",
    server_spoke = true, auth_sent = false, auth_not_offered = false, ehlo = EHLO }, over)
end

local function timed_out(stage, over)
  return failed(stage, CURLE.OPERATION_TIMEDOUT, "Operation timed out after 10000 milliseconds with 0 bytes received", over)
end

-- from_delivery(r, ctx) must give an error of `want.kind`, with its
-- ErrorCode and want.status, at r.stage, with the SMTP reply parsed into
-- want.smtp_code / enhanced_code (nil when absent), and a Message holding
-- every phrase of want.says and none of want.not_says.
local function diagnosed(r, ctx_over, want)
  local err = diagnosis.from_delivery(r, with(CTX, ctx_over))
  assert.is_true(errors.is_error(err))
  assert.are.equal(want.kind, err.kind)
  assert.are.equal(errors.CODES[want.kind][1], err.ErrorCode)
  assert.are.equal(want.status, err.status)
  assert.are.equal(want.stage or r.stage, err.stage)
  assert.is_nil(err.field)
  assert.are.equal(want.smtp_code, err.smtp_code)
  assert.are.equal(want.enhanced_code, err.enhanced_code)
  -- smtp_reply is the reply that failed: none when the last one was a success.
  assert.are.equal(want.smtp_code and r.reply or nil, err.smtp_reply)
  assert.are.equal(want.smtp_code ~= nil and want.smtp_code < 500, err.temporary)
  assert.are.equal(r.curl_error, err.detail)
  for _, phrase in ipairs(want.says) do
    assert.truthy(err.Message:find(phrase, 1, true), ("Message %q lacks %q"):format(err.Message, phrase))
  end
  for _, phrase in ipairs(want.not_says or {}) do
    assert.falsy(err.Message:find(phrase, 1, true), ("Message %q has %q"):format(err.Message, phrase))
  end
  return err
end

describe("diagnosis.from_delivery, stage resolve", function()
  it("names the host and points at Host and DNS", function()
    diagnosed(failed("resolve", COULDNT_RESOLVE_HOST, "Could not resolve host: mail.example.com", { server_spoke = false }), nil,
      { kind = "resolve", status = 502, says = { 'Could not resolve the host name "mail.example.com"',
        "check Host for typos", "(Could not resolve host: mail.example.com)" } })
  end)
end)

describe("diagnosis.from_delivery, stage connect", function()
  it("a refused connection gives the OS error and points at Host and Port", function()
    local r = failed("connect", COULDNT_CONNECT, "Failed to connect to mail.example.com port 587 after 2 ms: Couldn't connect to server",
      { server_spoke = false, os_error = "Connection refused" })
    diagnosed(r, nil, { kind = "connect", status = 502,
      says = { "Could not connect to mail.example.com port 587: Connection refused.", "Check Host and Port" } })
  end)

  it("without an OS error, libcurl's text stands in", function()
    local r = failed("connect", COULDNT_CONNECT, "Couldn't connect to server", { server_spoke = false })
    diagnosed(r, nil, { kind = "connect", status = 502, says = { "mail.example.com port 587: Couldn't connect to server." } })
  end)

  it("a timeout is connect_timeout, a 504 rendering connect_timeout_ms", function()
    local r = timed_out("connect", { server_spoke = false })
    diagnosed(r, nil, { kind = "connect_timeout", status = 504,
      says = { "No TCP connection to mail.example.com port 587 within 10 s", "check Host, Port and the network path" },
      not_says = { "Timed out at stage" } })
    diagnosed(r, { connect_timeout_ms = 2500 }, { kind = "connect_timeout", status = 504, says = { "within 2500 ms" } })
  end)
end)

describe("diagnosis.from_delivery, stage greeting", function()
  it("a refusing greeting is quoted, with its codes", function()
    local r = failed("greeting", WEIRD_SERVER_REPLY, "Got unexpected smtp-server response: 554", { reply = "554 5.3.2 Server busy" })
    diagnosed(r, nil, { kind = "greeting", status = 502, smtp_code = 554, enhanced_code = "5.3.2",
      says = { "The server at mail.example.com port 587 refused the session at the greeting: 554 5.3.2 Server busy.", "try later" } })
  end)

  it("no greeting on a plain port suggests implicit TLS (UseSSL)", function()
    local r = failed("greeting", RECV_ERROR, "Failure when receiving data from the peer", { server_spoke = false })
    diagnosed(r, { port = 465, tls_mode = "none" }, { kind = "greeting", status = 502,
      says = { "mail.example.com port 465 accepted the connection but sent no SMTP greeting.", "set UseSSL to true", 'tls_mode = "implicit"' },
      not_says = { "within" } })
  end)

  it("no greeting in time with implicit TLS is greeting_timeout, within the shorter timeout", function()
    local r = timed_out("greeting", { server_spoke = false })
    diagnosed(r, { tls_mode = "implicit", port = 465, timeout_ms = 1500 }, { kind = "greeting_timeout", status = 504,
      says = { "sent no SMTP greeting within 1500 ms.", "Check that it is an SMTP server." },
      not_says = { "UseSSL", "Timed out at stage" } })
  end)

  it("a timeout wins over a reply, and a 220 is no refusal", function()
    local r = timed_out("greeting", { reply = "220-mail.example.com ESMTP" })
    diagnosed(r, { tls_mode = "none" }, { kind = "greeting_timeout", status = 504,
      says = { "sent no SMTP greeting within 10 s.", "set UseSSL to true" } })
  end)

  it("UseSSL already true on an implicit-TLS port other than 465 says tls_mode implicit, not UseSSL", function()
    local r = timed_out("greeting", { server_spoke = false })
    diagnosed(r, { port = 2465 }, { kind = "greeting_timeout", status = 504,
      says = { "UseSSL is true, but on port 2465 that means STARTTLS", 'Set tls_mode = "implicit" (or use port 465)' },
      not_says = { "set UseSSL to true" } })
  end)
end)

describe("diagnosis.from_delivery, stage tls", function()
  local function tls_failure(curl_code, curl_error, over)
    return failed("tls", curl_code, curl_error, over)
  end

  it("no STARTTLS offered is starttls_missing: no fallback to plain text", function()
    diagnosed(tls_failure(CURLE.USE_SSL_FAILED, "STARTTLS not supported."), nil, { kind = "starttls_missing", status = 502,
      says = { "did not offer STARTTLS", "kfsmtp never falls back to plain text", "set UseSSL to false" } })
  end)

  it("a plain-text reply where TLS was due is tls_mode, whatever OpenSSL's words", function()
    -- The core sets tls_plain_reply when a record header it read was a
    -- reply code ("220 "); OpenSSL's message is not read.
    for _, detail in ipairs { "error:0A00010B:SSL routines::wrong version number",
      "error:0A0000C6:SSL routines::packet length too long", "some future wording" } do
      diagnosed(tls_failure(SSL_CONNECT_ERROR, "OpenSSL SSL_connect: " .. detail, { tls_plain_reply = true }),
        { tls_mode = "implicit", port = 25 },
        { kind = "tls_mode", status = 502, says = { "mail.example.com port 25 answered in plain text, not TLS: port 25 speaks plain SMTP.",
          "Set UseSSL to false", 'tls_mode = "starttls"' } })
    end
    diagnosed(tls_failure(SSL_CONNECT_ERROR, "OpenSSL SSL_connect: error:0A00010B:SSL routines::wrong version number"),
      { tls_mode = "implicit", port = 465 }, { kind = "tls", status = 502, says = { "failed (" }, not_says = { "plain text" } })
  end)

  it("plain text after an accepted STARTTLS is a broken relay, never a reason to turn TLS off", function()
    diagnosed(tls_failure(SSL_CONNECT_ERROR, "OpenSSL SSL_connect: error:0A00010B:SSL routines::wrong version number",
      { tls_plain_reply = true }), { tls_mode = "starttls", port = 587 },
      { kind = "tls", status = 502, says = { "accepted STARTTLS but then answered in plain text",
        "do not set UseSSL to false" }, not_says = { "Set UseSSL to false" } })
  end)

  it("a pinned key mismatch points at pinned_pubkey", function()
    diagnosed(tls_failure(CURLE.SSL_PINNEDPUBKEYNOTMATCH, "SSL: public key does not match pinned public key"), nil,
      { kind = "tls_verify", status = 502, says = { "does not match pinned_pubkey" } })
  end)

  it("an unreadable CA bundle points at ca_file", function()
    diagnosed(tls_failure(CURLE.SSL_CACERT_BADFILE, "error setting certificate file: /etc/kfsmtp/ca.pem"), nil,
      { kind = "tls_verify", status = 502, says = { "The CA bundle could not be read (error setting certificate file: /etc/kfsmtp/ca.pem): check ca_file." } })
  end)

  it("an unverifiable certificate points at ca_file", function()
    diagnosed(tls_failure(CURLE.PEER_FAILED_VERIFICATION, "SSL certificate problem: unable to get local issuer certificate"), nil,
      { kind = "tls_verify", status = 502, says = { "could not be verified (SSL certificate problem: unable to get local issuer certificate)",
        "give the relay's CA bundle with ca_file", "tls_verify = false only for a throwaway test" } })
  end)

  it("a certificate for another name points at Host", function()
    local detail = "SSL: no alternative certificate subject name matches target host name 'mail.example.com'"
    diagnosed(tls_failure(CURLE.PEER_FAILED_VERIFICATION, detail, { cert_problem = "hostname_mismatch" }), nil, { kind = "tls_verify", status = 502,
      says = { 'is not valid for the name "mail.example.com"', "set Host to a name the certificate was issued for" },
      not_says = { "ca_file" } })
  end)

  it("a certificate failure under another libcurl code is still tls_verify, by OpenSSL's verify result", function()
    diagnosed(tls_failure(SSL_CONNECT_ERROR, "OpenSSL SSL_connect: error:0A000086:SSL routines::certificate verify failed",
      { cert_problem = "untrusted" }), nil, { kind = "tls_verify", status = 502, says = { "could not be verified", "ca_file" } })
  end)

  it("an expired certificate or a clock behind say so, whatever libcurl's words", function()
    diagnosed(tls_failure(CURLE.PEER_FAILED_VERIFICATION, "SSL certificate problem", { cert_problem = "expired" }), nil,
      { kind = "tls_verify", status = 502, says = { "has expired", "must renew it" }, not_says = { "ca_file" } })
    diagnosed(tls_failure(CURLE.PEER_FAILED_VERIFICATION, "SSL certificate problem", { cert_problem = "not_yet_valid" }), nil,
      { kind = "tls_verify", status = 502, says = { "is not valid yet", "this machine's clock" } })
  end)

  it("a handshake timeout is tls_timeout within the shorter timeout, with a hint for implicit TLS", function()
    diagnosed(timed_out("tls"), { connect_timeout_ms = 1500 }, { kind = "tls_timeout", status = 504,
      says = { "The TLS handshake with mail.example.com port 587 did not finish within 1500 ms." }, not_says = { "UseSSL", "Timed out at stage" } })
    diagnosed(timed_out("tls"), { tls_mode = "implicit", port = 465 }, { kind = "tls_timeout", status = 504,
      says = { "did not finish within 10 s.", 'set UseSSL accordingly or tls_mode = "starttls"' } })
  end)

  it("any other failure is tls, with a hint for implicit TLS only", function()
    local detail = "OpenSSL SSL_connect: Connection reset by peer in connection to mail.example.com:465"
    diagnosed(tls_failure(SSL_CONNECT_ERROR, detail), { tls_mode = "implicit", port = 465 }, { kind = "tls", status = 502,
      says = { "The TLS handshake with mail.example.com port 465 failed (" .. detail .. ").", "Check that this port speaks implicit TLS" } })
    diagnosed(tls_failure(SSL_CONNECT_ERROR, detail), nil, { kind = "tls", status = 502, not_says = { "implicit" },
      says = { "failed (" .. detail .. ")." } })
  end)
end)

describe("diagnosis.from_delivery, stage ehlo", function()
  it("a refused EHLO points at the helo option", function()
    local r = failed("ehlo", WEIRD_SERVER_REPLY, "Got unexpected smtp-server response: 501", { reply = "501 5.5.2 Syntax: EHLO hostname" })
    diagnosed(r, nil, { kind = "ehlo", status = 502, smtp_code = 501, enhanced_code = "5.5.2",
      says = { "The server at mail.example.com port 587 rejected EHLO/HELO: 501 5.5.2 Syntax: EHLO hostname.", "with the helo option" } })
  end)

  it("a timeout is timeout, after the shorter of the two timeouts", function()
    diagnosed(timed_out("ehlo"), { timeout_ms = 1500 }, { kind = "timeout", status = 504,
      says = { "Timed out at stage ehlo after 1500 ms. " } })
  end)
end)

describe("diagnosis.from_delivery, stage auth", function()
  local function refused(reply, over)
    return failed("auth", LOGIN_DENIED, "Login denied", with({ reply = reply, auth_sent = true, auth_mechanism = "PLAIN" }, over))
  end

  it("AUTH not offered in plain text suggests TLS (UseSSL)", function()
    local r = failed("auth", ABORTED_BY_CALLBACK, "Callback aborted", { auth_not_offered = true,
      ehlo = { "250-mail.example.com", "250 8BITMIME" } })
    diagnosed(r, { tls_mode = "none", port = 25 }, { kind = "auth_not_offered", status = 502,
      says = { "The server at mail.example.com port 25 did not offer AUTH", "nothing was delivered", "set UseSSL to true" },
      not_says = { "RelayAuthenticationType" } })
  end)

  it("AUTH not offered over TLS suggests the submission port or anonymous relaying", function()
    local r = failed("auth", ABORTED_BY_CALLBACK, "Callback aborted", { auth_not_offered = true, reply = "354 go ahead" })
    diagnosed(r, nil, { kind = "auth_not_offered", status = 502,
      says = { "did not offer AUTH", "set RelayAuthenticationType to 0" }, not_says = { "UseSSL" } })
  end)

  it("credentials configured, AUTH not offered: a later refusal is not the cause", function()
    -- Postfix with smtpd_tls_auth_only: no AUTH before STARTTLS, then
    -- "Relay access denied" at RCPT.
    local r = failed("rcpt", SEND_ERROR, "RCPT failed: 554", { reply = "554 5.7.1 <ops@example.net>: Relay access denied",
      ehlo = { "250-mx.example.com", "250-PIPELINING", "250-STARTTLS", "250 8BITMIME" } })
    diagnosed(r, { tls_mode = "none", port = 25, credentials = true }, { kind = "auth_not_offered", status = 502,
      stage = "auth", smtp_code = 554, enhanced_code = "5.7.1",
      says = { "did not offer AUTH", "It offers STARTTLS", "set UseSSL to true" }, not_says = { "SenderAccount", "relay" } })
  end)

  it("no usable mechanism lists what the server offered", function()
    local r = failed("auth", LOGIN_DENIED, "Login denied", { ehlo = { "250-mail.example.com", "250-AUTH=LOGIN", "250-AUTH GSSAPI NTLM", "250 SIZE" } })
    diagnosed(r, nil, { kind = "auth_mechanism", status = 502,
      says = { "offers no authentication mechanism kfsmtp can use (offered: GSSAPI NTLM)." }, not_says = { "XOAUTH2" } })
  end)

  it("no usable mechanism for OAuth names XOAUTH2, and none offered reads none", function()
    local r = failed("auth", LOGIN_DENIED, "Login denied", { ehlo = { "250-mail.example.com", "250 8BITMIME" } })
    diagnosed(r, { oauth = true }, { kind = "auth_mechanism", status = 502,
      says = { "(offered: none).", "RelayAuthenticationType 3 needs XOAUTH2 or OAUTHBEARER" } })
  end)

  it("a timeout after AUTH was sent is timeout, within the shorter timeout", function()
    diagnosed(timed_out("auth", { auth_sent = true }), nil, { kind = "timeout", status = 504,
      says = { "Timed out at stage auth after 10 s. ", "did not answer the authentication within 10 s." } })
  end)

  it("a timeout before AUTH was sent is timeout too, not auth_mechanism", function()
    diagnosed(timed_out("auth"), nil, { kind = "timeout", status = 504, says = { "did not answer the authentication" } })
  end)

  it("a refused OAuth token points at the app's permissions and Scope", function()
    local reply = "535 5.7.8 Username and Password not accepted"
    diagnosed(refused(reply), { oauth = true }, { kind = "auth", status = 502, smtp_code = 535, enhanced_code = "5.7.8",
      says = { "refused the OAuth access token (" .. reply .. ")", "SMTP.SendAsApp", "Scope names the mail service" },
      not_says = { "RelayPassword" } })
  end)

  it("refused credentials (Postfix) point at RelayUsername and RelayPassword, without a hint", function()
    local reply = "535 5.7.8 Error: authentication failed: authentication failure"
    diagnosed(refused(reply), nil, { kind = "auth", status = 502, smtp_code = 535, enhanced_code = "5.7.8",
      says = { "rejected the credentials with PLAIN (" .. reply .. "): check RelayUsername", "and RelayPassword.",
        "set auth_mechanism to PLAIN or LOGIN" }, not_says = { "Basic (password)", "OAuth" } })
  end)

  it("Microsoft 365 refusing basic authentication (5.7.139) suggests SMTP AUTH or OAuth", function()
    local reply = "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
    diagnosed(refused(reply), { host = "smtp.office365.com" }, { kind = "auth_disabled", status = 502, smtp_code = 535, enhanced_code = "5.7.139",
      says = { "basic (password) authentication is disabled", "enable SMTP AUTH for the mailbox", "(RelayAuthenticationType 3)" } })
  end)

  it("a 5.7.139 for another reason (Conditional Access, wrong credentials) is a refused login", function()
    local reply = "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator."
    diagnosed(refused(reply), nil, { kind = "auth", status = 502, smtp_code = 535, enhanced_code = "5.7.139",
      says = { "check RelayUsername" }, not_says = { "basic (password) authentication is disabled" } })
  end)

  it("5.7.3 naming SmtpClientAuthentication gets the same fix; a bare 5.7.3 is a refused login", function()
    diagnosed(refused("535 5.7.3 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."), nil,
      { kind = "auth_disabled", status = 502, smtp_code = 535, enhanced_code = "5.7.3", says = { "SMTP AUTH is disabled for the tenant" } })
    diagnosed(refused("535 5.7.3 Authentication unsuccessful"), nil, { kind = "auth", status = 502, smtp_code = 535,
      enhanced_code = "5.7.3", says = { "check RelayUsername" } })
  end)

  it("a multi-line refusal is joined in the Message and kept whole in smtp_reply", function()
    local reply = "535-5.7.8 Username and Password not accepted. For more information, go to\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials"
    diagnosed(refused(reply), nil, { kind = "auth", status = 502, smtp_code = 535, enhanced_code = "5.7.8",
      says = { "(535 5.7.8 Username and Password not accepted. For more information, go to 5.7.8  https://support.google.com/mail/?p=BadCredentials)" },
      not_says = { "\n", "535-" } })
  end)
end)

describe("diagnosis.from_delivery, stage mail", function()
  it("a refused sender points at SenderAccount", function()
    local r = failed("mail", SEND_ERROR, "MAIL failed: 553", { reply = "553 5.7.1 <kf@example.com>: Sender address rejected: not owned by user svc" })
    diagnosed(r, nil, { kind = "sender_rejected", status = 502, smtp_code = 553, enhanced_code = "5.7.1",
      says = { "does not let RelayUsername send as <kf@example.com> (553 5.7.1 <kf@example.com>: Sender address rejected: not owned by user svc)",
        "use a SenderAccount that the account owns" } })
  end)

  it("Microsoft 365 send-as refusal (5.7.60) adds the send-as hint", function()
    local r = failed("mail", SEND_ERROR, "MAIL failed: 550", { reply = "550 5.7.60 SMTP; Client does not have permissions to send as this sender" })
    diagnosed(r, nil, { kind = "sender_rejected", status = 502, smtp_code = 550, enhanced_code = "5.7.60",
      says = { "SenderAccount", "grant it Send As" } })
  end)

  it("Microsoft 365 unauthenticated (5.7.57) suggests RelayAuthenticationType 2", function()
    local r = failed("mail", SEND_ERROR, "MAIL failed: 530", { reply = "530 5.7.57 Client not authenticated to send mail. Error: 535 5.7.139 Authentication unsuccessful" })
    diagnosed(r, nil, { kind = "auth_required", status = 502, smtp_code = 530, enhanced_code = "5.7.57",
      says = { "set RelayAuthenticationType to 2 with RelayUsername and RelayPassword" }, not_says = { "basic (password)" } })
  end)

  it("a timeout is timeout after the total timeout, not the connect one", function()
    diagnosed(timed_out("mail"), { connect_timeout_ms = 1500 }, { kind = "timeout", status = 504,
      says = { "Timed out at stage mail after 30 s. ", "did not answer MAIL FROM within 30 s", "timeout_ms" },
      not_says = { "refused" } })
  end)
end)

describe("diagnosis.from_delivery, stage rcpt", function()
  it("Postfix relay access denied points at TestRecipient and authentication", function()
    local reply = "554 5.7.1 <ops@example.com>: Relay access denied"
    diagnosed(failed("rcpt", SEND_ERROR, "RCPT failed: 554", { reply = reply }), nil, { kind = "relay_denied", status = 502, smtp_code = 554,
      enhanced_code = "5.7.1", says = { "refused to relay to <ops@example.com> for this client (" .. reply .. ")",
        "Set RelayAuthenticationType to 2" }, not_says = { "SenderAccount" } })
  end)

  it("Exim relay not permitted has no enhanced code and no hint", function()
    diagnosed(failed("rcpt", SEND_ERROR, "RCPT failed: 550", { reply = "550 relay not permitted" }), nil, { kind = "relay_denied", status = 502,
      smtp_code = 550, says = { "(550 relay not permitted)", "Set RelayAuthenticationType to 2" },
      not_says = { "send as" } })
  end)

  it("a timeout is timeout", function()
    diagnosed(timed_out("rcpt"), { timeout_ms = 45500 }, { kind = "timeout", status = 504,
      says = { "Timed out at stage rcpt after 45500 ms. ", "did not answer RCPT TO within 45500 ms" },
      not_says = { "refused" } })
  end)
end)

describe("diagnosis.from_delivery, stage data", function()
  it("a refused message quotes the reply", function()
    local r = failed("data", SEND_ERROR, "DATA failed: 552", { reply = "552 5.3.4 Message size exceeds fixed limit" })
    diagnosed(r, nil, { kind = "data", status = 502, smtp_code = 552, enhanced_code = "5.3.4",
      says = { "The server did not accept the message: 552 5.3.4 Message size exceeds fixed limit." } })
  end)

  it("without a reply, libcurl's text stands in", function()
    diagnosed(failed("data", SEND_ERROR, "Failed sending data to the peer"), nil, { kind = "data", status = 502,
      says = { "The server did not accept the message (Failed sending data to the peer)." } })
  end)

  it("a timeout is timeout after the total timeout", function()
    diagnosed(timed_out("data"), nil, { kind = "timeout", status = 504, says = { "Timed out at stage data after 30 s. " } })
  end)

  it("a stage with no function of its own is reported as data", function()
    diagnosed(failed("token", SEND_ERROR, "Failed sending data to the peer"), nil, { kind = "data", status = 502,
      says = { "did not accept the message" } })
  end)
end)

describe("diagnosis.parse_reply", function()
  it("gives the code, the enhanced code and the reply", function()
    assert.are.same({ 250, "2.0.0", "250 2.0.0 Ok: queued as 4F1C2" }, { diagnosis.parse_reply("250 2.0.0 Ok: queued as 4F1C2") })
    assert.are.same({ 535, "5.7.139", "535 5.7.139 Authentication unsuccessful" },
      { diagnosis.parse_reply("535 5.7.139 Authentication unsuccessful") })
    assert.are.same({ 451, "4.7.1", "451 4.7.1 Try again later" }, { diagnosis.parse_reply("451 4.7.1 Try again later") })
  end)

  it("joins a multi-line reply into one line", function()
    local code, enhanced, text = diagnosis.parse_reply("550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 Please try again.")
    assert.are.equal(550, code)
    assert.are.equal("5.1.1", enhanced)
    local first = "550 5.1.1 The email account that you tried to reach does not exist. "
    assert.are.equal(first, text:sub(1, #first))
    assert.truthy(text:find("Please try again.$"), text)
    assert.falsy(text:find("\n", 1, true))
    assert.falsy(text:find("550", 2, true), "the code of the later lines is dropped: " .. text)
  end)

  it("has no enhanced code when the first line has none", function()
    assert.are.same({ 550, nil, "550 relay not permitted" }, { diagnosis.parse_reply("550 relay not permitted") })
    assert.is_nil(select(2, diagnosis.parse_reply("220 mail.example.com ESMTP Postfix 2.0.0")))
    assert.is_nil(select(2, diagnosis.parse_reply("550 9.1.1 no such class")))
    assert.is_nil(select(2, diagnosis.parse_reply("550 3.1.1 no such class")))
  end)

  it("has no code for text that is not a reply, and nothing for no reply", function()
    assert.are.same({ nil, nil, "Connection closed" }, { diagnosis.parse_reply("Connection closed") })
    assert.is_nil(diagnosis.parse_reply(nil))
    assert.is_nil(diagnosis.parse_reply(""))
  end)
end)

describe("diagnosis.last_line", function()
  it("gives the last line, or nil for nothing", function()
    assert.are.equal("221 2.0.0 Bye", diagnosis.last_line("250 2.0.0 Ok: queued as 4F1C2\n221 2.0.0 Bye"))
    assert.are.equal("250 OK", diagnosis.last_line("250 OK"))
    assert.is_nil(diagnosis.last_line(""))
    assert.is_nil(diagnosis.last_line(nil))
  end)
end)
