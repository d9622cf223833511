-- A file kfsmtp reads on every request and writes rarely (the profile
-- store, the users file of the HTTP API): its change cache and its lock
-- protocol, in one place. kfsmtp.core does the file work (flock on
-- <path>.lock, atomic replace, the shared generation counter).
--
-- Change cache: every kfsmtp writer, in any process, bumps a counter kept
-- in the lock file, which readers map shared; while it is unchanged a read
-- costs no system call. About once a second the file's signature (inode,
-- size, times) is compared as well, for edits made without kfsmtp. Where
-- the counter cannot be mapped (a folder this process may not write), every
-- read compares the signature.
local core = require "kfsmtp.core"

local os_time, pcall, error, pairs = os.time, pcall, error, pairs

local _M = {}

local File = {}
File.__index = File
_M.File = File

-- How often a reader re-checks the file itself: at most about this many
-- seconds late for an edit made without kfsmtp.
local FOREIGN_EDIT_CHECK_S = 1
-- Reading the clock costs more than the rest of a cached read: look at it
-- on every 16th call only.
local CLOCK_EVERY = 16

-- class() --> a new class of file objects with File's methods copied in
-- (not inherited: a method call on the get() hot path is one lookup).
function _M.class()
  local class = {}
  for k, v in pairs(File) do class[k] = v end
  class.__index = class
  return class
end

-- new(path, decode [, class]) --> file object of class (default File). decode(self, content) --> value | nil, err is
-- given the file's text, or false when there is no file.
function _M.new(path, decode, class)
  return setmetatable({ path = path, decode = decode, reads = 0 }, class or File)
end

-- io_error(why) --> what read, current and write return for a failed
-- system call; a class may shape it (the store makes an error object).
function File.io_error(_, why)
  return why
end

-- Reads and decodes the file now, and caches it: value | nil, err.
function File:read()
  local content, sig = core.store_read(self.path)
  self.reads = self.reads + 1
  if content == nil then return nil, self:io_error(sig) end
  local value, err = self:decode(content)
  if value == nil then return nil, err end
  self.sig, self.value = sig, value
  return value
end

local function open_generation(self)
  local gen, read = core.store_generation(self.path)
  self.gen, self.read_generation = gen or false, gen and read or false
end

-- The cached value while the file is unchanged, else read(): value | nil, err.
function File:current()
  if self.gen == nil then open_generation(self) end
  local read_generation = self.read_generation
  local generation = read_generation and read_generation()
  if self.sig and read_generation and generation == self.generation then
    local countdown = self.countdown - 1
    if countdown > 0 then
      self.countdown = countdown
      return self.value
    end
    self.countdown = CLOCK_EVERY
    if os_time() < self.next_stat then return self.value end
  end
  local sig, why = core.store_stat(self.path)
  if not sig then return nil, self:io_error(why) end
  -- The counter was read before the file: a write racing this call bumps
  -- it again, and the next call looks.
  self.generation, self.next_stat, self.countdown = generation, os_time() + FOREIGN_EDIT_CHECK_S, CLOCK_EVERY
  if sig == self.sig then return self.value end
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

-- Replaces the file with text, value being what it decodes to; only
-- inside with_lock. true | nil, err.
function File:write(text, value)
  -- Under the lock no live writer owns a temporary file: any left is a
  -- killed writer's.
  core.store_sweep(self.path)
  local ok, why = core.store_write(self.path, text)
  if not ok then return nil, self:io_error(why, "write") end
  self.sig, self.value = core.store_stat(self.path), value
  if self.gen == nil then open_generation(self) end
  if self.gen then self.gen:bump() end
  return true
end

return _M
