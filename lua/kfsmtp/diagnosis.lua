-- Why a test delivery failed: from what kfsmtp.core observed (the stage,
-- libcurl's result, the server's last reply) to an error whose Message
-- says what to change. A refusal the server put in words is read by the
-- table of kfsmtp.replies; what happened below the words (no connection,
-- TLS, silence) by one function per stage of the dialog.
local core = require "kfsmtp.core"
local errors = require "kfsmtp.errors"
local json = require "kfsmtp.json"
local replies = require "kfsmtp.replies"

local ipairs, tonumber, min, floor = ipairs, tonumber, math.min, math.floor
local CURLE = core.CURLE

local _M = {}

-- "550-5.1.1 a\n550 5.1.1 b" --> 550, "5.1.1", "550 5.1.1 a 5.1.1 b"
function _M.parse_reply(reply)
  if not reply or reply == "" then return nil end
  local code = tonumber(reply:match("^(%d%d%d)"))
  local enhanced = reply:match("^%d%d%d[ -]([245]%.%d%d?%d?%.%d%d?%d?)")
  local parts = {}
  for line in reply:gmatch("[^\n]+") do
    local text = line:gsub("^%d%d%d[ -]", "", 1)
    parts[#parts + 1] = text
  end
  local text = table.concat(parts, " ")
  return code, enhanced, (code and (code .. " " .. text) or text)
end

function _M.last_line(s)
  if not s or s == "" then return nil end
  return s:match("([^\n]*)$")
end

local function where(ctx)
  return ("%s port %d"):format(ctx.host, ctx.port)
end

local function secs(ms)
  if ms % 1000 == 0 then return ("%d s"):format(floor(ms / 1000)) end
  return ("%d ms"):format(floor(ms))
end

-- ": <reply>" when there is one.
local function colon(reply)
  return reply and (": " .. reply) or ""
end

-- Each takes f = { r, ctx, timed_out, code, enhanced, reply, detail,
-- phase_ms } and returns kind, Message.
local BY_STAGE = {}

BY_STAGE.resolve = function(f)
  return "resolve", ("Could not resolve the host name %q: check Host for typos, or the DNS settings of this machine (%s)."):format(f.ctx.host, f.detail)
end

BY_STAGE.connect = function(f)
  if f.timed_out then
    return "connect_timeout", ("No TCP connection to %s within %s: the address drops packets or a firewall blocks the port; check Host, Port and the network path."):format(where(f.ctx), secs(f.ctx.connect_timeout_ms))
  end
  return "connect", ("Could not connect to %s: %s. Check Host and Port, that the relay listens there, and that no firewall blocks it."):format(where(f.ctx), f.r.os_error or f.detail)
end

BY_STAGE.greeting = function(f)
  local ctx = f.ctx
  if f.code and not f.timed_out then
    return "greeting", ("The server at %s refused the session at the greeting: %s. It is busy or does not accept connections from this machine: try later or ask its administrator."):format(where(ctx), f.reply)
  end
  local msg = ("%s accepted the connection but sent no SMTP greeting%s."):format(where(ctx), f.timed_out and (" within " .. secs(f.phase_ms)) or "")
  if ctx.tls_mode == "none" then
    msg = msg .. " If this port expects implicit TLS (usually port 465), set UseSSL to true (or tls_mode = \"implicit\")."
  elseif ctx.tls_mode == "starttls" then
    msg = msg .. (" UseSSL is true, but on port %d that means STARTTLS, which starts in plain text: this port seems to expect TLS from the first byte. Set tls_mode = \"implicit\" (or use port 465)."):format(ctx.port)
  else
    msg = msg .. " Check that it is an SMTP server."
  end
  return f.timed_out and "greeting_timeout" or "greeting", msg
end

-- What OpenSSL found wrong with the certificate (r.cert_problem, named by
-- the core from the verify result, not read from libcurl's words) and the
-- fix for it.
local CERT_FIX = {
  hostname_mismatch = "is not valid for the name %q (%s): set Host to a name the certificate was issued for",
  expired = "has expired (%s): the relay's administrator must renew it; tls_verify = false only for a throwaway test",
  not_yet_valid = "is not valid yet (%s): check this machine's clock, or the certificate's start date",
}

local function certificate_problem(f)
  local ctx = f.ctx
  local fix = CERT_FIX[f.r.cert_problem]
  if fix == CERT_FIX.hostname_mismatch then
    return ("The certificate of the server at %s " .. fix .. "."):format(where(ctx), ctx.host, f.detail)
  elseif fix then
    return ("The certificate of the server at %s " .. fix .. "."):format(where(ctx), f.detail)
  end
  return ("The certificate of the server at %s could not be verified (%s): give the relay's CA bundle with ca_file, or fix the certificate; tls_verify = false only for a throwaway test."):format(where(ctx), f.detail)
end

BY_STAGE.tls = function(f)
  local ctx, curl_code = f.ctx, f.r.curl_code
  local implicit = ctx.tls_mode == "implicit"
  if curl_code == CURLE.USE_SSL_FAILED then
    return "starttls_missing", ("The server at %s did not offer STARTTLS, and UseSSL requires TLS (kfsmtp never falls back to plain text): enable STARTTLS on the relay, use its implicit-TLS port (465), or set UseSSL to false if mail may travel unencrypted."):format(where(ctx))
  elseif f.r.tls_plain_reply and ctx.tls_mode == "starttls" then
    -- The server offered and accepted STARTTLS, then did not speak TLS:
    -- turning TLS off would only hide the fault.
    return "tls", ("The server at %s accepted STARTTLS but then answered in plain text instead of starting TLS (%s): the relay's TLS set-up is broken, or a device on the path (a firewall inspecting SMTP) strips it. Fix that; do not set UseSSL to false, which would send mail and credentials unencrypted."):format(where(ctx), f.detail)
  elseif f.r.tls_plain_reply then
    return "tls_mode", ("%s answered in plain text, not TLS: port %d speaks plain SMTP. Set UseSSL to false, or keep it true and use tls_mode = \"starttls\" if the server offers STARTTLS."):format(where(ctx), ctx.port)
  elseif curl_code == CURLE.SSL_PINNEDPUBKEYNOTMATCH then
    return "tls_verify", ("The public key of the server at %s does not match pinned_pubkey: the certificate changed or this is not the expected server."):format(where(ctx))
  elseif curl_code == CURLE.SSL_CACERT_BADFILE then
    return "tls_verify", ("The CA bundle could not be read (%s): check ca_file."):format(f.detail)
  elseif curl_code == CURLE.PEER_FAILED_VERIFICATION or f.r.cert_problem then
    return "tls_verify", certificate_problem(f)
  elseif f.timed_out then
    return "tls_timeout", ("The TLS handshake with %s did not finish within %s."):format(where(ctx), secs(f.phase_ms))
      .. (implicit and " If the port speaks plain SMTP or STARTTLS (usually 25 or 587), set UseSSL accordingly or tls_mode = \"starttls\"." or "")
  end
  return "tls", ("The TLS handshake with %s failed (%s)."):format(where(ctx), f.detail)
    .. (implicit and " Check that this port speaks implicit TLS (usually 465); for STARTTLS ports use tls_mode = \"starttls\"." or "")
end

BY_STAGE.ehlo = function(f)
  return f.timed_out and "timeout" or "ehlo", ("The server at %s rejected EHLO/HELO%s. Set a HELO name it accepts with the helo option (the machine's host name is the default)."):format(where(f.ctx), colon(f.reply))
end

-- offered(ehlo) --> what the server said it can do, from its last EHLO
-- reply: the extensions (a JSON array), the AUTH mechanisms (an array, in
-- capitals; the last AUTH line, since servers repeat the list as "AUTH="
-- for old clients), and whether STARTTLS was among them.
function _M.offered(ehlo)
  local capabilities, mechanisms, starttls = json.array(), json.array(), false
  for i, line in ipairs(ehlo or {}) do
    local text = line:match("^%d%d%d[ -](.*)$")
    if text and i > 1 then
      capabilities[#capabilities + 1] = text
      local list = text:match("^[Aa][Uu][Tt][Hh][ =](.*)$")
      if list then
        mechanisms = json.array()
        for mech in list:gmatch("%S+") do mechanisms[#mechanisms + 1] = mech:upper() end
      end
      if text:upper() == "STARTTLS" then starttls = true end
    end
  end
  return capabilities, mechanisms, starttls
end

-- Credentials configured, and the server never offered AUTH: whatever it
-- refused later (a relay denial, a demand for STARTTLS), this is the cause.
local function auth_not_offered(f)
  local ctx = f.ctx
  local _, _, starttls = _M.offered(f.r.ehlo)
  local msg = ("The server at %s did not offer AUTH, so the configured credentials could not be used; nothing was delivered."):format(where(ctx))
  if ctx.tls_mode == "none" and starttls then
    msg = msg .. " It offers STARTTLS, and servers such as Postfix (smtpd_tls_auth_only) and Exim offer AUTH only after it: set UseSSL to true."
  elseif ctx.tls_mode == "none" then
    msg = msg .. " Many servers offer AUTH only after TLS: set UseSSL to true if this one supports it, or use its submission port (587)."
  else
    msg = msg .. " Check that this is the relay's submission port, or set RelayAuthenticationType to 0 if the relay accepts anonymous mail from this machine."
  end
  return "auth_not_offered", msg
end

BY_STAGE.auth = function(f)
  local r, ctx = f.r, f.ctx
  if r.auth_not_offered then return auth_not_offered(f) end
  if not r.auth_sent and not f.timed_out then
    local _, mechanisms = _M.offered(r.ehlo)
    return "auth_mechanism", ("The server at %s offers no authentication mechanism kfsmtp can use (offered: %s)."):format(where(ctx), #mechanisms > 0 and table.concat(mechanisms, " ") or "none")
      .. (ctx.oauth and " RelayAuthenticationType 3 needs XOAUTH2 or OAUTHBEARER; for Microsoft 365 use smtp.office365.com port 587." or "")
  end
  if f.timed_out then
    return "timeout", ("The server at %s did not answer the authentication within %s."):format(where(ctx), secs(f.phase_ms))
  end
  return "auth", ("The server at %s rejected the credentials%s: check RelayUsername and RelayPassword."):format(where(ctx), f.reply and (" (" .. f.reply .. ")") or "")
end

-- No answer to MAIL or RCPT: often the relay's own slow DNS or SPF checks.
local function no_answer(f, command)
  return "timeout", ("The server at %s did not answer %s within %s: it may be slow checking the sender or the recipient (DNS, SPF); allow more time with timeout_ms, or ask its administrator."):format(
    where(f.ctx), command, secs(f.phase_ms))
end

BY_STAGE.mail = function(f)
  if f.timed_out then return no_answer(f, "MAIL FROM") end
  return "mail", ("The server refused the sender <%s>%s. SenderAccount must be an address the relay lets this client (or RelayUsername) send as."):format(f.ctx.sender, colon(f.reply))
end

BY_STAGE.rcpt = function(f)
  if f.timed_out then return no_answer(f, "RCPT TO") end
  return "rcpt", ("The server refused the recipient <%s>%s. Check TestRecipient."):format(f.ctx.recipient, colon(f.reply))
end

BY_STAGE.data = function(f)
  return f.timed_out and "timeout" or "data", ("The server did not accept the message%s."):format(f.reply and (": " .. f.reply) or (" (" .. f.detail .. ")"))
end

-- libcurl runs greeting, TLS, EHLO and AUTH inside its connect phase, so
-- the shorter of the two timeouts bounds them.
local CONNECT_PHASE = { greeting = true, tls = true, ehlo = true, auth = true }

-- The failure as the reply table reads it.
local function reading(f)
  local ctx = f.ctx
  return { stage = f.r.stage, code = f.code, enhanced = f.enhanced, lower = (f.reply or ""):lower(),
    oauth = ctx.oauth == true, credentials = ctx.credentials == true, tls = ctx.tls_mode ~= "none" }
end

local AFTER_EHLO = { auth = true, mail = true, rcpt = true, data = true }

-- from_delivery(r, ctx) --> err; r is kfsmtp.core.deliver's result, ctx
-- holds host, port, tls_mode, sender, recipient, oauth, credentials (a
-- login was configured) and the timeouts.
function _M.from_delivery(r, ctx)
  local stage = r.stage
  local code, enhanced, reply = _M.parse_reply(r.reply)
  -- The reply that failed, or none: a TLS failure after "220 Ready to
  -- start TLS" or an abort after "354" is no refusal by the server.
  if code and code < 400 then code, enhanced, reply = nil, nil, nil end
  local f = {
    r = r, ctx = ctx, code = code, enhanced = enhanced, reply = reply, detail = r.curl_error,
    timed_out = r.curl_code == CURLE.OPERATION_TIMEDOUT,
    phase_ms = CONNECT_PHASE[stage] and min(ctx.connect_timeout_ms, ctx.timeout_ms) or ctx.timeout_ms,
  }
  local kind, msg
  local auth_offered = #select(2, _M.offered(r.ehlo)) > 0
  if ctx.credentials and not r.auth_sent and AFTER_EHLO[stage] and not f.timed_out and not auth_offered then
    stage = "auth"
    kind, msg = auth_not_offered(f)
  elseif code and not f.timed_out then
    local row = replies.match(reading(f))
    if row then
      kind = row[1]
      msg = replies.say(row, { where = "The server at " .. where(ctx), reply = reply, sender = ctx.sender,
        recipient = ctx.recipient, mechanism = r.auth_mechanism ~= "" and r.auth_mechanism or "the mechanism chosen" })
    end
  end
  if not kind then
    kind, msg = (BY_STAGE[stage] or BY_STAGE.data)(f)
    if f.timed_out and kind == "timeout" then
      msg = ("Timed out at stage %s after %s. %s"):format(stage, secs(f.phase_ms), msg)
    end
  end
  return errors.new(kind, {
    stage = stage,
    Message = msg,
    smtp_code = code,
    enhanced_code = enhanced,
    smtp_reply = code and r.reply or nil,
    temporary = code ~= nil and code >= 400 and code < 500,
    detail = f.detail,
  })
end

return _M
