#!/usr/bin/lua5.4
-- luasocket_loop: LuaSocket's socket.smtp as a contender in kfsmtp's benchmark.
--
--   lua5.4 bench/luasocket_loop.lua --host H --port P --mode plain --n N
--       [--ca CAFILE] [--user U --password-file F] [--from ADDR] [--to ADDR]
--
-- Plain mode only (socket.smtp has no STARTTLS; --mode starttls exits 2).
-- --ca is accepted and ignored. With --user, socket.smtp authenticates if the
-- server offers AUTH (it prefers LOGIN over PLAIN).
--
-- N sequential deliveries of one small fixed message through socket.smtp.send,
-- each on a new TCP connection with TCP_NODELAY set (through send's `create`).
--
-- stdout: one line per delivery, its latency in integer microseconds.
-- Exit 0 when every delivery succeeded; 1 (message on stderr) otherwise;
-- 2 for usage errors.

local socket = require("socket")
local smtp = require("socket.smtp")
local ltn12 = require("ltn12")

local function die(code, msg)
  io.stderr:write("luasocket_loop: ", msg, "\n")
  os.exit(code)
end

local function usage(msg)
  if msg then io.stderr:write("luasocket_loop: ", msg, "\n") end
  io.stderr:write("usage: luasocket_loop.lua --host H --port P --mode plain --n N [--ca CAFILE]\n",
                  "                          [--user U --password-file F] [--from ADDR] [--to ADDR]\n")
  os.exit(2)
end

local function parse_args(argv)
  local o = { from = "kf@example.com", to = "ops@example.com" }
  local known = {
    ["--host"] = "host", ["--port"] = "port", ["--mode"] = "mode", ["--n"] = "n",
    ["--ca"] = "ca", ["--user"] = "user", ["--password-file"] = "password_file",
    ["--from"] = "from", ["--to"] = "to",
  }
  local i = 1
  while i <= #argv do
    local key = known[argv[i]]
    if not key then usage("unknown option " .. tostring(argv[i])) end
    if argv[i + 1] == nil then usage("missing value for " .. argv[i]) end
    o[key] = argv[i + 1]
    i = i + 2
  end
  if not (o.host and o.port and o.mode and o.n) then
    usage("--host, --port, --mode and --n are required")
  end
  if o.mode == "starttls" then
    die(2, "--mode starttls is not supported (socket.smtp has no STARTTLS; plain only)")
  elseif o.mode ~= "plain" then
    usage("--mode must be plain")
  end
  o.port = math.tointeger(tonumber(o.port))
  if not o.port or o.port < 1 or o.port > 65535 then usage("bad --port") end
  o.n = math.tointeger(tonumber(o.n))
  if not o.n or o.n < 0 then usage("bad --n") end
  if (o.user == nil) ~= (o.password_file == nil) then
    usage("--user and --password-file go together")
  end
  return o
end

local function read_password(path)
  local f, err = io.open(path, "rb")
  if not f then die(1, err) end
  local line = f:read("l") or ""
  f:close()
  return (line:gsub("\r$", ""))
end

-- The fixed message. socket.smtp's DATA step sends the source and then
-- "\r\n.\r\n" itself, so the source leaves off the last line's CRLF (the
-- server still receives exactly the same bytes as from the other clients).
local function build_message(from, to)
  return table.concat({
    "Date: " .. os.date("!%a, %d %b %Y %H:%M:%S +0000"),
    "From: " .. from,
    "To: " .. to,
    "Subject: kfsmtp benchmark delivery",
    "Message-ID: <bench.0001.kfsmtp@example.com>",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=UTF-8",
    "",
    "This is a fixed benchmark message sent by kfsmtp's bench clients.",
    "Every delivery uses a fresh connection and, where asked, a full TLS handshake.",
    "Nothing in it needs to be read by anyone; it only has to arrive intact.",
  }, "\r\n")
end

-- LuaSocket 3.x's socket.tcp() creates its descriptor lazily (at connect), so
-- an option set before connect would fail. Pick the address family once and
-- use tcp4/tcp6, which create the socket at once, so TCP_NODELAY is in place
-- before connect.
local function make_create(host)
  local addrs, err = socket.dns.getaddrinfo(host)
  if not addrs or not addrs[1] then die(1, host .. ": " .. tostring(err)) end
  local family = addrs[1].family == "inet6" and socket.tcp6 or socket.tcp4
  return function()
    local c, e = family()
    if not c then return nil, e end
    local ok, oe = c:setoption("tcp-nodelay", true)
    if not ok then
      c:close()
      return nil, "tcp-nodelay: " .. tostring(oe)
    end
    return c
  end
end

local function main()
  local o = parse_args(arg)
  local password = o.password_file and read_password(o.password_file) or nil
  local message = build_message(o.from, o.to)
  local create = make_create(o.host)
  local from, rcpt = "<" .. o.from .. ">", "<" .. o.to .. ">"
  smtp.TIMEOUT = 30

  local out = {}
  for i = 1, o.n do
    local t0 = socket.gettime()
    local ok, err = smtp.send({
      server = o.host,
      port = o.port,
      domain = "localhost",
      from = from,
      rcpt = rcpt,
      user = o.user,
      password = password,
      source = ltn12.source.string(message),
      create = create,
    })
    local t1 = socket.gettime()
    if not ok then
      io.stdout:write(table.concat(out))
      io.stdout:flush()
      die(1, string.format("delivery %d failed: %s", i, tostring(err)))
    end
    out[#out + 1] = string.format("%d\n", math.floor((t1 - t0) * 1e6 + 0.5))
  end
  io.stdout:write(table.concat(out))
  io.stdout:flush()
end

main()
