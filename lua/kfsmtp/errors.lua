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
  auth_required    = { "0xA0530053", 502 },
  auth_disabled    = { "0xA0530054", 502 },
  starttls_required = { "0xA0530035", 502 },
  mail             = { "0xA0530060", 502 },
  sender_rejected  = { "0xA0530061", 502 },
  client_rejected  = { "0xA0530062", 502 },
  rcpt             = { "0xA0530070", 502 },
  relay_denied     = { "0xA0530071", 502 },
  recipient_rejected = { "0xA0530072", 502 },
  data             = { "0xA0530080", 502 },
  policy_rejected  = { "0xA0530081", 502 },
  timeout          = { "0xA0530090", 504 },
  token            = { "0xA05300A0", 502 },
  token_timeout    = { "0xA05300A1", 504 },
  secret           = { "0xA05300C0", 502 },
  -- Refusals for now (4xx): err.temporary is true.
  greylisted       = { "0xA05300B0", 502 },
  rate_limited     = { "0xA05300B1", 502 },
  temporary        = { "0xA05300B2", 502 },
  store_corrupt    = { "0xA05300F0", 500 },
  store_io         = { "0xA05300F1", 500 },
  store_unavailable = { "0xA05300F2", 503 },
  key_required     = { "0xA05300F3", 500 },
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
  unavailable      = { "0xA05301F7", 503 },
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
local DETAIL_KEYS = { "field", "stage", "smtp_code", "enhanced_code", "smtp_reply", "temporary", "detail",
  "http_status", "error", "error_description", "transcript" }

function _M.details(e)
  local d = {}
  for _, k in ipairs(DETAIL_KEYS) do d[k] = e[k] end
  return d
end

return _M
