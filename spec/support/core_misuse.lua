-- Every kfsmtp.core function called with every kind of value, in every
-- field of its table and every positional argument: values of a wrong type
-- or out of range must raise an error naming the function and the key;
-- the others must be taken (a failure of the world may come back as nil or
-- ok = false, never as an error). Used by spec/core_spec.lua (busted, Lua
-- 5.4 and LuaJIT), by spec/pgstore_spec.lua for a connection's methods
-- (which need a live PostgreSQL) and by spec/support/core_memcheck.lua
-- (valgrind).
local M = {}

local unpack = table.unpack or unpack
local LONG = ("x"):rep(1024 * 1024)

-- The kinds of value tried in every place, by name. { name, nil } has a
-- nil value: the field or argument is left out.
M.VALUES = {
  { "nil", nil }, { "a number", 42 }, { "true", true }, { "false", false },
  { "a nested table", { { "x" } } }, { "a function", print }, { "a userdata", io.stdout },
  { "1e300", 1e300 }, { "0.5", 0.5 }, { "-1", -1 }, { "NaN", 0 / 0 }, { "inf", math.huge },
  { "a numeric string", "25" }, { "an empty string", "" }, { "a 1 MB string", LONG },
  { "a string with NUL", "a\0b" },
}

-- What each kind of field or argument takes; anything else raises.
local function text(max, optional)
  return function(v)
    if v == nil then return optional == true end
    return type(v) == "string" and #v <= max and not v:find("\0", 1, true)
  end
end
local function bytes(v) return type(v) == "string" end
local function short_bytes(max)
  return function(v) return type(v) == "string" and #v <= max end
end
local function int(min, max)
  return function(v)
    if v == nil then return true end -- every integer has a default
    return type(v) == "number" and v == math.floor(v) and v >= min and v <= max
  end
end
local function absolute(max)
  return function(v) return text(max)(v) and v:sub(1, 1) == "/" end
end
-- An array of at most 32 "Name: Value" strings of at most 8192 bytes,
-- no CR, LF or NUL (fetch_token's headers).
local function header_list(v)
  if v == nil then return true end
  if type(v) ~= "table" then return false end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  if n > 32 then return false end
  for i = 1, n do
    local h = v[i]
    if type(h) ~= "string" or #h > 8192 or h:find("\0", 1, true) or h:find("[\r\n]")
      or not h:find("^[%w!#$%%&'*+%-.^_`|~]+:") then
      return false
    end
  end
  return true
end
local function bool(v) return v == nil or type(v) == "boolean" end
local function choice(names, optional)
  return function(v)
    if v == nil then return optional == true end
    for _, n in ipairs(names) do
      if v == n then return true end
    end
    return false
  end
end
local function never() return false end

local ANY = math.huge
local FIELD, MAILBOX, TOKEN, PATH = 4096, 254, 64 * 1024, 4096
local URI, APP_NAME, PG_TEXT = 4096, 63, 1024 * 1024
local TIMEOUT = int(1, 86400000)

-- Lists tried in fetch_token's headers besides M.VALUES.
local MANY, BIG = {}, "X-Big: " .. ("b"):rep(8192 - 7)
for i = 1, 33 do MANY[i] = "X-N: " .. i end
local HEADER_LISTS = {
  { "an empty list", {} }, { "two headers", { "X-Api-Key: k", "X-Trace: 1" } },
  { "32 headers", { unpack(MANY, 1, 32) } }, { "33 headers", MANY },
  { "a header of 8192 bytes", { BIG } }, { "a header of 8193 bytes", { BIG .. "b" } },
  { "a header with CR LF", { "X-A: 1\r\nX-B: 2" } }, { "a header with LF", { "X-A: 1\nX-B: 2" } },
  { "a header with NUL", { "X-A: 1\0" } }, { "a header without a name", { ": x" } },
  { "a header without a colon", { "X-A" } }, { "a number in the list", { "X-A: 1", 42 } },
  { "a gap in the list", { "X-A: 1", nil, "X-C: 3" } }, { "a list with a named key", { x = "X-A: 1" } },
}

-- The calls, each a function, its valid arguments (base) and, per field or
-- argument, what it takes and what is put in front of every string tried:
-- the test folder for store paths, so nothing is written outside it, and
-- the loopback address for hosts and endpoints, so nothing leaves the
-- machine ("25" becomes 127.0.0.125).
function M.calls(core, ctx)
  local dir = ctx.dir
  local path = dir .. "/store.json"
  local lock = assert(core.store_lock(dir .. "/locked.json"))
  local hash = core.password_hash("correct horse", 1000)
  -- A secret the base call reads (store_write makes it 0600).
  assert(core.store_write(dir .. "/secret", "s3cret\n"))
  -- A key file and a value sealed with it (made once per folder).
  local key = dir .. "/seal.key"
  core.key_generate { path = key }
  local key_id = assert(core.key_id { key_file = key })
  local sealed = assert(core.seal { key_file = key, plaintext = "s3cret", aad = "kfsmtp/1/RelayPassword" })
  local closed = "127.0.0.1"
  local endpoint = ("http://%s:%d/"):format(closed, ctx.closed)
  return {
    { fn = "compose",
      base = { sender_name = "Zertifikatsstelle", sender_account = "kf@example.com",
        recipient = "ops@example.com", host = "mail.example.com", port = 587, tls_mode = "starttls",
        now = 1795506760 },
      fields = {
        { "sender_name", text(FIELD) }, { "sender_account", text(MAILBOX) },
        { "recipient", text(FIELD) }, { "host", text(FIELD) }, { "port", int(1, 65535) },
        { "tls_mode", choice(core.TLS_MODES) }, { "now", int(0, 253402300799) },
      } },
    -- A closed port and quit_after = "connect": whatever is taken, nothing
    -- is delivered anywhere.
    { fn = "deliver",
      base = { host = closed, port = ctx.closed, tls_mode = "none", username = "u", password = "p",
        bearer = "token", mail_from = "<kf@example.com>", rcpt_to = "<ops@example.com>",
        message = "Subject: x\r\n\r\nx\r\n", helo = "localhost", ca_file = dir .. "/ca.pem",
        pinned_pubkey = "sha256//AAAA", tls_verify = true, connect_timeout_ms = 300,
        timeout_ms = 1000, transcript = true, quit_after = "connect" },
      fields = {
        { "host", text(FIELD), closed }, { "port", int(1, 65535) },
        { "tls_mode", choice(core.TLS_MODES) }, { "username", text(FIELD, true) }, { "password", text(FIELD, true) },
        { "bearer", text(TOKEN, true) }, { "mail_from", text(FIELD) }, { "rcpt_to", text(FIELD) },
        { "message", bytes }, { "helo", text(FIELD) }, { "ca_file", text(FIELD, true) },
        { "pinned_pubkey", text(FIELD, true) }, { "tls_verify", bool },
        { "connect_timeout_ms", TIMEOUT }, { "timeout_ms", TIMEOUT }, { "transcript", bool },
        { "quit_after", choice(core.QUIT_STAGES, true) },
        { "auth_mechanism", choice(core.SASL_MECHANISMS, true) },
      } },
    { fn = "fetch_token",
      base = { endpoint = endpoint .. "token", client_id = "id",
        client_secret = "secret", scope = "smtp", audience = "aud", headers = { "X-Api-Key: k" },
        ca_file = dir .. "/ca.pem", tls_verify = true, connect_timeout_ms = 300, timeout_ms = 1000 },
      fields = {
        { "endpoint", text(FIELD), endpoint }, { "client_id", text(FIELD) }, { "client_secret", text(FIELD) },
        { "scope", text(FIELD, true) }, { "audience", text(FIELD, true) },
        { "headers", header_list, extra = HEADER_LISTS },
        { "ca_file", text(FIELD, true) }, { "tls_verify", bool },
        { "connect_timeout_ms", TIMEOUT }, { "timeout_ms", TIMEOUT },
      } },
    { fn = "check_text", base = { "x" }, args = { { "value", bytes } } },
    { fn = "check_host", base = { "mail.example.com" }, args = { { "value", bytes } } },
    { fn = "check_mailbox", base = { "kf@example.com" }, args = { { "value", bytes } } },
    { fn = "check_display_name", base = { "Zertifikatsstelle" }, args = { { "value", bytes } } },
    { fn = "store_read", base = { path }, args = { { "path", text(ANY), dir .. "/" } } },
    { fn = "store_stat", base = { path }, args = { { "path", text(ANY), dir .. "/" } } },
    { fn = "store_write", base = { path, "{}\n" },
      args = { { "path", text(ANY), dir .. "/" }, { "data", bytes } } },
    { fn = "store_sweep", base = { path }, args = { { "path", text(ANY), dir .. "/" } } },
    { fn = "store_lock", base = { path }, args = { { "path", text(ANY), dir .. "/" } },
      after = function(l) if type(l) == "userdata" then l:release() end end },
    { fn = "password_hash", base = { "correct horse", 1000 },
      args = { { "password", bytes }, { "iterations", int(1000, 10000000) } } },
    { fn = "password_verify", base = { "correct horse", hash },
      args = { { "password", bytes }, { "hash", text(ANY) } } },
    { fn = "lock:release", call = lock.release, base = { lock }, args = { { "self", never } } },
    -- dir is tried as given: any string but an absolute path raises; a
    -- path tried stays in the test folder (or is refused as outside it).
    { fn = "read_secret_file", base = { dir = dir, path = "secret", max = 64 },
      fields = { { "dir", absolute(PATH) }, { "path", text(PATH) }, { "max", int(1, 1048576) } } },
    -- Paths tried stay in the test folder; a key made there is refused
    -- the next time (never overwritten).
    { fn = "key_generate", base = { path = dir .. "/generated.key" },
      fields = { { "path", text(PATH), dir .. "/" } } },
    { fn = "key_id", base = { key_file = key }, fields = { { "key_file", text(PATH), dir .. "/" } } },
    { fn = "seal", base = { key_file = key, plaintext = "s3cret", aad = "kfsmtp/1/RelayPassword" },
      fields = { { "key_file", text(PATH), dir .. "/" }, { "plaintext", text(65534) }, { "aad", text(1024) } } },
    { fn = "unseal", base = { key_file = key, sealed = sealed, aad = "kfsmtp/1/RelayPassword", key_id = key_id },
      fields = { { "key_file", text(PATH), dir .. "/" }, { "sealed", text(87420) }, { "aad", text(1024) },
        { "key_id", text(16, true) } } },
    -- The process's token cache: keys tried are new ones, so the cache
    -- other specs use is left as it was.
    { fn = "token_cache_get", base = { "misuse-key" }, args = { { "key", bytes } } },
    { fn = "token_cache_put", base = { "misuse-key", "tok", 60 },
      args = { { "key", bytes }, { "token", bytes }, { "lifetime_s", int(1, 24 * 3600) } },
      always = function() core.token_cache_forget("misuse-key") end },
    { fn = "token_cache_forget", base = { "misuse-key" }, args = { { "key", bytes } } },
    { fn = "base64", base = { "secret" }, args = { { "value", short_bytes(TOKEN) } } },
    { fn = "url_escape", base = { "secret" }, args = { { "value", short_bytes(TOKEN) } } },
    -- A closed loopback port (every URI tried points there): whatever is
    -- taken, nothing connects.
    { fn = "pg_connect",
      base = { uri = ("postgresql://kfsmtp@127.0.0.1:%d/kfsmtp"):format(ctx.closed),
        connect_timeout_ms = 300, application_name = "kfsmtp" },
      fields = {
        { "uri", text(URI), ("postgresql://127.0.0.1:%d/"):format(ctx.closed) },
        { "connect_timeout_ms", TIMEOUT }, { "application_name", text(APP_NAME, true) },
      } },
  }
end

-- The methods of a connection to a live PostgreSQL (ctx.pg_uri, from
-- spec/support/pg.lua), for spec/pgstore_spec.lua and, under valgrind,
-- spec/support/core_memcheck.lua. commit_write runs inside a transaction
-- begun for it; every transaction is rolled back after the call.
function M.pg_calls(core, ctx)
  local conn = assert(core.pg_connect { uri = ctx.pg_uri, application_name = "kfsmtp-misuse" })
  local closing = assert(core.pg_connect { uri = ctx.pg_uri, application_name = "kfsmtp-misuse" })
  assert(conn:ensure_table())
  local m = getmetatable(conn).__index
  local function rollback() m.rollback(conn) end
  local function self_only(name)
    return { fn = "pg:" .. name, call = m[name], base = { conn }, args = { { "self", never } } }
  end
  local function timed(name)
    return { fn = "pg:" .. name, call = m[name], base = { conn, 5000 },
      args = { { "self", never }, { "timeout_ms", TIMEOUT } }, always = rollback }
  end
  return {
    timed "ensure_table", timed "load", timed "begin_locked", timed "listen",
    { fn = "pg:commit_write", call = m.commit_write, base = { conn, "{}", 5000 },
      args = { { "self", never }, { "text", text(PG_TEXT) }, { "timeout_ms", TIMEOUT } },
      before = function() m.begin_locked(conn) end, always = rollback },
    self_only "rollback", self_only "poll", self_only "info",
    { fn = "pg:close", call = m.close, base = { closing }, args = { { "self", never } } },
  }
end

-- base (a table of fields, or the array of arguments) with key set to value
local function with(base, key, value)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  t[key] = value
  return t
end

-- each(core, ctx, visit): visit(case) for every misuse and every taken
-- value: case = { fn, key, what, raises, run = function() --> ok, err },
-- raises telling whether the call must raise. ctx: { dir = an empty
-- folder, closed = a loopback port nothing listens on, pg_uri = a
-- PostgreSQL's URI or nil }.
function M.each(core, ctx, visit)
  local calls = M.calls(core, ctx)
  -- With a PostgreSQL to connect to, the connection's methods too.
  if ctx.pg_uri then
    for _, c in ipairs(M.pg_calls(core, ctx)) do calls[#calls + 1] = c end
  end
  for _, c in ipairs(calls) do
    local f = c.call or core[c.fn]
    local function case(key, what, raises, ...)
      local n, args = select("#", ...), { ... }
      visit { fn = c.fn, key = key, what = what, raises = raises, run = function()
        if c.before then c.before() end
        local ok, r = pcall(f, unpack(args, 1, n))
        if ok and c.after then c.after(r) end
        if c.always then c.always() end
        collectgarbage()
        return ok, r
      end }
    end
    if c.fields then
      for _, v in ipairs(M.VALUES) do
        -- (a table in its place is one whose fields are all missing)
        if type(v[2]) ~= "table" then case("#1", v[1] .. " instead of the table", true, v[2]) end
      end
    end
    for i, place in ipairs(c.fields or c.args) do
      local key, takes, under = place[1], place[2], place[3]
      local values = { unpack(M.VALUES, 1, #M.VALUES) }
      for _, v in ipairs(place.extra or {}) do values[#values + 1] = v end
      for _, v in ipairs(values) do
        local value = v[2]
        if under and type(value) == "string" then value = under .. value end
        if c.fields then
          case(key, v[1], not takes(value), with(c.base, key, value))
        else
          case(key, v[1], not takes(value), unpack(with(c.base, i, value), 1, #c.base))
        end
      end
    end
  end
end

-- A table whose fields are made on access: each string is built afresh
-- (long enough not to be interned by Lua 5.4) after a full collection, so
-- only the stack of the C function holds it. C must keep it alive there.
local function made_on_access(t)
  return setmetatable({}, { __index = function(_, k)
    collectgarbage()
    local v = t[k]
    if type(v) == "string" then return (v .. ("\0"):rep(48)):sub(1, #v) end
    return v
  end })
end

-- proxied(core, ctx) --> message, message_id, delivery result, both read
-- through made_on_access tables, then collected.
function M.proxied(core, ctx)
  local name = ("Zertifikatsstelle "):rep(4)
  local message, id = core.compose(made_on_access {
    sender_name = name, sender_account = "kf@example.com", recipient = "ops@example.com",
    host = "mail.example.com", port = 465, tls_mode = "implicit" })
  collectgarbage()
  local r = core.deliver(made_on_access {
    host = "127.0.0.1", port = ctx.closed, tls_mode = "none", mail_from = "<kf@example.com>",
    rcpt_to = "<ops@example.com>", message = message, helo = ("h"):rep(60), connect_timeout_ms = 300 })
  collectgarbage()
  return message, id, r
end

-- verdict(case, ok, err) --> nil when the call behaved, else what is wrong.
function M.verdict(case, ok, err)
  local where = ("%s, %s = %s"):format(case.fn, case.key, case.what)
  if not case.raises then
    if not ok then return where .. ": raised " .. tostring(err) end
    return nil
  end
  if ok then return where .. ": did not raise" end
  if type(err) ~= "string" then return where .. ": raised a " .. type(err) end
  local prefix = "kfsmtp.core." .. case.fn .. ": "
  local named = case.key == "#1" and "argument #1 " or ("'" .. case.key .. "'")
  -- An entry of a list is named as 'key[i]'.
  local entry = case.key ~= "#1" and err:find("'" .. case.key .. "[", 1, true)
  if err:sub(1, #prefix) ~= prefix or not (err:find(named, 1, true) or entry) or err:find("#-1", 1, true) then
    return where .. ": the error does not name the function and " .. named .. ": " .. err
  end
  return nil
end

return M
