-- A throwaway PostgreSQL for the specs of the PostgreSQL store.
--
-- start([opts]) --> server: initdb into a fresh folder under /tmp, then pg_ctl
-- start, on a free loopback port with its unix socket in that folder. The
-- server refuses to run as root, so as root both run as the postgres user
-- (runuser), which owns the folder. Nothing of a system cluster is read,
-- written or started: the binaries come from /usr/lib/postgresql/N/bin
-- (the newest N; KFSMTP_PG_BIN names another folder) and every setting
-- from the folder's own postgresql.conf. fsync is off: the data is thrown
-- away. Every statement is logged (log_statement = all), with the
-- session's application_name in each line, so a spec can count what one
-- connection sent. opts.conf = { name = value, ... } adds settings after
-- those (a later line wins), e.g. { max_connections = 200, fsync = "on" }
-- for the benchmark's nodes and durable commits.
--
-- The suite connects as user kfsmtp to database kfsmtp over TCP, where
-- pg_hba.conf asks for a scram-sha-256 password. The password lives only
-- in a passfile (mode 0600) the helper writes, which server.uri names in
-- its passfile parameter: libpq reads it exactly as it reads PGPASSFILE,
-- which a running Lua cannot set for itself. server.env is PGPASSFILE=...
-- for child processes that use server.plain_uri. server.password is there
-- so that specs can check no message ever holds it. The unix socket takes
-- anyone (trust): the helper's own psql uses it as postgres.
--
-- server:stop() (fast shutdown), server:restart(), server:stall() (SIGSTOP
-- to the postmaster and every backend), server:resume(), server:kill9(),
-- server:log(), server:statements([application_name]),
-- server:psql(sql [, db [, secret]]) --> output, server:destroy() (stop and remove the
-- folder: call it from busted's teardown). A watchdog started with the
-- server stops it and removes the folder if the process that started it
-- dies without calling destroy().
local H = require "helpers"

local M = {}

local Server = {}
Server.__index = Server

local function bindir()
  local env = os.getenv("KFSMTP_PG_BIN")
  if env and env ~= "" then return env end
  local out = H.sh("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1")
  local dir = out:match("^(%S+)")
  assert(dir, "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
  return dir
end

local function is_root()
  return (H.sh("id -u")):match("^0%s") ~= nil
end

-- A random hex string, for the folder's password (and the demo's).
local function random_hex(bytes)
  local f = assert(io.open("/dev/urandom", "rb"))
  local raw = f:read(bytes)
  f:close()
  return (raw:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
M.random_hex = random_hex

-- The shell command that runs cmd as the server's user, from its folder
-- (postgres may not be allowed into the current folder).
function Server:as_pg(cmd)
  local prefix = self.root and "runuser -u postgres -- " or ""
  return ("cd %s && %s%s"):format(H.q(self.dir), prefix, cmd)
end

function Server:run(cmd)
  local out, ok = H.sh(self:as_pg(cmd))
  return out, ok
end

function Server:pg_ctl(args)
  return self:run(("%s/pg_ctl -D %s %s"):format(self.bin, H.q(self.data), args))
end

-- Whether a process runs: a zombie does not (whoever reaps the killed
-- postmaster, the machine's init, may take its time).
local function running(pid)
  local stat = H.read(("/proc/%d/stat"):format(pid))
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- The postmaster's pid while its pid file names a live one, else nil.
function Server:postmaster()
  local text = H.read(self.data .. "/postmaster.pid")
  local pid = text and tonumber(text:match("^(%d+)"))
  if pid and running(pid) then return pid end
  return nil
end

-- The postmaster and its children (the backends and helpers).
function Server:pids()
  local pm = self:postmaster()
  if not pm then return {} end
  local list = { pm }
  for pid in (H.sh("ps -o pid= --ppid " .. pm)):gmatch("%d+") do list[#list + 1] = tonumber(pid) end
  return list
end

local function signal(sig, pids)
  if #pids > 0 then H.sh(("kill -%s %s 2>/dev/null"):format(sig, table.concat(pids, " "))) end
end

-- SIGSTOP: the postmaster first, so that it forks nothing new meanwhile.
-- Connections are still accepted by the kernel (the listen backlog), and
-- a statement is taken into the socket, but nothing is answered.
function Server:stall()
  local pids = self:pids()
  assert(#pids > 0, "stall: the server is not running")
  for _, pid in ipairs(pids) do signal("STOP", { pid }) end
  self.stalled = true
end

function Server:resume()
  signal("CONT", self:pids())
  self.stalled = false
end

-- As a crash would leave it: the lock files stay, naming a dead process
-- (the next postmaster checks that it is dead). A zombie is not dead to
-- that check, so while one is left its lock files go, and the shared
-- memory segment the pid file names with them.
function Server:kill9()
  local pids = self:pids()
  signal("KILL", pids)
  local deadline = H.now_ms() + 10000
  for _, pid in ipairs(pids) do
    while running(pid) and H.now_ms() < deadline do H.sleep(0.01) end
  end
  if pids[1] and H.exists(("/proc/%d"):format(pids[1])) then
    local lines = {}
    for line in ((H.read(self.data .. "/postmaster.pid") or "") .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
    local shmid = (lines[7] or ""):match("^%s*%d+%s+(%d+)")
    if shmid then H.sh("ipcrm -m " .. shmid) end
    os.remove(self.data .. "/postmaster.pid")
    os.remove(("%s/.s.PGSQL.%d.lock"):format(self.dir, self.port))
  end
end

-- Fast shutdown: the backends are told to end and their clients see the
-- connection close.
function Server:stop()
  if not self:postmaster() then return end
  self:resume()
  local out, ok = self:pg_ctl("-m fast -w -t 20 stop")
  if not ok then
    self:kill9()
    assert(not self:postmaster(), "pg_ctl stop failed: " .. out)
  end
end

function Server:restart()
  if self:postmaster() then self:stop() end
  local out, ok = self:pg_ctl(("-l %s -w -t 30 start"):format(H.q(self.dir .. "/log")))
  assert(ok, "pg_ctl start failed: " .. out .. (self:log() or ""))
end

function Server:destroy()
  if self.watchdog then H.sh("kill " .. self.watchdog .. " 2>/dev/null") end
  self.watchdog = nil
  if self:postmaster() then
    self:resume()
    local _, ok = self:pg_ctl("-m immediate -w -t 10 stop")
    if not ok then self:kill9() end
  end
  if self.dir:match("^/tmp/kfsmtp%-pg%.") then H.sh("rm -rf " .. H.q(self.dir)) end
end

function Server:log()
  return H.read(self.dir .. "/log") or ""
end

-- The statements the server logged (log_statement = all: "statement: "
-- for the simple protocol, "execute <unnamed>: " for parameters), all of
-- them or those of sessions with this application_name.
function Server:statements(app)
  local n = 0
  for line in self:log():gmatch("[^\n]+") do
    if (line:find("LOG:  statement: ", 1, true) or line:find("LOG:  execute ", 1, true))
        and (not app or line:find("] " .. app .. " ", 1, true)) then
      n = n + 1
    end
  end
  return n
end

-- psql as the superuser over the unix socket, in database kfsmtp:
-- unaligned, tuples only. Its statements are logged like any others;
-- with secret = true they are not (for a role's password).
function Server:psql(sql, db, secret)
  local out, ok = self:run(("env PGOPTIONS=%s %s/psql -X -A -t -q -v ON_ERROR_STOP=1 -h %s -p %d -U postgres -d %s -c %s"):format(
    secret and "'-c log_statement=none -c log_min_duration_statement=-1'" or "''", self.bin, H.q(self.dir), self.port, db or "kfsmtp", H.q(sql)))
  assert(ok, "psql failed: " .. out)
  return (out:gsub("%s+$", ""))
end

local CONF = [[
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
max_connections = 40
shared_buffers = '16MB'
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
log_destination = 'stderr'
log_statement = 'all'
log_min_duration_statement = 0
log_line_prefix = '%%m [%%p] %%a %%u@%%d: '
lc_messages = 'C'
password_encryption = 'scram-sha-256'
]]

-- The trust of the unix socket is for the helper's own psql; TCP, the
-- suite's way in, asks for the password.
local HBA = [[
local all all trust
host all all 127.0.0.1/32 scram-sha-256
host all all ::1/128 scram-sha-256
]]

function M.start(opts)
  opts = opts or {}
  local t0 = H.now_ms()
  local s = setmetatable({ bin = bindir(), root = is_root() }, Server)
  s.dir = (H.sh("mktemp -d /tmp/kfsmtp-pg.XXXXXX")):gsub("%s+$", "")
  s.data = s.dir .. "/data"
  s.socket_dir = s.dir
  if s.root then H.sh("chown postgres: " .. H.q(s.dir)) end
  H.sh("chmod 0700 " .. H.q(s.dir))
  s.port = H.closed_port()
  local out, ok = s:run(("%s/initdb -D %s -U postgres -A trust -E UTF8 --locale=C -N"):format(s.bin, H.q(s.data)))
  assert(ok, "initdb failed: " .. out)
  local conf = assert(io.open(s.data .. "/postgresql.conf", "a"))
  conf:write(CONF:format(s.port, s.dir))
  local names = {}
  for name in pairs(opts.conf or {}) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local value = tostring(opts.conf[name])
    assert(name:match("^[%a_][%w_.]*$") and not value:find("['\\\n]"), "pg.start: bad setting " .. name)
    conf:write(("%s = '%s'\n"):format(name, value))
  end
  conf:close()
  local hba = assert(io.open(s.data .. "/pg_hba.conf", "w"))
  hba:write(HBA)
  hba:close()
  s:restart()
  -- The password is set with statement logging off, so the log the specs
  -- read never holds it.
  s.password = "Kf-Pg-" .. random_hex(12)
  s:psql(("CREATE ROLE kfsmtp LOGIN PASSWORD '%s'"):format(s.password), "postgres", true)
  s:psql("CREATE DATABASE kfsmtp OWNER kfsmtp", "postgres")
  s.passfile = s.dir .. "/pgpass"
  H.write(s.passfile, ("127.0.0.1:%d:kfsmtp:kfsmtp:%s\n"):format(s.port, s.password))
  H.sh("chmod 0600 " .. H.q(s.passfile))
  s.plain_uri = ("postgresql://kfsmtp@127.0.0.1:%d/kfsmtp"):format(s.port)
  s.uri = s.plain_uri .. "?passfile=" .. s.passfile
  s.env = "PGPASSFILE=" .. H.q(s.passfile)
  -- The watchdog: while this process lives, nothing; then the server goes.
  local self_pid = (H.read("/proc/self/stat") or ""):match("^(%d+)")
  if self_pid then
    local script = ("while kill -0 %s 2>/dev/null; do sleep 1; done; pm=$(head -1 %s/postmaster.pid 2>/dev/null); [ -n \"$pm\" ] && kill -CONT $pm $(ps -o pid= --ppid $pm) 2>/dev/null; %s; rm -rf %s"):format(
      self_pid, H.q(s.data), s:as_pg(("%s/pg_ctl -D %s -m immediate stop"):format(s.bin, H.q(s.data))), H.q(s.dir))
    s.watchdog = tonumber((H.sh(("sh -c %s > /dev/null 2>&1 & echo $!"):format(H.q(script)))):match("%d+"))
  end
  s.start_ms = H.now_ms() - t0
  return s
end

return M
