-- The profile store: one JSON document holding the profile and its
-- secret, in a file (kfsmtp.file: a change cache, replaced atomically
-- under a lock) or in PostgreSQL (kfsmtp.pgstore: one row, LISTEN/NOTIFY,
-- the row's lock), chosen by the store's name. get, update and test are
-- the same on both; the test itself is kfsmtp.testrun's.
local errors = require "kfsmtp.errors"
local file = require "kfsmtp.file"
local options = require "kfsmtp.options"
local pgstore = require "kfsmtp.pgstore"
local profile = require "kfsmtp.profile"
local sealing = require "kfsmtp.sealing"
local testrun = require "kfsmtp.testrun"

local type, error, setmetatable, pairs = type, error, setmetatable, pairs

local _M = {}

-- The methods both backends share; each class adds its own primitives
-- (current, read, with_lock, write, io_error).
local Store = {}

local function store_error(path, kind, message)
  return errors.new(kind, { stage = "store", path = path, Message = message })
end

local IO_FIX = {
  read = "%s (%s): check the path and its permissions.",
  lock = "%s (%s.lock): check the folder's permissions.",
  write = "%s (%s): the stored profile was not changed.",
}

function Store:io_error(why, step)
  return store_error(self.path, "store_io", IO_FIX[step or "read"]:format(why, self.path))
end

-- Decodes and checks a stored record. Never repairs: a bad file is the
-- person's to inspect. An empty file (as `touch` makes it, to set owner
-- and mode ahead of time) and a missing one are the empty profile;
-- kfsmtp's own writes never leave either.
local function decode_record(self, content)
  if not content or content == "" then return {} end
  local record, why = profile.from_stored_text(content)
  if not record then
    return nil, store_error(self.path, "store_corrupt", ("The store %s %s: fix or remove it; kfsmtp will not overwrite it."):format(
      self.path, why))
  end
  return record
end

-- The store reader on text alone, for fuzz/fuzz_store.c:
-- record | nil, err; never raises.
function _M.decode(content)
  return decode_record({ path = "(fuzz input)" }, content)
end

-- The stored record (with its secrets: for kfsmtp's own use only).
function Store:load()
  return self:current()
end

function Store:get(opts)
  opts = options.check(opts, "get")
  self.timeout_ms = options.get(opts, "connect_timeout_ms")
  local record, err = self:current()
  if not record then return nil, err end
  return profile.profile_out(record, options.get(opts, "api_version"))
end

-- Under the lock: fills the secrets the request may reuse from the stored
-- record, then writes, a secret entered sealed with key_file (if any).
-- record | nil, err.
local function replace(self, t, key_file)
  local current, err = self:read()
  if not current then return nil, err end
  if t.RelayAuthenticationType == profile.AUTH_OAUTH then
    err = profile.resolve_oauth(t, current)
    if err then return nil, err end
  elseif t.RelayAuthenticationType == profile.AUTH_PASSWORD then
    t.RelayPassword, err = profile.stored_password(t, current)
    if err then return nil, err end
  end
  -- Like the OAuth fields they serve, headers a request leaves out (as
  -- version 1 always does) are kept, but only with the endpoint they were
  -- entered for: they may carry a gateway's key.
  if t.RequestHeaders == nil and t.TokenEndpoint == current.TokenEndpoint then
    t.RequestHeaders = current.RequestHeaders
  end
  local record = profile.record(t)
  record, err = sealing.seal_record(record, key_file)
  if not record then return nil, err end
  -- A database logs statements with their parameters (log_statement =
  -- all), keeps them in its WAL, dumps and replicas: no secret goes there
  -- in clear.
  local plain = self.requires_key and sealing.plain_secret(record)
  if plain then
    return nil, errors.new("key_required", { stage = "store", field = plain,
      Message = ("The PostgreSQL store keeps no secret unencrypted, and no key file is configured to seal %s: create one with `kfsmtp keygen FILE` and set KFSMTP_KEY_FILE (or key_file) to it, then save again."):format(plain) })
  end
  local ok
  ok, err = self:write(profile.stored_text(record), record)
  if not ok then return nil, err end
  return record
end

-- A request that is not a table is the programmer's error (level 3: the
-- caller of the method).
local function check_request(req, fname)
  if type(req) ~= "table" then
    error(("kfsmtp %s: req must be a table, not a %s"):format(fname, type(req)), 3)
  end
end

function Store:update(req, opts)
  check_request(req, "update")
  opts = options.check(opts, "update")
  self.timeout_ms = options.get(opts, "connect_timeout_ms")
  local t, err = profile.read(req, false, options.get(opts, "api_version"), options.get(opts, "secret_providers"))
  if not t then return nil, err end
  local record
  record, err = self:with_lock(replace, self, t, options.key_file(opts))
  if not record then return nil, err end
  return profile.profile_out(record, options.get(opts, "api_version"))
end

function Store:test(req, opts)
  check_request(req, "test")
  opts = options.check(opts, "test")
  self.timeout_ms = options.get(opts, "connect_timeout_ms")
  return testrun.run(self, req, opts)
end

-- A backend's primitives with Store's methods copied in, but those the
-- backend keeps as its own (not inherited: a method call on the get() hot
-- path is one lookup).
local function class_of(primitives, own)
  local class = {}
  for k, v in pairs(primitives) do class[k] = v end
  for name, method in pairs(Store) do
    if name ~= own then class[name] = method end
  end
  class.__index = class
  return class
end

-- The database store shapes its own errors (kfsmtp.pgstore).
local FileStore, PgStore = class_of(file.methods), class_of(pgstore.methods, "io_error")

local stores = setmetatable({}, { __mode = "v" })

-- open(name) --> store: a postgresql:// or postgres:// URI, else a file
-- path. One object per name, so the get() cache is shared.
function _M.open(path)
  if type(path) ~= "string" or path == "" then
    error(("kfsmtp.open: path must be a non-empty string, not %s"):format(
      type(path) == "string" and "an empty one" or ("a " .. type(path))), 2)
  end
  local s = stores[path]
  if not s then
    if pgstore.is_uri(path) then
      s = pgstore.new(path, decode_record, PgStore)
    else
      s = file.new(path, decode_record, FileStore)
    end
    stores[path] = s
  end
  return s
end

return _M
