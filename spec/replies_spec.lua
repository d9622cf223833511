-- The reply table (kfsmtp.replies) row by row, with reply lines as real
-- servers write them: Postfix 3.7 (smtpd.c, postgrey, anvil), Exim 4.96,
-- Microsoft 365 and Gmail, as their documentation and source give them.
-- Each case asserts the ErrorCode, `temporary`, the fix the Message must
-- name and a wrong fix it must not. A last case checks that every row of
-- the table is reached by some case here.
local diagnosis = require "kfsmtp.diagnosis"
local errors = require "kfsmtp.errors"
local replies = require "kfsmtp.replies"
local core = require "kfsmtp.core"
local H = require "helpers"
local with = H.with

local SEND_ERROR, LOGIN_DENIED, COULDNT_CONNECT = 55, 67, 7

local CTX = { host = "relay.example.com", port = 587, tls_mode = "starttls", sender = "kf@example.com",
  recipient = "ops@example.net", oauth = false, credentials = false, connect_timeout_ms = 10000, timeout_ms = 30000 }
local EHLO_AUTH = { "250-relay.example.com", "250-AUTH PLAIN LOGIN CRAM-MD5", "250 8BITMIME" }

-- { name, stage, reply, ctx = overrides, kind, says = {...}, not_says = {...} }
local CASES = {
  { "Postfix anvil connection rate", "greeting", "421 4.7.0 mx.example.com Error: too many connections from 127.0.0.1",
    kind = "rate_limited", says = { "went over its limits", "temporary" }, not_says = { "TestRecipient", "RelayPassword" } },
  { "Exim concurrency", "greeting", "421 Too many concurrent SMTP connections; please try again later.",
    kind = "rate_limited", says = { "temporary" } },
  { "postgrey", "rcpt", "450 4.2.0 <ops@example.net>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/help/example.net.html",
    kind = "greylisted", says = { "greylisted", "first attempt from a new client is expected to fail", "test again later" },
    not_says = { "check TestRecipient", "RelayAuthenticationType" } },
  { "Postfix STARTTLS first", "mail", "530 5.7.0 Must issue a STARTTLS command first",
    ctx = { tls_mode = "none" }, kind = "starttls_required", says = { "set UseSSL to true" }, not_says = { "SenderAccount" } },
  { "Microsoft 365 basic auth off", "auth", "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
    kind = "auth_disabled", says = { "enable SMTP AUTH for the mailbox", "RelayAuthenticationType 3" } },
  { "Microsoft 365 tenant SMTP AUTH off", "auth", "535 5.7.3 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
    kind = "auth_disabled", says = { "SMTP AUTH is disabled for the tenant" } },
  { "Gmail app password", "auth", "534-5.7.9 Application-specific password required. Learn more at\n534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor",
    kind = "auth", says = { "app password" }, not_says = { "auth_mechanism" } },
  { "Postfix unknown mechanism", "auth", "504 5.5.4 Unrecognized authentication type",
    kind = "auth_mechanism", says = { "does not accept the mechanism CRAM-MD5", "set auth_mechanism" } },
  { "Microsoft 365 unknown mechanism", "auth", "504 5.7.4 Unrecognized authentication type [BN0PR04CA0000.namprd04.prod.outlook.com]",
    kind = "auth_mechanism", says = { "set auth_mechanism" } },
  { "refused token", "auth", "535 5.7.3 Authentication unsuccessful [SN4PR0501CA0054.namprd05.prod.outlook.com]",
    ctx = { oauth = true, credentials = true }, kind = "auth", says = { "refused the OAuth access token", "SMTP.SendAsApp" },
    not_says = { "RelayPassword", "RelayAuthenticationType 3" } },
  { "Gmail bad credentials", "auth", "535-5.7.8 Username and Password not accepted. For more information, go to\n535 5.7.8  https://support.google.com/mail/?p=BadCredentials",
    kind = "auth", says = { "rejected the credentials with CRAM-MD5", "check RelayUsername", "auth_mechanism to PLAIN or LOGIN" } },
  { "Dovecot back end down", "auth", "454 4.7.0 Temporary authentication failure",
    kind = "temporary", says = { "could not check the credentials now", "temporary" }, not_says = { "check RelayUsername" } },
  { "Microsoft 365 not authenticated", "mail", "530 5.7.57 Client not authenticated to send mail. [DM6PR0000.prod.outlook.com]",
    kind = "auth_required", says = { "set RelayAuthenticationType to 2" }, not_says = { "SenderAccount" } },
  { "Gmail authentication required", "mail", "530-5.7.0 Authentication Required. Learn more at\n530 5.7.0  https://support.google.com/mail/?p=WantAuthError",
    kind = "auth_required", says = { "set RelayAuthenticationType to 2" } },
  { "Postfix not logged in", "rcpt", "553 5.7.1 <kf@example.com>: Sender address rejected: not logged in",
    kind = "auth_required", says = { "only from authenticated clients" }, not_says = { "Send As" } },
  { "Postfix relay access denied, anonymous", "rcpt", "554 5.7.1 <ops@example.net>: Relay access denied",
    kind = "relay_denied", says = { "refused to relay to <ops@example.net>", "Set RelayAuthenticationType to 2" },
    not_says = { "SenderAccount", "check TestRecipient" } },
  { "Exim relay not permitted, logged in", "rcpt", "550 relay not permitted",
    ctx = { credentials = true }, kind = "relay_denied", says = { "although credentials are configured", "let RelayUsername relay" },
    not_says = { "Set RelayAuthenticationType to 2" } },
  { "Postfix client host rejected", "rcpt", "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied",
    kind = "client_rejected", says = { "refused this machine's address", "allow it" }, not_says = { "SenderAccount" } },
  { "Postfix sender not owned", "rcpt", "553 5.7.1 <kf@example.com>: Sender address rejected: not owned by user alice",
    ctx = { credentials = true }, kind = "sender_rejected", says = { "send as <kf@example.com>", "Send As" },
    not_says = { "TestRecipient" } },
  { "Microsoft 365 SendAsDenied", "data", "550 5.7.60 SMTP; Client does not have permissions to send as this sender [AM0PR00MB0000.eurprd00.prod.outlook.com]",
    ctx = { credentials = true }, kind = "sender_rejected", says = { "send as <kf@example.com>" } },
  { "Microsoft 365 SendAsDenied by code", "mail", "550 5.7.60 SMTP; Client does not have permissions",
    ctx = { credentials = true }, kind = "sender_rejected", says = { "Send As" } },
  { "Postfix recipient domain not found is not the sender's", "rcpt", "450 4.1.2 <ops@nowhere.invalid>: Recipient address rejected: Domain not found",
    kind = "recipient_rejected", says = { "check TestRecipient" }, not_says = { "SenderAccount" } },
  { "greylisting that says try again later", "rcpt", "451 4.7.1 Greylisted, please try again later",
    kind = "greylisted", says = { "greylisted" }, not_says = { "limits" } },
  { "RFC 4954 weak mechanism is no app password", "auth", "534 5.7.9 Authentication mechanism is too weak",
    kind = "auth", says = { "check RelayUsername" }, not_says = { "app password" } },
  { "Spamhaus listing", "rcpt", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.1",
    kind = "client_rejected", says = { "DNS blocklist" }, not_says = { "check TestRecipient" } },
  { "a domain that requires TLS, over TLS", "rcpt", "550 5.7.1 Recipient domain requires TLS",
    ctx = { tls_mode = "starttls" }, kind = "rcpt", says = { "check TestRecipient" }, not_says = { "set UseSSL to true" } },
  { "Postfix sender domain not found", "rcpt", "550 5.1.8 <kf@nowhere.invalid>: Sender address rejected: Domain not found",
    kind = "sender_rejected", says = { "domain does not resolve", "real, resolvable domain" } },
  { "Postfix sender rejected", "mail", "553 5.7.1 <kf@example.com>: Sender address rejected: Access denied",
    kind = "sender_rejected", says = { "refused the sender <kf@example.com>" } },
  { "Postfix user unknown", "rcpt", "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown in local recipient table",
    kind = "recipient_rejected", says = { "does not know the recipient", "check TestRecipient" }, not_says = { "SenderAccount" } },
  { "Exim unrouteable", "rcpt", "550 Unrouteable address",
    kind = "recipient_rejected", says = { "check TestRecipient" } },
  { "mailbox full", "rcpt", "552 5.2.2 <ops@example.net>: Mailbox full",
    kind = "recipient_rejected", says = { "mailbox is full or disabled" } },
  { "Gmail DMARC", "data", "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's\n550 5.7.26 DMARC policy. Please contact the administrator of example.com domain.",
    kind = "policy_rejected", says = { "SPF, DKIM or DMARC", "SPF record lists this relay" }, not_says = { "Restricted entities" } },
  { "Microsoft 365 OutboundSpamException", "data", "554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message due to a permanent exception",
    kind = "policy_rejected", says = { "spam or by policy", "Restricted entities" }, not_says = { "RelayPassword" } },
  { "content policy by code", "data", "554 5.7.1 Rejected by local policy filter",
    kind = "policy_rejected", says = { "spam or by policy" } },
  { "unnamed policy by code", "data", "550 5.7.1 Denied",
    kind = "policy_rejected", says = { "refused the message by policy" } },
  { "Postfix queue trouble", "data", "451 4.3.0 Error: queue file write error",
    kind = "temporary", says = { "temporary" }, not_says = { "TestRecipient" } },
  { "Exim administrative prohibition at MAIL", "mail", "550 Administrative prohibition",
    kind = "mail", says = { "SenderAccount must be an address" } },
  { "some recipient refusal", "rcpt", "501 5.1.3 Bad recipient address syntax",
    kind = "rcpt", says = { "check TestRecipient" } },
}


describe("the reply table", function()
  local reached = {}
  for _, c in ipairs(CASES) do
    it(c[1] .. ": " .. c.kind, function()
      local stage, reply = c[2], c[3]
      local r = { ok = false, stage = stage, curl_code = stage == "auth" and LOGIN_DENIED or SEND_ERROR,
        curl_error = "failed", reply = reply, server_spoke = true, auth_sent = stage == "auth",
        auth_mechanism = stage == "auth" and "CRAM-MD5" or "", ehlo = EHLO_AUTH }
      local ctx = with(CTX, c.ctx)
      local err = diagnosis.from_delivery(r, ctx)
      assert.are.equal(c.kind, err.kind, err.Message)
      assert.are.equal(errors.CODES[c.kind][1], err.ErrorCode)
      local code = tonumber(reply:sub(1, 3))
      assert.are.equal(code, err.smtp_code)
      assert.are.equal(reply, err.smtp_reply)
      assert.are.equal(code < 500, err.temporary)
      for _, phrase in ipairs(c.says) do
        assert.truthy(err.Message:find(phrase, 1, true), ("%q lacks %q"):format(err.Message, phrase))
      end
      for _, phrase in ipairs(c.not_says or {}) do
        assert.falsy(err.Message:find(phrase, 1, true), ("%q has %q"):format(err.Message, phrase))
      end
      local _, enhanced, text = diagnosis.parse_reply(reply)
      reached[replies.match { stage = stage, code = code, enhanced = enhanced, lower = text:lower(),
        oauth = ctx.oauth, credentials = ctx.credentials, tls = ctx.tls_mode ~= "none" }] = true
    end)
  end

  it("has a case above for every row", function()
    for i, row in ipairs(replies.ROWS) do
      assert.truthy(reached[row], ("row %d (%s: %s) has no case"):format(i, row[1], row.says:sub(1, 60)))
    end
  end)

  it("leaves failures without a refusal to the stage they happened at", function()
    local r = { ok = false, stage = "connect", curl_code = COULDNT_CONNECT, curl_error = "refused", reply = "",
      server_spoke = false, os_error = "Connection refused" }
    local err = diagnosis.from_delivery(r, CTX)
    assert.are.equal("connect", err.kind)
    assert.is_false(err.temporary)
    assert.is_nil(replies.match { stage = "connect", lower = "" }, "no row without a reply")
    assert.is_table(core.CURLE)
  end)
end)
