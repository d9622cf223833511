-- What a refusal means: one table from what the server said (the stage,
-- the reply's class, its enhanced code, its text) and what kfsmtp knows
-- (credentials configured, OAuth, TLS in use) to an ErrorCode kind and
-- the sentence that names the fix. The first row that matches wins; rows
-- go from the most specific to the most general. The texts are those real
-- servers write: Postfix 3.7, Exim 4.96, Microsoft 365, Gmail.
--
-- A row: { kind, when = { stages, class, enhanced, text, oauth,
-- credentials, tls }, says = template }. Every condition given must hold:
-- stages (space-separated), class (4 or 5), enhanced (any of these RFC
-- 3463 codes), text (any of these lower-case phrases in the reply),
-- oauth/credentials/tls (true or false). In says, ${where} is "HOST port
-- N", ${reply} the server's reply, ${sender} and ${recipient} the
-- addresses, ${mechanism} the SASL mechanism refused.
local _M = {}

local RELAY_TEXT = { "relay access denied", "relay not permitted", "relaying denied", "unable to relay",
  "relay not allowed", "relaying not allowed", "not permitted to relay", "relay denied" }

_M.ROWS = {
  -- Before any command: the server's own limits.
  { "greylisted", when = { text = { "greylist", "greylisted", "graylist" } },
    says = "${where} greylisted the message (${reply}). The first attempt from a new client is expected to fail this way; the relay accepts a retry after a few minutes. The refusal is temporary: test again later." },
  { "rate_limited", when = { text = { "too many connections", "too many concurrent", "connection rate",
      "rate limit", "too much mail", "too many messages", "too many recipients" }, class = 4 },
    says = "${where} refused for now because this client went over its limits (${reply}). The refusal is temporary: wait and test again; if tests are frequent, space them out or ask the relay's administrator to raise the limit for this machine." },

  -- STARTTLS and authentication demanded.
  { "starttls_required", when = { text = { "must issue a starttls", "starttls command first", "encryption required",
      "tls required", "requires tls", "starttls required" }, tls = false },
    says = "${where} requires TLS before it accepts mail (${reply}): set UseSSL to true." },
  { "auth_disabled", when = { stages = "auth", enhanced = { "5.7.139", "5.7.3" }, oauth = false,
      text = { "basic authentication is disabled", "basic auth is disabled", "smtp auth is disabled", "security defaults" } },
    says = "${where} refused the login because basic (password) authentication is disabled for this account or tenant (${reply}): enable SMTP AUTH for the mailbox (Microsoft 365: Authenticated SMTP in the mailbox's settings, not disabled for the tenant or by security defaults), or use OAuth client credentials (RelayAuthenticationType 3)." },
  { "auth_disabled", when = { stages = "auth", enhanced = { "5.7.3" }, oauth = false, text = { "smtpclientauthentication" } },
    says = "${where} refused the login because SMTP AUTH is disabled for the tenant (${reply}): enable Authenticated SMTP for the mailbox, or use OAuth client credentials (RelayAuthenticationType 3)." },
  { "auth", when = { stages = "auth", text = { "application-specific password" } },
    says = "${where} wants an app password for this account (${reply}): the account uses two-step verification. Create an app password for it and give that as RelayPassword." },
  { "auth_mechanism", when = { stages = "auth", text = { "unrecognized authentication type", "unrecognised authentication type",
      "authentication mechanism not supported", "mechanism not supported", "unsupported authentication mechanism" } },
    says = "${where} does not accept the mechanism ${mechanism} (${reply}): set auth_mechanism to one it offers, or leave it unset so that kfsmtp picks one the server lists." },
  { "auth", when = { stages = "auth", oauth = true, class = 5 },
    says = "${where} refused the OAuth access token (${reply}): the token endpoint issued it, but the mail service does not accept it for this mailbox. Check that the app may send as RelayUsername (for Microsoft 365: the SMTP.SendAsApp permission, a service principal registered in Exchange, and SMTP AUTH enabled for the mailbox) and that Scope names the mail service." },
  { "auth", when = { stages = "auth", class = 5 },
    says = "${where} rejected the credentials with ${mechanism} (${reply}): check RelayUsername (DOMAIN\\user form if the server expects it) and RelayPassword. If the same credentials work elsewhere, the server may be unable to check ${mechanism} (a challenge-response mechanism against stored hashes): set auth_mechanism to PLAIN or LOGIN." },
  { "temporary", when = { stages = "auth", class = 4 },
    says = "${where} could not check the credentials now (${reply}). The refusal is temporary: test again later; if it lasts, the server's authentication back end is down." },
  { "auth_required", when = { enhanced = { "5.7.57" } },
    says = "${where} accepts mail only from authenticated clients (${reply}): set RelayAuthenticationType to 2 with RelayUsername and RelayPassword (or 3 for OAuth)." },
  { "auth_required", when = { text = { "authentication required", "not authenticated", "authentication is required",
      "sender address rejected: not logged in", "must authenticate" }, credentials = false },
    says = "${where} accepts mail only from authenticated clients (${reply}): set RelayAuthenticationType to 2 with RelayUsername and RelayPassword (with UseSSL true where the server offers AUTH only after STARTTLS)." },

  -- Who may send, and where to.
  { "relay_denied", when = { text = RELAY_TEXT, credentials = false },
    says = "${where} refused to relay to <${recipient}> for this client (${reply}): it relays only for clients that log in or whose address it trusts. Set RelayAuthenticationType to 2 with RelayUsername and RelayPassword, or ask the relay's administrator to allow this machine's address." },
  { "relay_denied", when = { text = RELAY_TEXT },
    says = "${where} refused to relay to <${recipient}> (${reply}) although credentials are configured: the account may not relay to that domain, or the server did not take the login as it expects. Ask the relay's administrator to let RelayUsername relay, or test with a recipient in the relay's own domain." },
  { "client_rejected", when = { text = { "client host rejected", "client host blocked", "your ip", "not allowed to connect",
      "host rejected", "blocked using", "blocklist", "blacklist", "listed at", "spamhaus" }, stages = "greeting ehlo mail rcpt" },
    says = "${where} refused this machine's address (${reply}): ask the relay's administrator to allow it (if a DNS blocklist lists it, have the address delisted), or log in (RelayAuthenticationType 2) if the relay lets authenticated clients in from anywhere." },
  { "sender_rejected", when = { text = { "not owned by user", "sendasdenied", "send as this sender",
      "permissions to send as", "not allowed to send as" } },
    says = "${where} does not let RelayUsername send as <${sender}> (${reply}): use a SenderAccount that the account owns, or have the relay's administrator grant it Send As for that address." },
  { "sender_rejected", when = { enhanced = { "5.7.60" } },
    says = "${where} does not let RelayUsername send as <${sender}> (${reply}): use a SenderAccount that the account owns, or have the relay's administrator grant it Send As for that address." },
  { "sender_rejected", when = { text = { "sender address rejected: domain not found", "sender domain",
      "sender address rejected: unverified address", "sender verify" }, stages = "mail rcpt" },
    says = "${where} cannot accept mail from <${sender}> (${reply}): the sender's domain does not resolve or the address cannot be verified. Use a SenderAccount in a real, resolvable domain." },
  { "sender_rejected", when = { text = { "sender address rejected", "sender rejected", "bad sender" } },
    says = "${where} refused the sender <${sender}> (${reply}): use a SenderAccount the relay accepts from this client (or from RelayUsername)." },
  { "recipient_rejected", when = { enhanced = { "5.1.1", "5.1.0", "5.1.10" }, stages = "rcpt" },
    says = "${where} does not know the recipient <${recipient}> (${reply}): check TestRecipient." },
  { "recipient_rejected", when = { text = { "user unknown", "no such user", "unknown user", "mailbox unavailable",
      "recipient address rejected", "does not exist", "unrouteable address" }, stages = "rcpt" },
    says = "${where} refused the recipient <${recipient}> (${reply}): check TestRecipient." },
  { "recipient_rejected", when = { enhanced = { "5.2.2", "4.2.2", "5.2.1" }, stages = "rcpt data" },
    says = "${where} cannot deliver to <${recipient}> now: the mailbox is full or disabled (${reply}). Test with another TestRecipient." },

  -- The message itself.
  { "policy_rejected", when = { text = { "dmarc", "spf", "dkim", "unauthenticated email", "not authenticated with" },
      stages = "data rcpt mail" },
    says = "${where} refused the message because the sender's domain failed SPF, DKIM or DMARC checks (${reply}): use a SenderAccount in a domain whose SPF record lists this relay (and that signs with DKIM), or ask the domain's administrator to add it." },
  { "policy_rejected", when = { text = { "spam", "outboundspamexception", "content rejected", "message rejected",
      "policy", "blocked" }, stages = "data" },
    says = "${where} refused the message as spam or by policy (${reply}). The test message is plain text with no links, so the block is likely on the account or this machine: for Microsoft 365, OutboundSpamException means the mailbox is restricted from sending (see Restricted entities in the Defender portal); elsewhere ask the relay's administrator." },
  { "policy_rejected", when = { enhanced = { "5.7.1", "5.2.0" }, stages = "data" },
    says = "${where} refused the message by policy (${reply}): ask the relay's administrator what its policy refused." },

  -- Whatever else: temporary, or by stage.
  { "temporary", when = { class = 4 },
    says = "${where} refused for now (${reply}). The refusal is temporary: test again later." },
  { "mail", when = { stages = "mail" },
    says = "${where} refused the sender <${sender}> (${reply}): SenderAccount must be an address the relay lets this client (or RelayUsername) send as." },
  { "rcpt", when = { stages = "rcpt" },
    says = "${where} refused the recipient <${recipient}> (${reply}): check TestRecipient, and that the relay accepts mail for it from this client." },
}

local function any_text(reply, list)
  for _, phrase in ipairs(list) do
    if reply:find(phrase, 1, true) then return true end
  end
  return false
end

local function any_of(value, list)
  for _, x in ipairs(list) do
    if value == x then return true end
  end
  return false
end

-- Does row's when hold for this failure? f = { stage, code, enhanced,
-- lower (the reply in lower case), oauth, credentials, tls }.
local function holds(when, f)
  if when.stages and not (" " .. when.stages .. " "):find(" " .. f.stage .. " ", 1, true) then return false end
  if when.class and not (f.code and math.floor(f.code / 100) == when.class) then return false end
  if when.enhanced and not (f.enhanced and any_of(f.enhanced, when.enhanced)) then return false end
  if when.text and not any_text(f.lower, when.text) then return false end
  for _, k in ipairs { "oauth", "credentials", "tls" } do
    if when[k] ~= nil and when[k] ~= f[k] then return false end
  end
  return true
end

-- match(f) --> the first row that holds | nil
function _M.match(f)
  for _, row in ipairs(_M.ROWS) do
    if holds(row.when, f) then return row end
  end
  return nil
end

-- say(row, values) --> the row's sentence with values filled in.
function _M.say(row, values)
  return (row.says:gsub("%${(%w+)}", function(k) return values[k] or "" end))
end

return _M
