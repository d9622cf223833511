-- kfsmtp: the SMTP profile of Keyfactor Command's API (GET /SMTP,
-- PUT /SMTP, POST /SMTP/Test) as a Lua module. This file is the public
-- face; each concern lives in its own module under kfsmtp/ (README "How
-- the code is laid out"), over the C core kfsmtp.core.
local core = require "kfsmtp.core"
local errors = require "kfsmtp.errors"
local json = require "kfsmtp.json"
local options = require "kfsmtp.options"
local store = require "kfsmtp.store"

local _M = { _VERSION = "kfsmtp " .. core.version }

-- open(path) --> the store at path: store:get, store:update, store:test.
_M.open = store.open

-- configure(opts): module defaults (store, timeouts, TLS options, helo,
-- api_version) for every later call.
function _M.configure(opts)
  return options.configure(opts)
end

-- The store the module functions use: opts.store, configure{store=},
-- KFSMTP_STORE, or ./kfsmtp-store.json, in that order.
local function store_for(opts)
  return store.open(opts and opts.store or options.store_path())
end

function _M.get(opts)
  opts = options.check(opts, "get")
  return store_for(opts):get(opts)
end

function _M.update(req, opts)
  opts = options.check(opts, "update")
  return store_for(opts):update(req, opts)
end

function _M.test(req, opts)
  opts = options.check(opts, "test")
  return store_for(opts):test(req, opts)
end

-- The store reader on text alone, for fuzz/fuzz_store.c.
_M._decode_store = store.decode

_M.errors = errors
_M.json = json

return _M
