-- Keyfactor Command's SMTP endpoints under nginx + lua-nginx-module:
--   GET {base}/SMTP, PUT {base}/SMTP, POST {base}/SMTP/Test
--
--   location ~* ^/keyfactorapi/ {
--     content_by_lua_block {
--       require("kfsmtp.openresty").serve { store = "/var/lib/kfsmtp/profile.json",
--         users_file = "/etc/kfsmtp/users.json", thread_pool = "kfsmtp",
--         auth_thread_pool = "kfsmtp_auth" }
--     }
--   }
--
-- Checks run in this order: path (404), caller (401), X-Keyfactor-Requested-With
-- (400), API version (400), method (405), permission (403), body type (415),
-- size (413), syntax (400), fields. Slow or blocking work (PUT's fsync and
-- lock, the SMTP test) runs in ngx.run_worker_thread, never on the event
-- loop, and PBKDF2 in a pool of its own. The functions named run_* are
-- what those threads call; they use no ngx API.
local kfsmtp = require "kfsmtp"
local errors = require "kfsmtp.errors"
local json = kfsmtp.json
local options = require "kfsmtp.options"
local secrets = require "kfsmtp.secrets"
local pgstore = require "kfsmtp.pgstore"
local users = require "kfsmtp.users"
local callers = require "kfsmtp.callers"
local in_thread = require("kfsmtp.worker_thread").run
local cjson = require "cjson.safe"

local _M = { _VERSION = kfsmtp._VERSION }

local MAX_BODY = 64 * 1024
-- Bodies are decoded with their own depth limit: the SMTP fields nest two
-- or three levels, and a worker thread refuses tables deeper than 100.
local MAX_DEPTH = 20
local body_json = cjson.new()
body_json.decode_max_depth(MAX_DEPTH)
local JSON_TYPE = "application/json; charset=utf-8"

---------------------------------------------------------------------------
-- What the worker threads run (a separate Lua VM each: plain data in and out).

-- The error body; with details, kfsmtp's extra Details object (what the
-- browser page shows: field, stage, the server's reply, the transcript).
local function error_json(err, details)
  local body = errors.body(err)
  if details then body.Details = errors.details(err) end
  return json.encode(body)
end

-- The GET body of the profile a store holds, encoded once per change
-- (the store hands back the same record while nothing changed) --> status,
-- body.
local get_bodies = {} -- store path, API version --> { record = , body = }
local function get_body(store_path, api_version, timeout_ms)
  local store = kfsmtp.open(store_path)
  -- A database store waits at most the handler's connect_timeout_ms.
  store.timeout_ms = timeout_ms
  local record, err = store:load()
  if not record then return err.status, json.encode(errors.body(err)), err end
  local key = store_path .. "\0" .. api_version
  local cached = get_bodies[key]
  if not cached or cached.record ~= record then
    cached = { record = record, body = json.encode(assert(store:get { api_version = api_version })) }
    get_bodies[key] = cached
  end
  return 200, cached.body
end

-- run_get(store_path, api_version, timeout_ms) --> status, body: GET for
-- a database store, whose reads may wait on the network.
function _M.run_get(store_path, api_version, timeout_ms)
  local status, body = get_body(store_path, api_version, timeout_ms)
  return status, body
end

-- run_update(store_path, req, api_version, details, secret_providers,
-- key_file, connect_timeout_ms) --> status, body
function _M.run_update(store_path, req, api_version, details, secret_providers, key_file, connect_timeout_ms)
  local p, err = kfsmtp.open(store_path):update(req, { api_version = api_version, secret_providers = secret_providers,
    key_file = key_file, connect_timeout_ms = connect_timeout_ms })
  if not p then return err.status, error_json(err, details) end
  return 200, json.encode(p)
end

-- run_test(store_path, req, opts, api_version, details) --> status, body.
-- Version 2 answers a good test with 200 and no body, as the real API
-- does; Details, when asked, is the whole body then.
function _M.run_test(store_path, req, opts, api_version, details)
  local store = kfsmtp.open(store_path)
  -- opts is this thread's own copy.
  opts.api_version = api_version
  local ok, res, info = pcall(store.test, store, req, opts)
  if not ok then
    -- Only a misconfigured handler (bad opts) raises here.
    return 500, json.encode(errors.body(errors.new("internal", { Message = "kfsmtp handler misconfigured: " .. tostring(res) })))
  end
  if not res then return info.status, error_json(info, details) end
  if api_version == 2 then res = {} end
  if details then res.Details = info end
  if next(res) == nil then return 200, "" end
  return 200, json.encode(res)
end

---------------------------------------------------------------------------
-- Request handling.

local function respond(status, body, headers)
  ngx.status = status
  if body ~= "" then
    ngx.header["Content-Type"] = JSON_TYPE
  else
    -- Version 2's "no content": say so, rather than an empty chunked body.
    ngx.header["Content-Length"] = 0
  end
  ngx.header["Cache-Control"] = "no-store"
  for k, v in pairs(headers or {}) do ngx.header[k] = v end
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

local function fail(kind, message, headers)
  local e = errors.new(kind, { Message = message })
  return respond(e.status, json.encode(errors.body(e)), headers)
end

-- 503 with Retry-After: the server is out of room for now, which says
-- nothing about the request (never a 401 for that).
local RETRY_AFTER_S = 1
local function busy()
  return fail("unavailable", "The server is too busy to take this request now: try again after Retry-After seconds.",
    { ["Retry-After"] = tostring(RETRY_AFTER_S) })
end

local function read_body(handler)
  local len = tonumber(ngx.var.http_content_length)
  if len and len > handler.max_body then return nil, "too_large" end
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if not data then
    -- A body larger than client_body_buffer_size lands in a file.
    local path = ngx.req.get_body_file()
    if path then
      local f = io.open(path, "rb")
      data = f and f:read(handler.max_body + 1) or ""
      if f then f:close() end
    end
  end
  data = data or ""
  if #data > handler.max_body then return nil, "too_large" end
  return data
end

-- The media types whose bodies are JSON: what Keyfactor's generated
-- clients may label them (their "consumes" list), +json suffixes included.
local function is_json_type(ctype)
  return ctype == "application/json" or ctype == "text/json" or ctype == "application/*+json"
    or ctype:match("^application/[%w!#$&^_.-]+%+json$") ~= nil
end

-- parse_body(handler, details, api_version) --> the request's fields |
-- nil, (response sent). Version 1 reads null as absent, as before;
-- version 2's models say where null is allowed, so its nulls are kept
-- for kfsmtp.profile to judge.
local function parse_body(handler, details, api_version)
  local ctype = (ngx.var.content_type or ""):lower():match("^%s*([^;%s]+)") or ""
  local is_json = is_json_type(ctype)
  if not is_json and ctype ~= "application/x-www-form-urlencoded" then
    return nil, fail("media_type", ("Content-Type %q is not supported: send JSON (application/json, text/json or application/*+json) or application/x-www-form-urlencoded."):format(ctype))
  end
  local data, why = read_body(handler)
  if not data then
    return nil, fail(why, ("The request body is larger than %d bytes."):format(handler.max_body))
  end
  local req = {}
  if is_json then
    local doc, err = body_json.decode(data)
    if doc == nil and tostring(err):find("too many nested", 1, true) then
      return nil, fail("bad_json", ("The JSON body is nested deeper than %d levels: send the SMTP fields as one object."):format(MAX_DEPTH))
    end
    if type(doc) ~= "table" or (next(doc) ~= nil and #doc > 0) then
      return nil, fail("bad_json", doc == nil and ("The body is not valid JSON: " .. tostring(err) .. ".")
        or "The body must be a JSON object with the SMTP fields.")
    end
    for k, v in pairs(doc) do
      if v ~= cjson.null or api_version == 2 then req[k] = v end
    end
  else
    local args = ngx.decode_args(data, 0)
    for k, v in pairs(args) do
      if type(v) == "table" then
        local e = errors.field(k, ("%s is given more than once in the form: send it once."):format(k), "ambiguous_field")
        return nil, respond(e.status, error_json(e, details))
      end
      req[k] = v == true and "" or v
    end
  end
  return req
end

local API_VERSIONS = { ["1"] = 1, ["1.0"] = 1, ["2"] = 2, ["2.0"] = 2 }
-- X-Kfsmtp-Details: kfsmtp's extension, asked for by the browser page.
local DETAILS_ON = { ["1"] = true, ["true"] = true, yes = true }

local function permission_list(perms)
  local list = {}
  for p in pairs(perms) do list[#list + 1] = p end
  table.sort(list)
  return table.concat(list, " ")
end

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- kfsmtp's extra fields of POST /SMTP/Test (any letter case), not part of
-- Keyfactor's API: QuitAfter, a check that sends no mail; AuthMechanism,
-- the SASL mechanism to use.
local EXTRA_FIELDS = {
  quitafter = { name = "QuitAfter", option = "quit_after", read = options.quit_stage,
    words = function() return options.QUIT_STAGE_WORDS end },
  authmechanism = { name = "AuthMechanism", option = "auth_mechanism", read = options.mechanism,
    words = function() return options.MECHANISM_WORDS end },
}

local ROUTES = {
  ["/smtp"] = { name = "smtp", allow = "GET, PUT", methods = { GET = users.READ, PUT = users.MODIFY } },
  ["/smtp/test"] = { name = "test", allow = "POST", methods = { POST = users.MODIFY } },
}

local Handler = {}
Handler.__index = Handler

function Handler:handle()
  local uri = ngx.var.uri
  local base = self.base
  if uri:sub(1, #base):lower() ~= base:lower() then
    return fail("not_found", "No such resource: the SMTP endpoints are " .. base .. "/SMTP and " .. base .. "/SMTP/Test.")
  end
  local route = ROUTES[uri:sub(#base + 1):lower():gsub("/$", "")]
  if not route then
    return fail("not_found", "No such resource: the SMTP endpoints are " .. base .. "/SMTP and " .. base .. "/SMTP/Test.")
  end

  local perms, kind, why = callers.authenticate(self, callers.basic_credentials())
  if perms == false then
    if kind == "unavailable" then return busy() end
    ngx.log(ngx.ERR, "kfsmtp: ", why)
    return fail("internal", "The server cannot check credentials: its users file or a worker thread failed (see the server's error log).")
  end
  if not perms then
    -- A script with its own sign-in form (X-Requested-With:
    -- XMLHttpRequest, the browser page) gets no challenge, which would
    -- make the browser open its own login dialog over the page.
    local challenge = ngx.var.http_x_requested_with ~= "XMLHttpRequest"
      and { ["WWW-Authenticate"] = ('Basic realm="%s", charset="UTF-8"'):format(self.realm) } or nil
    return fail("unauthenticated", "Authentication is required: send HTTP Basic credentials (DOMAIN\\user:password) of a configured user.", challenge)
  end

  -- ngx.var reads one header; ngx.req.get_headers() would build a table
  -- of all of them on every request.
  if not ngx.var.http_x_keyfactor_requested_with then
    return fail("missing_header", "The header X-Keyfactor-Requested-With is required (e.g. X-Keyfactor-Requested-With: APIClient).")
  end
  local version = ngx.var.http_x_keyfactor_api_version
  local api_version = version == nil and 1 or API_VERSIONS[version]
  if not api_version then
    return fail("bad_api_version", ("x-keyfactor-api-version %q is not supported for the SMTP endpoints: use 1 (the default) or 2."):format(version))
  end
  local details = DETAILS_ON[ngx.var.http_x_kfsmtp_details or ""] or false
  if details then
    -- So that a page can show a read-only form to a caller who may not
    -- change the profile, instead of letting them find out on Save.
    ngx.header["X-Kfsmtp-Permissions"] = permission_list(perms)
    -- And offer the secret providers there are: ids and types only.
    ngx.header["X-Kfsmtp-Secret-Providers"] = self.providers_header
  end

  local method = ngx.req.get_method()
  local needed = route.methods[method]
  if not needed then
    return fail("bad_method", ("%s is not allowed here: use %s."):format(method, route.allow), { Allow = route.allow })
  end
  if not perms[needed] then
    return fail("forbidden", ("The permission %s is required for %s %s."):format(needed, method, uri))
  end

  if method == "GET" then
    local status, body, err
    if self.database then
      -- Never on the event loop: a stalled database stalls a thread only.
      status, body = in_thread(self.thread_pool, "kfsmtp.openresty", "run_get", self.store, api_version,
        self.test_options.connect_timeout_ms)
      if not status then
        if body == "unavailable" then return busy() end
        return fail("internal", "The request could not be run (see the server's error log).")
      end
    else
      status, body, err = get_body(self.store, api_version, nil)
      if err then ngx.log(ngx.ERR, "kfsmtp: ", err.Message) end
    end
    return respond(status, body)
  end

  local req, done = parse_body(self, details, api_version)
  if not req then return done end
  local status, body
  if route.name == "smtp" then
    status, body = in_thread(self.thread_pool, "kfsmtp.openresty", "run_update", self.store, req, api_version, details,
      self.test_options.secret_providers, self.test_options.key_file, self.test_options.connect_timeout_ms)
  else
    local opts = self.test_options
    for k, v in pairs(req) do
      local extra = type(k) == "string" and EXTRA_FIELDS[k:lower()]
      if extra then
        local value = extra.read(v)
        if not value then
          local e = errors.field(extra.name, ("%s must be %s."):format(extra.name, extra.words()))
          return respond(e.status, error_json(e, details))
        end
        opts = copy(opts)
        opts[extra.option] = value
        req[k] = nil
      end
    end
    if details then
      opts = copy(opts)
      opts.transcript = true
    end
    status, body = in_thread(self.thread_pool, "kfsmtp.openresty", "run_test", self.store, req, opts, api_version, details)
  end
  if not status then
    if body == "unavailable" then return busy() end
    return fail("internal", "The request could not be run (see the server's error log).")
  end
  return respond(status, body)
end

-- A handler's own options, and the test options it passes on.
local HANDLER_KEYS = { "store", "users_file", "base", "thread_pool", "auth_thread_pool", "auth_shared_dict", "realm", "max_body" }
local OPTION_KEYS = { "connect_timeout_ms", "timeout_ms", "tls_verify", "ca_file", "helo", "pinned_pubkey",
  "secret_providers", "key_file" }

-- new(opts) --> handler. opts: store, users_file or authenticate, base,
-- thread_pool, auth_thread_pool and auth_shared_dict (password checks),
-- realm, max_body, and
-- the test options of kfsmtp.test (connect_timeout_ms, timeout_ms,
-- tls_verify, ca_file, helo, pinned_pubkey, secret_providers, key_file:
-- the key file that seals stored secrets, for update and test alike).
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("kfsmtp.openresty: opts must be a table", 2) end
  local h = setmetatable({
    store = opts.store or options.store_path(),
    users_file = opts.users_file,
    authenticate = opts.authenticate,
    base = (opts.base or "/KeyfactorAPI"):gsub("/$", ""),
    thread_pool = opts.thread_pool or "kfsmtp",
    auth_thread_pool = opts.auth_thread_pool or "kfsmtp_auth",
    auth_shared_dict = opts.auth_shared_dict or "kfsmtp_auth",
    realm = opts.realm or "Keyfactor Command",
    max_body = opts.max_body or MAX_BODY,
    test_options = {},
  }, Handler)
  h.database = pgstore.is_uri(h.store)
  if h.authenticate ~= nil and type(h.authenticate) ~= "function" then
    error("kfsmtp.openresty: authenticate must be a function", 2)
  end
  for _, k in ipairs(OPTION_KEYS) do h.test_options[k] = opts[k] end
  -- A bad provider list is the operator's error: raised here, at once.
  options.check({ secret_providers = opts.secret_providers, key_file = opts.key_file }, "openresty")
  local summary = {}
  for _, p in ipairs(secrets.summary(opts.secret_providers)) do
    summary[#summary + 1] = ("%d=%s"):format(p.Id, p.Type)
  end
  h.providers_header = table.concat(summary, ", ")
  return h
end

-- secret_providers as text, the same for the same configuration.
local function providers_key(providers)
  if type(providers) ~= "table" then return tostring(providers) end
  local ids = {}
  for id in pairs(providers) do ids[#ids + 1] = id end
  table.sort(ids, function(a, b) return tostring(a) < tostring(b) end)
  for i, id in ipairs(ids) do
    local p = providers[id]
    ids[i] = type(p) == "table" and table.concat({ tostring(id), tostring(p.type), tostring(p.dir),
      type(p.names) == "table" and table.concat(p.names, ",") or tostring(p.names) }, "\1") or tostring(p)
  end
  return table.concat(ids, "\2")
end

-- Handlers built from the same options are reused: the opts table of a
-- content_by_lua_block is a new table on every request.
local handlers = {}
local function handler_key(opts)
  if opts.authenticate then return nil end -- a new closure every request
  local parts = {}
  for _, keys in ipairs { HANDLER_KEYS, OPTION_KEYS } do
    for _, k in ipairs(keys) do
      parts[#parts + 1] = k == "secret_providers" and providers_key(opts[k]) or tostring(opts[k])
    end
  end
  return table.concat(parts, "\0")
end

-- serve(opts): handle the current request (content_by_lua*).
function _M.serve(opts)
  opts = opts or {}
  local key = type(opts) == "table" and handler_key(opts)
  local h = key and handlers[key]
  if not h then
    h = _M.new(opts)
    if key then handlers[key] = h end
  end
  return h:handle()
end

-- For `error_page 413 = @kfsmtp_too_large`: nginx's own limit
-- (client_max_body_size) answered with the API's JSON instead of HTML.
function _M.too_large()
  return fail("too_large", ("The request body is larger than %d bytes."):format(MAX_BODY))
end

return _M
