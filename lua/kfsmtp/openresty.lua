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
local users = require "kfsmtp.users"
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

-- run_update(store_path, req, api_version, details) --> status, body
function _M.run_update(store_path, req, api_version, details)
  local p, err = kfsmtp.open(store_path):update(req, { api_version = api_version })
  if not p then return err.status, error_json(err, details) end
  return 200, json.encode(p)
end

-- run_test(store_path, req, opts, api_version, details) --> status, body.
-- Version 2 answers a good test with 200 and no body, as the real API
-- does; Details, when asked, is the whole body then.
function _M.run_test(store_path, req, opts, api_version, details)
  local store = kfsmtp.open(store_path)
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

-- What ngx.run_worker_thread answers when it is out of room rather than
-- broken: no Lua VM left in this worker (lua_worker_thread_vm_pool_size,
-- shared by every pool), or the pool's queue full (max_queue).
local OUT_OF_ROOM = { ["no available Lua vm"] = true, ["ngx_thread_task_post failed"] = true, ["no memory"] = true }

-- in_thread(pool, module, fn, ...) --> the function's results
--   | nil, "unavailable" | "internal", message
local function in_thread(pool, module, fn, ...)
  local ok, a, b = ngx.run_worker_thread(pool, module, fn, ...)
  if ok then return a, b end
  local room = OUT_OF_ROOM[a]
  ngx.log(room and ngx.WARN or ngx.ERR, "kfsmtp: worker thread (", pool, "): ", tostring(a))
  return nil, room and "unavailable" or "internal", tostring(a)
end

---------------------------------------------------------------------------
-- Callers' passwords. PBKDF2 is slow on purpose, and a flood of guesses
-- must not turn good requests into 401s or starve PUT and Test:
-- - checks run in their own thread pool (auth_thread_pool);
-- - at most CHECKS_MAX checks wait or run per worker, CHECKS_PER_NAME for
--   one name, so guesses at one name leave room for everyone else (and
--   Lua VMs for PUT and Test); past either bound the answer is 503;
-- - a right password is remembered, and so is a wrong one for a while:
--   the same guess again costs no PBKDF2, nor does the same one at once;
-- - an unknown name is checked against a dummy hash of the same cost, so
--   that the time of a 401 does not tell which names exist.
-- The memories are keyed by an HMAC, under a random key, of the users
-- file, the user's hash, the name and the password: never the password
-- itself. With a lua_shared_dict (auth_shared_dict) the memories and
-- their key are shared by every worker, so a password checked in one is
-- known to all; without it each worker keeps its own.
local CHECKS_MAX, CHECKS_PER_NAME, CHECK_STALE_S = 32, 4, 60
local DEFAULT_ITERATIONS = 100000 -- kfsmtp.core.password_hash's

local function memory(prefix, max, ttl) return { prefix = prefix, max = max, ttl = ttl, n = 0, expires = {} } end
local verified = memory("v", 1024, 300)
local failed = memory("f", 4096, 30)

-- shm is the shared dict or nil; a full one drops its oldest entries.
local function recalls(shm, m, key, now)
  if shm then return shm:get(m.prefix .. key) ~= nil end
  local t = m.expires[key]
  return t ~= nil and t > now
end

local function remember(shm, m, key, now)
  if shm then
    shm:set(m.prefix .. key, true, m.ttl)
    return
  end
  if m.n >= m.max then m.expires, m.n = {}, 0 end
  if m.expires[key] == nil then m.n = m.n + 1 end
  m.expires[key] = now + m.ttl
end

local random_bytes -- 32 for the HMAC key, 16 for the dummy salt
local function random()
  if not random_bytes then
    local f = assert(io.open("/dev/urandom", "rb"))
    random_bytes = f:read(48)
    f:close()
  end
  return random_bytes
end

-- The HMAC key: the first worker's, when they share a dict.
local function hmac_key(shm)
  if not shm then return random():sub(1, 32) end
  local k = shm:get("hmac-key")
  if not k then
    shm:add("hmac-key", random():sub(1, 32))
    k = shm:get("hmac-key") or random():sub(1, 32)
  end
  return k
end

-- The hash an unknown name is checked against: the users' own cost (their
-- most iterations), a random salt, and a value no password yields.
-- Built once per version of the users file.
local dummies = setmetatable({}, { __mode = "k" })
local function dummy_hash(list)
  local d = dummies[list]
  if d then return d end
  local iterations = 0
  for _, u in pairs(list) do
    iterations = math.max(iterations, tonumber(u.hash:match("^pbkdf2%-sha256%$(%d+)%$")) or 0)
  end
  if iterations == 0 or iterations > 10000000 then iterations = DEFAULT_ITERATIONS end
  local salt = random():sub(33, 48):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  d = ("pbkdf2-sha256$%d$%s$%s"):format(iterations, salt, ("0"):rep(64))
  dummies[list] = d
  return d
end

-- Checks waiting or running: token --> { name =, started = }. One that
-- never came back (its request aborted) stops counting after CHECK_STALE_S.
local checks = {}
local function admit(name, now)
  local total, same = 0, 0
  for token, c in pairs(checks) do
    if now - c.started > CHECK_STALE_S then
      checks[token] = nil
    else
      total = total + 1
      if c.name == name then same = same + 1 end
    end
  end
  if total >= CHECKS_MAX or same >= CHECKS_PER_NAME then return nil end
  local token = { name = name, started = now }
  checks[token] = token
  return token
end

-- verify(handler, password, hash) --> true | false | nil, kind, message
local function verify(handler, password, hash)
  local ok, kind, why = in_thread(handler.auth_thread_pool, "kfsmtp.users", "verify", password, hash)
  if ok == nil and kind == "internal" and handler.auth_thread_pool ~= handler.thread_pool
      and why:find("^thread pool .* not found$") then
    -- A configuration from before auth_thread_pool: share the other pool.
    ngx.log(ngx.ERR, "kfsmtp: no thread_pool ", handler.auth_thread_pool,
      " in nginx.conf: password checks share ", handler.thread_pool, " (define it so they cannot starve PUT and Test)")
    handler.auth_thread_pool = handler.thread_pool
    ok, kind, why = in_thread(handler.auth_thread_pool, "kfsmtp.users", "verify", password, hash)
  end
  return ok, kind, why
end

-- Checks of the same name and password at once (a client's parallel first
-- requests, a flood repeating one guess) share one PBKDF2 and one slot:
-- key --> { started =, waiting =, sema =, ok =, kind =, why = }.
local pending = {}

-- check(handler, key, name, password, hash, now) --> as verify
local function check(handler, key, name, password, hash, now)
  local p = pending[key]
  if p and now - p.started <= CHECK_STALE_S then
    p.waiting = p.waiting + 1
    if not p.sema:wait(CHECK_STALE_S) then return nil, "unavailable" end
    return p.ok, p.kind, p.why
  end
  local token = admit(name, now)
  if not token then
    ngx.log(ngx.INFO, "kfsmtp: too many password checks waiting: 503")
    return nil, "unavailable"
  end
  -- Required here: worker threads load this module too, without ngx.semaphore.
  p = { started = now, waiting = 0, sema = require("ngx.semaphore").new() }
  pending[key] = p
  p.ok, p.kind, p.why = verify(handler, password, hash)
  checks[token] = nil
  if pending[key] == p then pending[key] = nil end
  if p.waiting > 0 then p.sema:post(p.waiting) end
  return p.ok, p.kind, p.why
end

local function basic_credentials()
  local h = ngx.var.http_authorization
  if not h then return nil end
  local b64 = h:match("^%s*[Bb][Aa][Ss][Ii][Cc]%s+(%S+)%s*$")
  if not b64 then return nil end
  local decoded = ngx.decode_base64(b64)
  if not decoded then return nil end
  local name, password = decoded:match("^([^:]*):(.*)$")
  if not name or name == "" then return nil end
  return { username = name, password = password }
end

-- permissions set | nil (not authenticated)
--   | false, "unavailable" | "internal", message (no verdict)
local function authenticate(handler, creds)
  if handler.authenticate then
    local perms = handler.authenticate(creds)
    if not perms then return nil end
    local set = {}
    for k, v in pairs(perms) do
      if type(k) == "number" then set[v] = true else set[k] = v and true or nil end
    end
    return set
  end
  if not handler.users_file or not creds then return nil end
  local list, why = users.load(handler.users_file)
  if not list then return false, "internal", why end
  local name = creds.username:lower()
  local user = list[name]
  -- From here on a known and an unknown name take the same steps.
  local hash = user and user.hash or dummy_hash(list)
  local shm = ngx.shared[handler.auth_shared_dict]
  local key = ngx.hmac_sha1(hmac_key(shm), handler.users_file .. "\0" .. hash .. "\0" .. name .. "\0" .. creds.password)
  local now = ngx.now()
  if user and recalls(shm, verified, key, now) then return user.permissions end
  if recalls(shm, failed, key, now) then return nil end
  local ok, kind
  ok, kind, why = check(handler, key, name, creds.password, hash, now)
  if ok == nil then return false, kind, why end
  if ok and user then
    remember(shm, verified, key, ngx.now())
    return user.permissions
  end
  remember(shm, failed, key, ngx.now())
  return nil
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

local function parse_body(handler, details)
  local ctype = (ngx.var.content_type or ""):lower():match("^%s*([^;%s]+)") or ""
  if ctype ~= "application/json" and ctype ~= "application/x-www-form-urlencoded" then
    return nil, fail("media_type", ("Content-Type %q is not supported: send application/json or application/x-www-form-urlencoded."):format(ctype))
  end
  local data, why = read_body(handler)
  if not data then
    return nil, fail(why, ("The request body is larger than %d bytes."):format(handler.max_body))
  end
  local req = {}
  if ctype == "application/json" then
    local doc, err = body_json.decode(data)
    if doc == nil and tostring(err):find("too many nested", 1, true) then
      return nil, fail("bad_json", ("The JSON body is nested deeper than %d levels: send the SMTP fields as one object."):format(MAX_DEPTH))
    end
    if type(doc) ~= "table" or (next(doc) ~= nil and #doc > 0) then
      return nil, fail("bad_json", doc == nil and ("The body is not valid JSON: " .. tostring(err) .. ".")
        or "The body must be a JSON object with the SMTP fields.")
    end
    for k, v in pairs(doc) do
      if v ~= cjson.null then req[k] = v end
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

local get_bodies = {} -- store path, API version --> { record = , body = }

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

  local perms, kind, why = authenticate(self, basic_credentials())
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
    local store = kfsmtp.open(self.store)
    local record, err = store:load()
    if not record then
      ngx.log(ngx.ERR, "kfsmtp: ", err.Message)
      return respond(err.status, json.encode(errors.body(err)))
    end
    -- The store hands back the same record while nothing changed: so is
    -- the body, encoded once per change instead of once per request.
    local key = self.store .. "\0" .. api_version
    local cached = get_bodies[key]
    if not cached or cached.record ~= record then
      cached = { record = record, body = json.encode(assert(store:get { api_version = api_version })) }
      get_bodies[key] = cached
    end
    return respond(200, cached.body)
  end

  local req, done = parse_body(self, details)
  if not req then return done end
  local status, body
  if route.name == "smtp" then
    status, body = in_thread(self.thread_pool, "kfsmtp.openresty", "run_update", self.store, req, api_version, details)
  else
    -- QuitAfter (any letter case): kfsmtp's extra field for a check that
    -- sends no mail; not part of Keyfactor's API.
    local opts = self.test_options
    for k, v in pairs(req) do
      if type(k) == "string" and k:lower() == "quitafter" then
        local stage = options.quit_stage(v)
        if not stage then
          local e = errors.field("QuitAfter", ("QuitAfter must be %s."):format(options.QUIT_STAGE_WORDS))
          return respond(e.status, error_json(e, details))
        end
        opts = copy(opts)
        opts.quit_after = stage
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
local OPTION_KEYS = { "connect_timeout_ms", "timeout_ms", "tls_verify", "ca_file", "helo", "pinned_pubkey" }

-- new(opts) --> handler. opts: store, users_file or authenticate, base,
-- thread_pool, auth_thread_pool and auth_shared_dict (password checks),
-- realm, max_body, and
-- the test options of kfsmtp.test (connect_timeout_ms, timeout_ms,
-- tls_verify, ca_file, helo, pinned_pubkey).
function _M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("kfsmtp.openresty: opts must be a table", 2) end
  local h = setmetatable({
    store = opts.store or kfsmtp.default_store_path(),
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
  if h.authenticate ~= nil and type(h.authenticate) ~= "function" then
    error("kfsmtp.openresty: authenticate must be a function", 2)
  end
  for _, k in ipairs(OPTION_KEYS) do h.test_options[k] = opts[k] end
  return h
end

-- Handlers built from the same scalar options are reused: the opts table
-- of a content_by_lua_block is a new table on every request.
local handlers = {}
local function handler_key(opts)
  if opts.authenticate then return nil end -- a new closure every request
  local parts = {}
  for _, keys in ipairs { HANDLER_KEYS, OPTION_KEYS } do
    for _, k in ipairs(keys) do parts[#parts + 1] = tostring(opts[k]) end
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
