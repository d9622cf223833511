-- The profile in PostgreSQL, for several nodes sharing one profile: the
-- same primitives as kfsmtp.file's (current, read, with_lock, write), so
-- kfsmtp.store runs on either without knowing which. The C core speaks
-- libpq (csrc/pgstore.c); this module decides when to ask the database.
--
-- Freshness without a round trip per read: each Lua state keeps a second
-- connection that LISTENs on the channel every committing update NOTIFYs
-- in its own transaction. current() asks that connection, without sending
-- anything, whether a notification came; only then does it read the row.
-- LISTEN is issued before the read that fills the cache, and a listener
-- found dead is replaced and the row read again, so no change is missed.
local core = require "kfsmtp.core"
local errors = require "kfsmtp.errors"
local options = require "kfsmtp.options"

local setmetatable, pcall, error = setmetatable, pcall, error

local _M = {}

local Pg = {}
Pg.__index = Pg

-- Whether name is a PostgreSQL connection URI (libpq's two schemes).
function _M.is_uri(name)
  local lower = name:sub(1, 13):lower()
  return lower:sub(1, 13) == "postgresql://" or lower:sub(1, 11) == "postgres://"
end

-- The URI without its password (in the user part or as a parameter), for
-- messages and the CLI: the password is libpq's alone.
local function redacted(uri)
  local scheme, rest = uri:match("^(%a+://)(.*)$")
  local userinfo, after = rest:match("^([^@/?]*)@(.*)$")
  if userinfo then rest = userinfo:gsub(":.*$", "") .. "@" .. after end
  rest = rest:gsub("([?&][Pp][Aa][Ss][Ss][Ww][Oo][Rr][Dd]=)[^&]*", "%1***")
  return scheme .. rest
end
_M.redacted = redacted

-- The primitives, for a class that builds on them (kfsmtp.store).
_M.methods = Pg

-- new(uri, decode, class) --> store object; decode as in kfsmtp.file.
-- requires_key: kfsmtp.store refuses to write a secret in clear here.
function _M.new(uri, decode, class)
  return setmetatable({ uri = uri, path = redacted(uri), decode = decode, reads = 0, requires_key = true },
    class or Pg)
end

-- Every wait on the database: the calling get/update/test's
-- connect_timeout_ms (kfsmtp.store sets it), else the module default.
local function timeout_ms(self)
  return self.timeout_ms or options.get({}, "connect_timeout_ms")
end

-- The error of a failed database call; the connection it came from is
-- dropped, so the next call connects afresh (recovery needs no restart).
function Pg:db_error(message, kind)
  if self.conn then self.conn:close() self.conn = nil end
  if self.listener then self.listener:close() self.listener = nil end
  if kind == "unreachable" then
    return errors.new("store_unavailable", { stage = "store", path = self.path,
      Message = ("The profile store is unavailable: %s Check that the database is running and reachable; kfsmtp reconnects by itself."):format(
        message) })
  end
  return errors.new("store_io", { stage = "store", path = self.path,
    Message = ("The profile store cannot be used: %s"):format(message) })
end

-- A store error of kfsmtp's own (a bad row), shaped like the file store's.
function Pg:io_error(why)
  return errors.new("store_io", { stage = "store", path = self.path, Message = why })
end

local function connect(self)
  local conn, message, kind = core.pg_connect { uri = self.uri, connect_timeout_ms = timeout_ms(self),
    application_name = "kfsmtp" }
  if not conn then return nil, self:db_error(message, kind) end
  local ok
  ok, message, kind = conn:ensure_table(timeout_ms(self))
  if not ok then
    conn:close()
    return nil, self:db_error(message, kind)
  end
  return conn
end

function Pg:connection()
  if self.conn then return self.conn end
  local conn, err = connect(self)
  if not conn then return nil, err end
  self.conn = conn
  return conn
end

-- Decodes a row's text (false: no row, the empty profile).
local function decoded(self, text)
  return self:decode(text or "")
end

-- Reads the row now and caches it: value | nil, err. Inside with_lock,
-- the row as locked.
function Pg:read()
  if self.locked then return decoded(self, self.locked.text) end
  local conn, err = self:connection()
  if not conn then return nil, err end
  local text, version, kind = conn:load(timeout_ms(self))
  self.reads = self.reads + 1
  if text == nil then return nil, self:db_error(version, kind) end
  local value
  value, err = decoded(self, text)
  if value == nil then return nil, err end
  self.value, self.version = value, version
  return value
end

-- The listening connection, made (LISTEN first) when there is none: conn,
-- fresh (true when just made: the cache cannot be trusted) | nil, err.
local function listening(self)
  if self.listener then return self.listener, false end
  local conn, err = connect(self)
  if not conn then return nil, err end
  local ok, message, kind = conn:listen(timeout_ms(self))
  if not ok then
    conn:close()
    return nil, self:db_error(message, kind)
  end
  self.listener = conn
  return conn, true
end

-- init() --> true | nil, err: connects and creates the table if it is
-- missing (what the first use does anyway), for `kfsmtp store init`.
function Pg:init()
  local conn, err = self:connection()
  if not conn then return nil, err end
  return true
end

-- The cached value while no notification came, else read(): value | nil, err.
function Pg:current()
  local listener, fresh = listening(self)
  if not listener then return nil, fresh end
  if not fresh and self.value then
    local notified, alive = listener:poll()
    if alive and not notified then return self.value end
    if not alive then
      listener:close()
      self.listener = nil
      listener, fresh = listening(self)
      if not listener then return nil, fresh end
    end
  end
  return self:read()
end

-- with_lock(fn, ...) --> fn(...)'s two results, inside one transaction
-- that holds the row's lock; nil, err, "lock" when it cannot begin. A
-- transaction fn did not commit (an error, a refused request) is rolled
-- back, whatever happened.
function Pg:with_lock(fn, ...)
  local conn, err = self:connection()
  if not conn then return nil, err, "lock" end
  local text, version, kind = conn:begin_locked(timeout_ms(self))
  if text == nil then return nil, self:db_error(version, kind), "lock" end
  self.locked = { text = text, version = version }
  local ok, a, b = pcall(fn, ...)
  if self.locked then
    self.locked = nil
    if self.conn then self.conn:rollback() end
  end
  if not ok then error(a, 0) end
  return a, b
end

-- Writes the row and commits (the NOTIFY goes with the commit); only
-- inside with_lock. The node that wrote sees it at once. true | nil, err.
function Pg:write(text, value)
  self.locked = nil
  local version, message, kind = self.conn:commit_write(text, timeout_ms(self))
  if not version then return nil, self:db_error(message, kind) end
  self.value, self.version = value, version
  return true
end

return _M
