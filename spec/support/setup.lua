-- Loaded by busted before any spec: the module under test comes from this
-- checkout, built for the interpreter that runs the specs.
local build = (type(jit) == "table") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.path = "lua/?.lua;spec/support/?.lua;" .. package.path
-- KFSMTP_BUILD names another build of the module (make check-asan).
package.cpath = (os.getenv("KFSMTP_BUILD") or ("build/" .. build)) .. "/?.so;" .. package.cpath
