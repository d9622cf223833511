-- The HTTP API's callers: HTTP Basic credentials, checked against the
-- users file (kfsmtp.users) or the handler's own authenticate callback.
--
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
local users = require "kfsmtp.users"
local in_thread = require("kfsmtp.worker_thread").run

local _M = {}

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

function _M.basic_credentials()
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
function _M.authenticate(handler, creds)
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
  if user and recalls(shm, verified, key, now) then
    -- A caller in use stays remembered (a sliding expiry), so that one
    -- signed in before a flood of guesses at its name is not locked out
    -- when the first memory would have run out.
    remember(shm, verified, key, now)
    return user.permissions
  end
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

return _M
