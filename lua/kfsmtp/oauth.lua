-- OAuth 2.0 client-credentials tokens for RelayAuthenticationType 3: the
-- request (made by the C core over libcurl, on a handle kept per Lua state
-- so that its connection is reused), what its answer means, and a cache
-- per (endpoint, client, secret, scope, audience, headers) until a minute
-- before expiry. The cache is the C core's, one per process (every Lua
-- state, every nginx worker thread of a worker); memory only: a token is
-- never stored or returned.
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local errors = require "kfsmtp.errors"
local options = require "kfsmtp.options"

local type, tonumber = type, tonumber

local _M = {}

local TOKEN_MARGIN_S = 60
-- Lifetime assumed when the answer gives none.
local DEFAULT_LIFETIME_S = 3600
local MAX_KEEP_S = 24 * 3600

-- client = { endpoint, client_id, client_secret, scope, audience,
-- headers = { "Name: Value" }, bound_to = { strings } }; a tenant header
-- may change the token; bound_to names where it goes.
local function token_key(client)
  return table.concat({ client.endpoint, client.client_id, client.client_secret,
    client.scope, client.audience or "", table.concat(client.headers or {}, "\n"),
    table.concat(client.bound_to or {}, "\0") }, "\0")
end

function _M.forget(client)
  core.token_cache_forget(token_key(client))
end

-- What a refusal says, and what to check.
local function refused(r, doc)
  local err_text = type(doc.error) == "string" and doc.error or nil
  local description = type(doc.error_description) == "string" and doc.error_description:gsub("[%c]", " ") or nil
  local what = err_text and (err_text .. (description and (": " .. description) or "")) or
    "no access_token in the answer"
  local hint = (err_text == "invalid_client" or r.http_status == 401)
    and " Check ClientId and ClientSecret (an expired client secret looks the same)."
    or (err_text == "invalid_scope") and " Check Scope (for Microsoft 365: https://outlook.office365.com/.default)."
    or ""
  return errors.new("token", { stage = "token", http_status = r.http_status, error = err_text,
    error_description = description,
    Message = ("The token endpoint refused the client credentials (HTTP %d, %s).%s Nothing was sent to the SMTP server."):format(
      r.http_status, what, hint) })
end

-- The error of a token fetch that had no time left, or ran out of it.
function _M.timed_out(client, timeout_ms, detail)
  return errors.new("token_timeout", { stage = "token", detail = detail,
    Message = ("The token endpoint %s did not answer within timeout_ms (%d ms, which covers the token request and the delivery): check TokenEndpoint and the network path to it, or allow more time."):format(
      client.endpoint, timeout_ms) })
end

-- token(client, opts, limits) --> token, from_cache | nil, nil, err (stage
-- "token"); limits = { connect_timeout_ms, timeout_ms } for the request.
function _M.token(client, opts, limits)
  local key = token_key(client)
  local cached = core.token_cache_get(key)
  if cached then return cached, true end
  local r = core.fetch_token {
    endpoint = client.endpoint, client_id = client.client_id, client_secret = client.client_secret,
    scope = client.scope, audience = client.audience,
    headers = client.headers and #client.headers > 0 and client.headers or nil,
    ca_file = options.get(opts, "ca_file"), tls_verify = options.get(opts, "tls_verify"),
    connect_timeout_ms = limits.connect_timeout_ms, timeout_ms = limits.timeout_ms,
  }
  if not r.ok then
    if r.curl_code == core.CURLE.OPERATION_TIMEDOUT then
      return nil, nil, _M.timed_out(client, options.get(opts, "timeout_ms"), r.curl_error)
    end
    return nil, nil, errors.new("token", { stage = "token",
      Message = ("The token endpoint %s could not be reached (%s): check TokenEndpoint and the network path to it."):format(
        client.endpoint, r.curl_error), detail = r.curl_error })
  end
  local doc = r.body ~= "" and cjson.decode(r.body) or nil
  if type(doc) ~= "table" then doc = {} end
  if r.http_status ~= 200 or type(doc.access_token) ~= "string" or doc.access_token == "" then
    return nil, nil, refused(r, doc)
  end
  -- A token that lives no longer than the margin is used once, not kept,
  -- and none is kept longer than a day, whatever its endpoint says. In
  -- floats, so that no integer the endpoint sends can wrap.
  local lifetime = (tonumber(doc.expires_in) or DEFAULT_LIFETIME_S) + 0.0
  local keep_s = lifetime - TOKEN_MARGIN_S
  if keep_s >= 1 then
    core.token_cache_put(key, doc.access_token, math.floor(math.min(keep_s, MAX_KEEP_S)))
  end
  return doc.access_token, false
end

return _M
