-- Every error kfsmtp returns: its stable ErrorCode, HTTP status, and the
-- one sentence a person can act on. The ErrorCode table in README.md is
-- this file's CODES, in the same order.
local _M = {}

local err_mt = {
  __name = "kfsmtp.error",
  __tostring = function(e) return e.Message end,
}
_M.mt = err_mt

-- kind = { ErrorCode, status }
local CODES = {
  invalid_field    = { "0xA0530001", 400 },
  ambiguous_field  = { "0xA0530002", 400 },
  unknown_id       = { "0xA0530003", 404 },
  resolve          = { "0xA0530010", 502 },
  connect          = { "0xA0530011", 502 },
  connect_timeout  = { "0xA0530012", 504 },
  greeting         = { "0xA0530020", 502 },
  greeting_timeout = { "0xA0530021", 504 },
  tls              = { "0xA0530030", 502 },
  tls_verify       = { "0xA0530031", 502 },
  starttls_missing = { "0xA0530032", 502 },
  tls_mode         = { "0xA0530033", 502 },
  tls_timeout      = { "0xA0530034", 504 },
  ehlo             = { "0xA0530040", 502 },
  auth             = { "0xA0530050", 502 },
  auth_mechanism   = { "0xA0530051", 502 },
  auth_not_offered = { "0xA0530052", 502 },
  mail             = { "0xA0530060", 502 },
  rcpt             = { "0xA0530070", 502 },
  data             = { "0xA0530080", 502 },
  timeout          = { "0xA0530090", 504 },
  token            = { "0xA05300A0", 502 },
  token_timeout    = { "0xA05300A1", 504 },
  store_corrupt    = { "0xA05300F0", 500 },
  store_io         = { "0xA05300F1", 500 },
  -- The HTTP API's own answers.
  bad_json         = { "0xA0530004", 400 },
  missing_header   = { "0xA0530005", 400 },
  bad_api_version  = { "0xA0530006", 400 },
  unauthenticated  = { "0xA0530101", 401 },
  forbidden        = { "0xA0530103", 403 },
  not_found        = { "0xA0530104", 404 },
  bad_method       = { "0xA0530105", 405 },
  too_large        = { "0xA0530113", 413 },
  media_type       = { "0xA0530115", 415 },
  internal         = { "0xA05301F4", 500 },
}
_M.CODES = CODES

-- new(kind, fields) --> err; fields holds Message, stage, field, ...
function _M.new(kind, fields)
  local code = assert(CODES[kind], kind)
  fields.ErrorCode = code[1]
  fields.status = code[2]
  fields.kind = kind
  return setmetatable(fields, err_mt)
end

function _M.field(field, message, kind)
  return _M.new(kind or "invalid_field", { field = field, stage = "validate", Message = message })
end

function _M.is_error(v)
  return getmetatable(v) == err_mt
end

-- The body the HTTP API and the CLI print for an error.
function _M.body(e)
  return { ErrorCode = e.ErrorCode, Message = e.Message }
end

-- What an err says beyond its body, for a client that asks (the HTTP
-- API's X-Kfsmtp-Details): never a secret, since err never holds one.
local DETAIL_KEYS = { "field", "stage", "smtp_code", "enhanced_code", "smtp_reply", "detail",
  "http_status", "error", "error_description", "transcript" }

function _M.details(e)
  local d = {}
  for _, k in ipairs(DETAIL_KEYS) do d[k] = e[k] end
  return d
end

---------------------------------------------------------------------------
-- Delivery failures: from what kfsmtp.core observed to a sentence.

local CURLE_OPERATION_TIMEDOUT = 28
local CURLE_PEER_FAILED_VERIFICATION = 60
local CURLE_USE_SSL_FAILED = 64
local CURLE_SSL_CACERT_BADFILE = 77
local CURLE_SSL_PINNEDPUBKEYNOTMATCH = 90

local function last_line(s)
  if not s or s == "" then return nil end
  return s:match("([^\n]*)$")
end

-- "550-5.1.1 a\n550 5.1.1 b" --> 550, "5.1.1", "550 5.1.1 a b"
local function parse_reply(reply)
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
_M.parse_reply = parse_reply

local function hint_for_enhanced(enhanced)
  if enhanced == "5.7.139" or enhanced == "5.7.3" then
    return " Basic (password) authentication is disabled for this account or tenant: enable SMTP AUTH for the mailbox, or use OAuth client credentials (RelayAuthenticationType 3)."
  elseif enhanced == "5.7.57" then
    return " The relay requires authentication before accepting mail: set RelayAuthenticationType to 2 with a username and password."
  elseif enhanced == "5.7.60" or enhanced == "5.7.1" then
    return " The account is not allowed to send as this sender: use a SenderAccount the relay lets RelayUsername send as."
  end
  return ""
end

local function where(ctx)
  return ("%s port %d"):format(ctx.host, ctx.port)
end

local function secs(ms)
  if ms % 1000 == 0 then return ("%d s"):format(math.floor(ms / 1000)) end
  return ("%d ms"):format(math.floor(ms))
end

-- from_delivery(r, ctx) --> err; r is kfsmtp.core.deliver's result, ctx
-- holds host, port, tls_mode, sender, recipient, timeouts.
function _M.from_delivery(r, ctx)
  local stage = r.stage
  local timed_out = r.curl_code == CURLE_OPERATION_TIMEDOUT
  local code, enhanced, reply = parse_reply(r.reply)
  local detail = r.curl_error
  local kind, msg
  -- libcurl runs greeting, TLS, EHLO and AUTH inside its connect phase, so
  -- the shorter of the two timeouts bounds them.
  local phase_ms = ({ greeting = true, tls = true, ehlo = true, auth = true })[stage]
    and math.min(ctx.connect_timeout_ms, ctx.timeout_ms) or ctx.timeout_ms

  if stage == "resolve" then
    kind = "resolve"
    msg = ("Could not resolve the host name %q: check Host for typos, or the DNS settings of this machine (%s)."):format(ctx.host, detail)
  elseif stage == "connect" then
    if timed_out then
      kind = "connect_timeout"
      msg = ("No TCP connection to %s within %s: the address drops packets or a firewall blocks the port; check Host, Port and the network path."):format(where(ctx), secs(ctx.connect_timeout_ms))
    else
      kind = "connect"
      msg = ("Could not connect to %s: %s. Check Host and Port, that the relay listens there, and that no firewall blocks it."):format(where(ctx), r.os_error or detail)
    end
  elseif stage == "greeting" then
    if timed_out or not code then
      kind = timed_out and "greeting_timeout" or "greeting"
      msg = ("%s accepted the connection but sent no SMTP greeting%s."):format(where(ctx), timed_out and (" within " .. secs(phase_ms)) or "")
      if ctx.tls_mode ~= "implicit" then
        msg = msg .. " If this port expects implicit TLS (usually port 465), set UseSSL to true (or tls_mode = \"implicit\")."
      else
        msg = msg .. " Check that it is an SMTP server."
      end
    else
      kind = "greeting"
      msg = ("The server at %s refused the session at the greeting: %s. It is busy or does not accept connections from this machine: try later or ask its administrator."):format(where(ctx), reply)
    end
  elseif stage == "tls" then
    local lower = (detail or ""):lower()
    if r.curl_code == CURLE_USE_SSL_FAILED then
      kind = "starttls_missing"
      msg = ("The server at %s did not offer STARTTLS, and UseSSL requires TLS (kfsmtp never falls back to plain text): enable STARTTLS on the relay, use its implicit-TLS port (465), or set UseSSL to false if mail may travel unencrypted."):format(where(ctx))
    elseif lower:find("wrong version number", 1, true) or lower:find("packet length too long", 1, true)
        or lower:find("record layer failure", 1, true) or lower:find("unexpected eof", 1, true) and ctx.tls_mode == "implicit" and r.server_spoke then
      kind = "tls_mode"
      msg = ("%s answered in plain text, not TLS: port %d speaks plain SMTP. Set UseSSL to false, or keep it true and use tls_mode = \"starttls\" if the server offers STARTTLS."):format(where(ctx), ctx.port)
    elseif r.curl_code == CURLE_SSL_PINNEDPUBKEYNOTMATCH then
      kind = "tls_verify"
      msg = ("The public key of the server at %s does not match pinned_pubkey: the certificate changed or this is not the expected server."):format(where(ctx))
    elseif r.curl_code == CURLE_SSL_CACERT_BADFILE then
      kind = "tls_verify"
      msg = ("The CA bundle could not be read (%s): check ca_file."):format(detail)
    elseif r.curl_code == CURLE_PEER_FAILED_VERIFICATION or lower:find("certificate", 1, true) then
      kind = "tls_verify"
      if lower:find("match", 1, true) then
        msg = ("The certificate of the server at %s is not valid for the name %q (%s): set Host to a name the certificate was issued for."):format(where(ctx), ctx.host, detail)
      else
        msg = ("The certificate of the server at %s could not be verified (%s): give the relay's CA bundle with ca_file, or fix the certificate; tls_verify = false only for a throwaway test."):format(where(ctx), detail)
      end
    elseif timed_out then
      kind = "tls_timeout"
      msg = ("The TLS handshake with %s did not finish within %s."):format(where(ctx), secs(phase_ms))
      if ctx.tls_mode == "implicit" then
        msg = msg .. " If the port speaks plain SMTP or STARTTLS (usually 25 or 587), set UseSSL accordingly or tls_mode = \"starttls\"."
      end
    else
      kind = "tls"
      msg = ("The TLS handshake with %s failed (%s)."):format(where(ctx), detail)
      if ctx.tls_mode == "implicit" then
        msg = msg .. " Check that this port speaks implicit TLS (usually 465); for STARTTLS ports use tls_mode = \"starttls\"."
      end
    end
  elseif stage == "ehlo" then
    kind = timed_out and "timeout" or "ehlo"
    msg = ("The server at %s rejected EHLO/HELO%s. Set a HELO name it accepts with the helo option (the machine's host name is the default)."):format(where(ctx), reply and (": " .. reply) or "")
  elseif stage == "auth" then
    if r.auth_not_offered then
      kind = "auth_not_offered"
      msg = ("The server at %s did not offer AUTH, so the credentials could not be used; nothing was delivered."):format(where(ctx))
      if ctx.tls_mode == "none" then
        msg = msg .. " Many servers offer AUTH only after TLS: set UseSSL to true."
      else
        msg = msg .. " Set RelayAuthenticationType to 0 if the relay accepts anonymous mail from this machine."
      end
    elseif not r.auth_sent and not timed_out then
      kind = "auth_mechanism"
      local offered = ""
      for _, line in ipairs(r.ehlo or {}) do
        local mechs = line:match("^%d%d%d[ -][Aa][Uu][Tt][Hh][ =](.*)$")
        if mechs then offered = mechs end
      end
      msg = ("The server at %s offers no authentication mechanism kfsmtp can use (offered: %s)."):format(where(ctx), offered ~= "" and offered or "none")
      if ctx.oauth then
        msg = msg .. " RelayAuthenticationType 3 needs XOAUTH2 or OAUTHBEARER; for Microsoft 365 use smtp.office365.com port 587."
      end
    elseif timed_out then
      kind = "timeout"
      msg = ("The server at %s did not answer the authentication within %s."):format(where(ctx), secs(phase_ms))
    elseif ctx.oauth then
      kind = "auth"
      msg = ("The server at %s refused the OAuth access token%s: the token endpoint issued it, but the mail service does not accept it for this mailbox. Check that the app may send as RelayUsername (for Microsoft 365: the SMTP.SendAsApp permission, a service principal registered in Exchange, and SMTP AUTH enabled for the mailbox) and that Scope names the mail service.%s"):format(
        where(ctx), reply and (" (" .. reply .. ")") or "", hint_for_enhanced(enhanced))
    else
      kind = "auth"
      msg = ("The server at %s rejected the credentials%s: check RelayUsername (DOMAIN\\user form if the server expects it) and RelayPassword.%s"):format(where(ctx), reply and (" (" .. reply .. ")") or "", hint_for_enhanced(enhanced))
    end
  elseif stage == "mail" then
    kind = timed_out and "timeout" or "mail"
    msg = ("The server refused the sender <%s>%s. SenderAccount must be an address the relay lets this client (or RelayUsername) send as.%s"):format(ctx.sender, reply and (": " .. reply) or "", hint_for_enhanced(enhanced))
  elseif stage == "rcpt" then
    kind = timed_out and "timeout" or "rcpt"
    msg = ("The server refused the recipient <%s>%s. Check TestRecipient; a relay that does not relay for this client may need authentication.%s"):format(ctx.recipient, reply and (": " .. reply) or "", hint_for_enhanced(enhanced))
  else
    kind = timed_out and "timeout" or "data"
    msg = ("The server did not accept the message%s."):format(reply and (": " .. reply) or (" (" .. detail .. ")"))
  end
  if timed_out and kind == "timeout" then
    msg = ("Timed out at stage %s after %s. %s"):format(stage, secs(phase_ms), msg)
  end
  return _M.new(kind, {
    stage = stage,
    Message = msg,
    smtp_code = code,
    enhanced_code = enhanced,
    smtp_reply = r.reply ~= "" and r.reply or nil,
    detail = detail,
  })
end

_M.last_line = last_line

return _M
