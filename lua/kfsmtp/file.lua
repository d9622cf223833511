-- A file kfsmtp reads on every request and writes rarely (the profile
-- store, the users file of the HTTP API): its change cache and its lock
-- protocol, in one place. kfsmtp.core does the file work (flock on
-- <path>.lock, the atomic replace).
--
-- Change cache: every read compares the file's signature (inode, size,
-- mtime and ctime to the nanosecond: one stat) with the cached one and
-- decodes the file again only when it changed. So the next read after any
-- change, by kfsmtp or by an editor, configuration management or a restore
-- from backup, sees it. A file changed in the last seconds is read again
-- on every call: file times are only as fine as the kernel's clock tick,
-- so two writes of the same size within one tick share a signature.
local core = require "kfsmtp.core"

local pcall, error, tonumber, os_time = pcall, error, tonumber, os.time

local _M = {}

local File = {}
File.__index = File

-- The primitives, for a class that builds on them (kfsmtp.store).
_M.methods = File

-- new(path, decode [, class]) --> file object of class (default File).
-- decode(self, content) --> value | nil, err is given the file's text, or
-- false when there is no file.
function _M.new(path, decode, class)
  return setmetatable({ path = path, decode = decode, reads = 0 }, class or File)
end

-- io_error(why) --> what read, current and write return for a failed
-- system call; a class may shape it (the store makes an error object).
function File.io_error(_, why)
  return why
end

-- Seconds a change must be old before its signature alone can vouch for
-- the file (a tick is a few milliseconds; whole seconds are what os.time
-- gives, so a file is trusted between one and two seconds after a change).
local SETTLE_S = 1

-- When a cached read of the file with this signature can be trusted: its
-- ctime (the signature's last field) plus SETTLE_S.
local function settled_at(sig)
  local ctime = tonumber(sig:match(":(%d+)%.%d+$") or "")
  return ctime and ctime + SETTLE_S or math.huge
end

-- Reads and decodes the file now, and caches it: value | nil, err.
function File:read()
  local content, sig = core.store_read(self.path)
  self.reads = self.reads + 1
  if content == nil then return nil, self:io_error(sig) end
  local value, err = self:decode(content)
  if value == nil then return nil, err end
  self.sig, self.value, self.settled_at = sig, value, settled_at(sig)
  return value
end

-- The cached value while the file is unchanged, else read(): value | nil, err.
function File:current()
  local sig, why = core.store_stat(self.path)
  if not sig then return nil, self:io_error(why) end
  if sig == self.sig and os_time() > self.settled_at then return self.value end
  return self:read()
end

-- with_lock(fn, ...) --> fn(...)'s two results, under the exclusive lock;
-- nil, err, "lock" when the lock cannot be taken. The lock is released
-- however fn ends, even by an error, which is then raised again.
function File:with_lock(fn, ...)
  local lock, why = core.store_lock(self.path)
  if not lock then return nil, self:io_error(why, "lock"), "lock" end
  local ok, a, b = pcall(fn, ...)
  lock:release()
  if not ok then error(a, 0) end
  return a, b
end

-- init() --> true: a file store is made by its first update.
function File.init()
  return true
end

-- Replaces the file with text, value being what it decodes to; only
-- inside with_lock. true | nil, err.
function File:write(text, value)
  -- Under the lock no live writer owns a temporary file: any left is a
  -- killed writer's.
  core.store_sweep(self.path)
  local ok, sig = core.store_write(self.path, text)
  if not ok then return nil, self:io_error(sig, "write") end
  -- The signature of the file written, not of whatever is at the path now.
  self.sig, self.value, self.settled_at = sig, value, settled_at(sig)
  return true
end

return _M
