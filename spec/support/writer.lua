-- A separate process that updates the store COUNT times, each time with a
-- profile whose fields all carry its number, so a torn or mixed write shows.
-- usage: lua writer.lua STORE WRITER_ID COUNT
local build = (type(jit) == "table") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.path = "lua/?.lua;" .. package.path
package.cpath = (os.getenv("KFSMTP_BUILD") or ("build/" .. build)) .. "/?.so;" .. package.cpath
local kfsmtp = require "kfsmtp"
local path, id, count = arg[1], tonumber(arg[2]), tonumber(arg[3])
local store = kfsmtp.open(path)
for n = 1, count do
  local p, err = store:update {
    Host = ("writer%d.example.com"):format(id), Port = 1000 + id,
    SenderAccount = ("w%d@example.com"):format(id), SenderName = ("writer %d #%d"):format(id, n),
    RelayAuthenticationType = 2, RelayUsername = "writer" .. id, RelayPassword = "pw" .. id,
  }
  if not p then io.stderr:write(tostring(err), "\n") os.exit(1) end
end
