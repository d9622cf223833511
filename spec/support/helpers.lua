-- Shared by the specs: real servers started on loopback, real files.
local cjson = require "cjson"
local socket = require "socket"

local H = {}

H.lua = (type(jit) == "table") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
H.python = "/usr/bin/python3" -- Debian's, which has aiosmtpd
H.build = os.getenv("KFSMTP_BUILD") or ("build/" .. H.lua)
-- make check-asan preloads the sanitizer runtime into busted. Programs that
-- do not load our module must run without it (nginx and ps hang under it),
-- so every command drops it, and Lua processes that load the module get it
-- back through H.lua_run.
local preload = os.getenv("LD_PRELOAD")
H.plain = "env -u LD_PRELOAD "
H.lua_run = preload and ("env LD_PRELOAD=" .. preload .. " " .. H.lua) or H.lua

local function unpreloaded(cmd)
  if not preload then return cmd end
  return "env -u LD_PRELOAD sh -c '" .. cmd:gsub("'", "'\\''") .. "'"
end

function H.exec(cmd)
  return os.execute(unpreloaded(cmd))
end

function H.now_ms() return socket.gettime() * 1000 end

function H.sh(cmd)
  local p = assert(io.popen(unpreloaded(cmd .. " 2>&1")))
  local out = p:read("*a")
  local ok, _, code = p:close()
  if type(ok) == "number" then code = ok; ok = code == 0 end -- LuaJIT
  return out, ok, code
end

-- A value that stands for "leave this field out" in H.with's over.
H.NONE = setmetatable({}, { __name = "NONE" })

-- with(base, over) --> a copy of base with over's fields laid on it.
function H.with(base, over)
  local t = {}
  for k, v in pairs(base) do t[k] = v end
  for k, v in pairs(over or {}) do
    if v == H.NONE then t[k] = nil else t[k] = v end
  end
  return t
end

function H.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function H.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function H.write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

function H.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

function H.tmpdir()
  local out = H.sh("mktemp -d /tmp/kfsmtp-spec.XXXXXX")
  return (out:gsub("%s+$", ""))
end

function H.sleep(seconds)
  socket.sleep(seconds)
end

local cert_dir
-- The suite's throwaway CA and certificates (spec/support/certs.sh).
function H.certs()
  if not cert_dir then
    cert_dir = H.tmpdir()
    local out, ok = H.sh(H.plain .. "sh spec/support/certs.sh " .. H.q(cert_dir))
    assert(ok, "certs.sh failed: " .. out)
  end
  return {
    dir = cert_dir,
    ca = cert_dir .. "/ca.crt",
    other_ca = cert_dir .. "/other-ca.crt",
    cert = cert_dir .. "/server.crt", key = cert_dir .. "/server.key",
    wronghost_cert = cert_dir .. "/wronghost.crt", wronghost_key = cert_dir .. "/wronghost.key",
  }
end

local Server = {}
Server.__index = Server

-- A server script started in the background writes dir/port once it
-- listens (and dir/pid): wait for it --> Server.
local function started(dir, what, wait_ms)
  local deadline = H.now_ms() + wait_ms
  while not H.exists(dir .. "/port") do
    assert(H.now_ms() < deadline, what .. " did not start: " .. (H.read(dir .. "/log") or ""))
    H.sleep(0.02)
  end
  local s = setmetatable({ dir = dir }, Server)
  s.port = tonumber(H.read(dir .. "/port"))
  s.pid = tonumber(H.read(dir .. "/pid"))
  return s
end

-- start_smtp{ mode = "plain"|"starttls"|"implicit", auth = "user:pass",
--   auth_required, auth_plaintext, require_tls, behaviour, cert, key }
function H.start_smtp(opts)
  opts = opts or {}
  local dir = H.tmpdir()
  local args = { H.plain .. H.python, "spec/support/smtpd.py", "--dir", H.q(dir),
    "--mode", opts.mode or "plain", "--behaviour", opts.behaviour or "normal" }
  if (opts.mode or "plain") ~= "plain" or opts.cert then
    local c = H.certs()
    args[#args + 1] = "--cert " .. H.q(opts.cert or c.cert)
    args[#args + 1] = "--key " .. H.q(opts.key or c.key)
  end
  if opts.auth then
    -- From a file, so the credentials never appear in a process's argv.
    H.write(dir .. "/auth", opts.auth)
    args[#args + 1] = "--auth-file " .. H.q(dir .. "/auth")
  end
  if opts.host then args[#args + 1] = "--host " .. H.q(opts.host) end
  if opts.oauth_token_file then args[#args + 1] = "--oauth-token-file " .. H.q(opts.oauth_token_file) end
  if opts.oauth_only then args[#args + 1] = "--oauth-only" end
  if opts.oauth_mechs then args[#args + 1] = "--oauth-mechs " .. opts.oauth_mechs end
  if opts.auth_required then args[#args + 1] = "--auth-required" end
  if opts.auth_plaintext then args[#args + 1] = "--auth-plaintext" end
  if opts.require_tls then args[#args + 1] = "--require-tls" end
  H.exec(table.concat(args, " ") .. " > " .. H.q(dir .. "/log") .. " 2>&1 &")
  return started(dir, "smtpd.py", 15000)
end

-- spec/support/hostile.py: a session normal up to the fault its
-- behaviour names (QUIT never answered, a dripped or endless final reply,
-- every AUTH refused or echoed).
-- start_hostile{ behaviour, greeting_delay_ms, oauth, mechs = "PLAIN LOGIN",
--   starttls = true (with the suite's certificate) }
function H.start_hostile(opts)
  local dir = H.tmpdir()
  local tls = opts.starttls and ("--cert %s --key %s"):format(H.q(H.certs().cert), H.q(H.certs().key)) or ""
  H.exec(("%s%s spec/support/hostile.py --dir %s --behaviour %s --greeting-delay-ms %d %s --mechs %s %s > %s 2>&1 &"):format(
    H.plain, H.python, H.q(dir), opts.behaviour, opts.greeting_delay_ms or 0, opts.oauth and "--oauth" or "",
    H.q(opts.mechs or ""), tls, H.q(dir .. "/log")))
  return started(dir, "hostile.py", 10000)
end

-- The suite's OAuth token endpoint (spec/support/token_server.py) over
-- HTTPS with the throwaway CA: it issues a new token per request and
-- writes the current one to dir/token, which start_smtp's
-- oauth_token_file reads. The client secret travels in a file.
local TokenServer = {}
TokenServer.__index = TokenServer

function H.start_token_server(client_id, client_secret, extra)
  local dir, certs = H.tmpdir(), H.certs()
  H.write(dir .. "/secret", client_secret .. "\n")
  H.exec(("%s%s spec/support/token_server.py --dir %s --cert %s --key %s --client-id %s --client-secret-file %s %s > %s/log 2>&1 &"):format(
    H.plain, H.python, H.q(dir), H.q(certs.cert), H.q(certs.key), H.q(client_id), H.q(dir .. "/secret"), extra or "", H.q(dir)))
  local deadline = H.now_ms() + 10000
  while not H.exists(dir .. "/port") do
    assert(H.now_ms() < deadline, "token server did not start: " .. (H.read(dir .. "/log") or ""))
    H.sleep(0.02)
  end
  H.write(dir .. "/token", "none-issued-yet")
  return setmetatable({ dir = dir, port = tonumber(H.read(dir .. "/port")), pid = tonumber(H.read(dir .. "/pid")),
    token_file = dir .. "/token", url = ("https://localhost:%d/token"):format(tonumber(H.read(dir .. "/port"))) }, TokenServer)
end

function TokenServer:requests() return tonumber(H.read(self.dir .. "/requests") or "0") or 0 end
function TokenServer:token() return (H.read(self.token_file) or ""):gsub("%s+$", "") end
function TokenServer:stop() H.exec("kill " .. self.pid .. " 2>/dev/null") end

-- Messages received so far: { meta = {...}, raw = "..." } in order.
function Server:messages()
  local list, n = {}, 1
  while H.exists(("%s/msg-%d.json"):format(self.dir, n)) do
    local meta = cjson.decode(H.read(("%s/msg-%d.json"):format(self.dir, n)))
    list[n] = { meta = meta, raw = H.read(("%s/msg-%d.eml"):format(self.dir, n)) }
    n = n + 1
  end
  return list
end

function Server:commands()
  return H.read(self.dir .. "/commands.log") or ""
end

function Server:stop()
  if self.pid then
    H.exec("kill " .. self.pid .. " 2>/dev/null")
    self.pid = nil
  end
end

-- A loopback port with nothing listening on it.
function H.closed_port()
  local out = H.sh(H.plain .. H.python .. [[ -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1]); s.close()"]])
  return tonumber(out:match("%d+"))
end

-- Parses a raw message into headers (name lowercased --> value, folded
-- lines joined) and body.
function H.parse_message(raw)
  local head, body = raw:match("^(.-)\r\n\r\n(.*)$")
  local headers = {}
  local unfolded = head:gsub("\r\n([ \t])", "%1")
  for line in (unfolded .. "\r\n"):gmatch("(.-)\r\n") do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then headers[name:lower()] = value end
  end
  return headers, body
end

function H.decode_json(s) return cjson.decode(s) end

-- The sorted keys of a table, to compare shapes.
function H.keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = k end
  table.sort(list)
  return list
end

-- Does needle appear in any string reachable from v (keys, values, the
-- tostring of tables with __tostring)?
function H.mentions(v, needle, seen)
  seen = seen or {}
  if type(v) == "string" then return v:find(needle, 1, true) ~= nil end
  if type(v) ~= "table" or seen[v] then return false end
  seen[v] = true
  local mt = getmetatable(v)
  if mt and mt.__tostring and tostring(v):find(needle, 1, true) then return true end
  for k, x in pairs(v) do
    if H.mentions(k, needle, seen) or H.mentions(x, needle, seen) then return true end
  end
  return false
end

local Nginx = {}
Nginx.__index = Nginx

-- start_nginx{ workers = 1, users = { {name, password, perms}... },
--   store = a store path or postgresql:// URI (default: store.json in the
--   server's folder), users_file = a users file (default: users.json there),
--   extra = 'lua table fields pasted into serve{}',
--   env = { NAME = "value" } (in nginx's environment, and kept for its
--   workers by an env directive) } --> server
-- Debian's nginx with lua-nginx-module, serving this checkout's LuaJIT build.
-- The store goes into a Lua string in nginx.conf: no quote or backslash.
function H.start_nginx(opts)
  opts = opts or {}
  local users = require "kfsmtp.users"
  local dir = H.tmpdir()
  local n = setmetatable({ dir = dir, store = opts.store or (dir .. "/store.json"),
    users_file = opts.users_file or (dir .. "/users.json") }, Nginx)
  assert(not n.store:find('["\\\n]'), "start_nginx: the store may not hold a quote, backslash or line break")
  for _, u in ipairs(opts.users or {}) do
    assert(users.add(n.users_file, u[1], u[2], u[3]))
  end
  n.port = H.closed_port()
  -- The values travel in a file the shell reads, so that no process's
  -- argv shows them (they may be secrets).
  local names, exports = {}, {}
  for name, value in pairs(opts.env or {}) do
    names[#names + 1] = name
    exports[#exports + 1] = ("export %s=%s\n"):format(name, H.q(value))
  end
  local env_file = dir .. "/env"
  H.write(env_file, table.concat(exports))
  local out, ok = H.sh(("KFSMTP_NGINX_ENV=%s sh scripts/nginx-conf.sh %s %d %s %s %d %s"):format(H.q(table.concat(names, " ")),
    H.q(dir), n.port, H.q(n.store), H.q(n.users_file), opts.workers or 1, H.q(opts.extra or "")))
  assert(ok, out)
  out, ok = H.sh(H.plain .. "sh -c " .. H.q((". %s && exec nginx -p %s -c %s/nginx.conf"):format(H.q(env_file), H.q(dir), H.q(dir))))
  assert(ok, out .. (H.read(dir .. "/logs/error.log") or ""))
  local deadline = H.now_ms() + 10000
  while true do
    local c = socket.tcp()
    c:settimeout(0.2)
    local connected = c:connect("127.0.0.1", n.port)
    c:close()
    if connected then break end
    assert(H.now_ms() < deadline, "nginx did not start: " .. (H.read(dir .. "/logs/error.log") or ""))
    H.sleep(0.02)
  end
  return n
end

-- Whether a process runs: a zombie does not (whoever reaps a daemon, the
-- machine's init, may take its time).
function H.running(pid)
  local stat = H.read(("/proc/%d/stat"):format(pid))
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- The master's pid while it runs, else nil.
function Nginx:pid()
  local pid = tonumber((H.read(self.dir .. "/logs/nginx.pid") or ""):match("%d+"))
  if pid and H.running(pid) then return pid end
  return nil
end

-- stop([wait]): with wait, returns once the master (and so its workers)
-- has gone, at most 10 s (true when it has).
function Nginx:stop(wait)
  local pid = wait and self:pid()
  H.sh((H.plain .. "nginx -p %s -c %s/nginx.conf -s stop"):format(H.q(self.dir), H.q(self.dir)))
  if not pid then return true end
  local deadline = H.now_ms() + 10000
  while H.running(pid) do
    if H.now_ms() > deadline then return false end
    H.sleep(0.02)
  end
  return true
end

function Nginx:logs()
  return (H.read(self.dir .. "/logs/error.log") or "") .. (H.read(self.dir .. "/logs/access.log") or "")
end

-- request{ method, path, user = "name:password", headers = {}, body,
--   content_type, requested_with = true } --> status, body, headers
function Nginx:request(r)
  local dir = H.tmpdir()
  local args = { H.plain .. "curl -s -g -o", H.q(dir .. "/body"), "-D", H.q(dir .. "/headers"),
    "-w '%{http_code}'", "-X", r.method or "GET" }
  if r.user then args[#args + 1] = "-u " .. H.q(r.user) end
  if r.requested_with ~= false then args[#args + 1] = "-H 'X-Keyfactor-Requested-With: APIClient'" end
  for k, v in pairs(r.headers or {}) do args[#args + 1] = "-H " .. H.q(k .. ": " .. v) end
  if r.body then
    H.write(dir .. "/request", r.body)
    args[#args + 1] = "--data-binary @" .. H.q(dir .. "/request")
    args[#args + 1] = "-H " .. H.q("Content-Type: " .. (r.content_type or "application/json"))
  end
  args[#args + 1] = H.q(("http://127.0.0.1:%d%s"):format(self.port, r.path or "/KeyfactorAPI/SMTP"))
  local out = H.sh(table.concat(args, " "))
  local headers = {}
  for line in (H.read(dir .. "/headers") or ""):gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  return tonumber(out:match("(%d%d%d)$")), H.read(dir .. "/body") or "", headers
end

-- Runs `lua5.4 ARGS` under valgrind memcheck --> its output, and nil when
-- the report shows no error and nothing definitely lost, else the report.
function H.memcheck(args)
  local log = H.tmpdir() .. "/valgrind.log"
  local out, ok = H.sh(("valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=99 --log-file=%s lua5.4 %s"):format(
    H.q(log), args))
  local report = H.read(log) or ""
  local lost = report:match("definitely lost: ([%d,]+) bytes")
  if ok and report:find("ERROR SUMMARY: 0 errors", 1, true) and (lost == nil or lost == "0") then
    return out, nil
  end
  return out, report ~= "" and report or "valgrind wrote no report"
end

-- A fresh store path in a fresh folder.
function H.store_path()
  return H.tmpdir() .. "/store.json"
end

return H
