-- OAuth 2.0 client-credentials tokens for RelayAuthenticationType 3: the
-- request (made by the C core over libcurl), what its answer means, and a
-- cache per (endpoint, client, secret, scope, audience) until a minute
-- before expiry. Memory only: a token is never stored or returned.
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local errors = require "kfsmtp.errors"
local options = require "kfsmtp.options"

local type, tonumber, os_time, max = type, tonumber, os.time, math.max

local _M = {}

local tokens, token_count = {}, 0
-- A caller who may change the profile can make the process fetch tokens
-- from an endpoint of their own for any scope: the cache stays bounded.
local MAX_TOKENS = 64
local TOKEN_MARGIN_S = 60
-- Lifetime assumed when the answer gives none.
local DEFAULT_LIFETIME_S = 3600

-- client = { endpoint, client_id, client_secret, scope, audience,
-- headers = { "Name: Value" } }; a tenant header may change the token.
local function token_key(client)
  return table.concat({ client.endpoint, client.client_id, client.client_secret,
    client.scope, client.audience or "", table.concat(client.headers or {}, "\n") }, "\0")
end

function _M.forget(client)
  local key = token_key(client)
  if tokens[key] then tokens[key], token_count = nil, token_count - 1 end
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
  local cached = tokens[key]
  if cached and os_time() < cached.expires then return cached.token, true end
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
  local lifetime = tonumber(doc.expires_in) or DEFAULT_LIFETIME_S
  if token_count >= MAX_TOKENS then tokens, token_count = {}, 0 end
  if not tokens[key] then token_count = token_count + 1 end
  tokens[key] = { token = doc.access_token, expires = os_time() + max(0, lifetime - TOKEN_MARGIN_S) }
  return doc.access_token, false
end

return _M
