-- Debian's Postfix (with Dovecot SASL) and Exim for bench/latency.py, as
-- the realmail specs run them (spec/support/realmail.lua), driven over
-- stdin. Run from the repository root:
--   lua5.4 bench/mail_servers.lua [TOKEN_FILE ...]
-- Exim's oauth port takes as a bearer token what any TOKEN_FILE holds
-- (the token an endpoint issued last). Once both listen it prints one JSON
-- line: {"postfix": {ports}, "exim": {ports}, "ca": ..., "cert": ...,
-- "key": ... (the test CA and a server certificate signed by it, for the
-- other servers of the run), "user": ..., "password_file": ...,
-- "sender": ..., "postfix_rcpt": ..., "exim_rcpt": ...}; the password is in
-- a file of its own, never on a line. On "quit" (or the end of input)
-- every server is stopped.
package.path = "lua/?.lua;spec/support/?.lua;" .. package.path
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local cjson = require "cjson"
local H = require "helpers"
local R = require "realmail"

local token_files = { ... }
local servers = {}
local ok, err = pcall(function()
  servers.postfix = R.start_postfix()
  servers.exim = R.start_exim { oauth_token_files = #token_files > 0 and token_files or nil }
  local password_file = servers.postfix.dir .. "/bench-password"
  H.write(password_file, R.USERS.alice .. "\n")
  local certs = H.certs()
  io.write(cjson.encode { postfix = servers.postfix.ports, exim = servers.exim.ports, ca = certs.ca,
    cert = certs.cert, key = certs.key, user = "alice", password_file = password_file,
    sender = "alice@" .. R.DOMAIN, postfix_rcpt = "postmaster@" .. R.POSTFIX_DOMAIN,
    exim_rcpt = "postmaster@" .. R.EXIM_DOMAIN }, "\n")
  io.flush()
  for line in io.lines() do
    if line == "quit" then break end
  end
end)
for _, s in pairs(servers) do s:stop() end
if not ok then
  io.stderr:write("mail_servers.lua: ", tostring(err), "\n")
  os.exit(1)
end
