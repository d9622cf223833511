-- `make demo-cluster`: the main job for several nodes. A throwaway
-- PostgreSQL (spec/support/pg.lua), a key file, a loopback capture SMTP
-- server with AUTH, and two API nodes: two nginx instances, each in its own
-- folder on its own port, both serving serve{ store = "<the postgresql://
-- URI>", key_file = ... } from the same database. Then, step by step: an
-- administrator on each node, a profile with a relay password PUT through
-- node A, read back through node B (and how long after the PUT node B saw
-- it), a test through node B with the password stored through node A, the
-- message the capture server got, and the row in the database holding the
-- password only sealed. Everything started is stopped at the end, on a
-- failure too: an error or Ctrl-C ends main() and the cleanup runs; if this
-- process is killed, a watchdog (like pg.lua's for the database) stops
-- nginx and the capture server and removes the folders.
--
-- usage: lua5.4 scripts/demo_cluster.lua   (after make both; from anywhere)
-- Exit status 0 when every step did what it says, 1 otherwise.

-- From the repository root, whatever the current folder: the helpers run
-- scripts/ and spec/support/ by relative paths.
local self_dir = (arg and arg[0] or ""):match("^(.*)/[^/]+$") or "."
local function out_of(cmd)
  local p = io.popen(cmd)
  local s = p:read("*a")
  p:close()
  return (s:gsub("%s+$", ""))
end
local root = out_of("cd '" .. self_dir:gsub("'", "'\\''") .. "/..' && pwd -P")
if root ~= out_of("pwd -P") then
  local interpreter = arg[-1] or "lua5.4"
  local ok, _, code = os.execute(("cd '%s' && exec %s scripts/demo_cluster.lua"):format(root:gsub("'", "'\\''"), interpreter))
  os.exit(ok and 0 or (code or 1))
end

local build = (type(jit) == "table") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.path = "lua/?.lua;spec/support/?.lua;" .. package.path
package.cpath = "build/" .. build .. "/?.so;" .. package.cpath

local H = require "helpers"
local pg = require "pg"
local cjson = require "cjson"
local json = require "kfsmtp.json" -- sorted keys, as the API writes them
local http = require "socket.http"
local ltn12 = require "ltn12"
local mime = require "mime"

local SENDER = "kfsmtp-cluster@example.com"
local RECIPIENT = "operator@example.com"

-- What was started, for the cleanup (in reverse) and the watchdog.
local run, watchdog
local started = {}
local step_title = "start"

local function say(fmt, ...) io.write((fmt .. "\n"):format(...)) io.flush() end
local function step(n, title)
  step_title = ("%d. %s"):format(n, title)
  say("\n== %s", step_title)
end
local function check(cond, fmt, ...)
  if not cond then error({ message = fmt:format(...) }, 2) end
  return cond
end

-- The watchdog's script: whatever is still running, stopped; every folder
-- removed. Rewritten after each start, run by the watchdog only if this
-- process dies before its own cleanup.
local function write_stop_script()
  local lines = { "#!/bin/sh" }
  for i = #started, 1, -1 do
    local s = started[i]
    if s.nginx then
      lines[#lines + 1] = ("nginx -p %s -c %s/nginx.conf -s stop 2>/dev/null"):format(H.q(s.nginx.dir), H.q(s.nginx.dir))
    elseif s.pid then
      lines[#lines + 1] = ("kill %d 2>/dev/null"):format(s.pid)
    end
  end
  lines[#lines + 1] = "sleep 1"
  for i = #started, 1, -1 do
    if started[i].dir then lines[#lines + 1] = "rm -rf " .. H.q(started[i].dir) end
  end
  H.write(run .. "/stop.sh", table.concat(lines, "\n") .. "\n")
end

local function track(entry)
  started[#started + 1] = entry
  write_stop_script()
end

local function wait_gone(pid)
  local deadline = H.now_ms() + 10000
  while H.running(pid) and H.now_ms() < deadline do H.sleep(0.02) end
  return not H.running(pid)
end

-- Stops everything, in reverse order of starting: true when all went.
local function cleanup()
  local all = true
  local names = {}
  for i = #started, 1, -1 do
    local s = started[i]
    if s.nginx then
      all = s.nginx:stop(true) and all
      names[#names + 1] = s.name
    elseif s.pg then
      s.pg:destroy()
      all = not s.pg:postmaster() and all
      names[#names + 1] = s.name
    elseif s.pid then
      H.exec("kill " .. s.pid .. " 2>/dev/null")
      all = wait_gone(s.pid) and all
      names[#names + 1] = s.name
    end
    if s.dir then H.exec("rm -rf " .. H.q(s.dir)) end
  end
  if watchdog then H.exec("kill " .. watchdog .. " 2>/dev/null") end
  if run then H.exec("rm -rf " .. H.q(run)) end
  if #names > 0 then say("stopped: %s; folders removed", table.concat(names, ", ")) end
  return all
end

-- curl, as a person would type it: the administrator's credentials come
-- from a curl config file (-K) and a body from a file, so that no
-- process's argv shows a password.
local function curl(node, method, path, body_file)
  local cmd = ("curl -s -K %s -X %s"):format(node.curl_conf, method)
  if body_file then cmd = cmd .. (" -H 'Content-Type: application/json' --data-binary @%s"):format(body_file) end
  cmd = cmd .. (" %s%s"):format(node.base, path)
  say("   $ %s", cmd)
  local out, ok = H.sh(cmd .. " -w '\\n%{http_code}'")
  check(ok, "curl failed: %s", out)
  local body, status = out:match("^(.*)\n(%d%d%d)$")
  check(status, "curl printed no status: %s", out)
  say("   %s %s", status, body)
  return tonumber(status), body
end

-- GET in this process (LuaSocket), to time how soon node B answers with
-- what node A stored: status, body.
local function quick_get(node)
  local parts = {}
  local _, status = http.request {
    url = node.base .. "/SMTP",
    headers = { authorization = node.authorization, ["x-keyfactor-requested-with"] = "APIClient" },
    sink = ltn12.sink.table(parts),
  }
  return status, table.concat(parts)
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function main()
  for _, f in ipairs { "build/luajit/kfsmtp/core.so", "build/" .. build .. "/kfsmtp/core.so" } do
    check(H.exists(f), "%s is missing: run `make both` first (make demo-cluster does)", f)
  end
  run = (H.sh("mktemp -d /tmp/kfsmtp-cluster.XXXXXX")):gsub("%s+$", "")
  H.exec("chmod 0700 " .. H.q(run))
  -- The watchdog: while this process lives, nothing; then stop.sh.
  local self_pid = (H.read("/proc/self/stat") or ""):match("^(%d+)")
  watchdog = tonumber((H.sh(("sh -c %s > /dev/null 2>&1 & echo $!"):format(H.q(
    ("while kill -0 %s 2>/dev/null; do sleep 0.2; done; sh %s/stop.sh; rm -rf %s"):format(self_pid, H.q(run), H.q(run)))))):match("%d+"))
  write_stop_script()

  say("kfsmtp demo-cluster: two API nodes (nginx) sharing one PostgreSQL store")
  say("run folder: %s", run)

  step(1, "PostgreSQL: a throwaway server (spec/support/pg.lua: initdb and pg_ctl as the postgres user)")
  -- Two nodes, one nginx worker each, up to 16 worker threads with two
  -- connections each (reads and LISTEN): more than pg.lua's 40.
  local server = pg.start { conf = { max_connections = 100 } }
  track { pg = server, name = "PostgreSQL" }
  local version = (server:psql("SHOW server_version")):match("^(%S+)")
  say("   PostgreSQL %s on 127.0.0.1:%d, data in %s (started in %.1f s)", version, server.port, server.dir, server.start_ms / 1000)
  say("   store URI: %s", server.uri)
  say("   (user kfsmtp's password is in the passfile the URI names, mode 0600; never in the URI)")

  step(2, "a key file: secrets stored in PostgreSQL are sealed with it (the store refuses them in clear)")
  local key_file = run .. "/smtp.key"
  local cmd = "bin/kfsmtp keygen " .. H.q(key_file)
  say("   $ %s", cmd)
  local out, ok = H.sh("{ " .. cmd .. " 2>/dev/null; }")
  check(ok, "keygen failed: %s", out)
  local key_id = cjson.decode(out).key_id
  say("   key id %s, file mode 0600", key_id)

  step(3, "a capture SMTP server on loopback that offers AUTH (spec/support/smtpd.py --auth-file)")
  local relay_password = pg.random_hex(12)
  local smtp = H.start_smtp { auth = "svc:" .. relay_password, auth_plaintext = true }
  track { pid = smtp.pid, dir = smtp.dir, name = "the capture server" }
  say("   127.0.0.1:%d (folder %s), user svc with a password made now (%d characters, known to this script only)",
    smtp.port, smtp.dir, #relay_password)

  step(4, "two API nodes: nginx + lua-nginx-module (scripts/nginx-conf.sh), the same store and key file")
  local nodes = {}
  for _, name in ipairs { "A", "B" } do
    local n = H.start_nginx { store = server.uri, workers = 1,
      extra = ("key_file = %q,"):format(key_file) }
    track { nginx = n, dir = n.dir, name = "nginx node " .. name }
    n.name = name
    n.base = ("http://127.0.0.1:%d/KeyfactorAPI"):format(n.port)
    nodes[name] = n
    say("   node %s: %s   (nginx -p %s, pid %d)", name, n.base, n.dir, n:pid() or -1)
  end
  say('   each serves serve{ store = "postgresql://kfsmtp@127.0.0.1:%d/kfsmtp?passfile=…", key_file = "%s" }', server.port, key_file)

  step(5, "an administrator on each node (bin/kfsmtp user-add, a users file per node)")
  local admin_password = pg.random_hex(10)
  local env_file = run .. "/admin.env"
  H.write(env_file, ("KFSMTP_USER_PASSWORD=%s; export KFSMTP_USER_PASSWORD\n"):format(admin_password))
  for _, name in ipairs { "A", "B" } do
    local n = nodes[name]
    cmd = ("bin/kfsmtp user-add admin --users-file %s --permissions all"):format(H.q(n.users_file))
    say("   $ KFSMTP_USER_PASSWORD=… %s", cmd)
    out, ok = H.sh((". %s && %s"):format(H.q(env_file), cmd))
    check(ok, "user-add failed: %s", out)
    n.curl_conf = ("%s/curl-%s.conf"):format(run, name:lower())
    H.write(n.curl_conf, ('user = "admin:%s"\nheader = "X-Keyfactor-Requested-With: APIClient"\n'):format(admin_password))
    n.authorization = "Basic " .. mime.b64("admin:" .. admin_password)
  end
  os.remove(env_file)
  say("   (the curl commands below read admin's credentials from %s/curl-<node>.conf)", run)

  step(6, "GET /SMTP through node B, before anything is stored")
  local status, body = curl(nodes.B, "GET", "/SMTP")
  check(status == 200, "GET through node B answered %s", status)
  check(cjson.decode(body).Host == "", "node B's store is not empty: %s", body)

  step(7, "PUT /SMTP through node A, with the relay password (API version 1)")
  local profile = { Host = "127.0.0.1", Port = smtp.port, UseSSL = false, RelayAuthenticationType = 2,
    RelayUsername = "svc", RelayPassword = relay_password, SenderAccount = SENDER, SenderName = "kfsmtp demo-cluster" }
  local put_file = run .. "/put.json"
  H.write(put_file, json.encode(profile))
  say("   body (%s): %s", put_file, (json.encode(profile):gsub(relay_password, "…")))
  status, body = curl(nodes.A, "PUT", "/SMTP", put_file)
  local put_done = H.now_ms()
  check(status == 200, "PUT through node A answered %s", status)
  os.remove(put_file)
  local stored = cjson.decode(body)

  step(8, "GET /SMTP through node B: the profile node A stored")
  -- Asked at once, from this process, until node B answers with it.
  local polls, seen_ms, b_body = 0, nil, nil
  while H.now_ms() - put_done < 5000 do
    local s, b = quick_get(nodes.B)
    polls = polls + 1
    if s == 200 and same(cjson.decode(b), stored) then
      seen_ms, b_body = H.now_ms() - put_done, b
      break
    end
  end
  check(seen_ms, "node B did not answer with the new profile within 5 s of the PUT")
  say("   node B answered with it %.1f ms after node A answered the PUT (GET number %d asked of node B)", seen_ms, polls)
  status, body = curl(nodes.B, "GET", "/SMTP")
  check(status == 200 and same(cjson.decode(body), stored), "node B's GET differs from what node A stored: %s", body)
  local a_status, a_body = curl(nodes.A, "GET", "/SMTP")
  check(a_status == 200 and same(cjson.decode(a_body), cjson.decode(body)), "node A and node B answer differently")
  check(same(cjson.decode(b_body), cjson.decode(body)), "node B changed its answer")
  say("   the same profile through both nodes: yes (no password in either: GET never returns it)")

  step(9, "POST /SMTP/Test through node B, without RelayPassword: node B uses the one stored through node A")
  local test = {}
  for k, v in pairs(profile) do test[k] = v end
  test.RelayPassword, test.TestRecipient = nil, RECIPIENT
  local test_file = run .. "/test.json"
  H.write(test_file, json.encode(test))
  say("   body (%s): %s", test_file, json.encode(test))
  status, body = curl(nodes.B, "POST", "/SMTP/Test", test_file)
  check(status == 200, "the test through node B answered %s: %s", status, body)
  local deadline = H.now_ms() + 5000
  while #smtp:messages() == 0 and H.now_ms() < deadline do H.sleep(0.02) end
  local messages = smtp:messages()
  check(#messages == 1, "the capture server holds %d messages, not 1", #messages)
  local meta = messages[1].meta
  local headers = H.parse_message(messages[1].raw)
  say("   the capture server got message 1 (%s/msg-1.eml): AUTH as %s, MAIL FROM:<%s>, RCPT TO:<%s>",
    smtp.dir, tostring(meta.auth_login), meta.mail_from, table.concat(meta.rcpt_tos, ">,<"))
  say("   Subject: %s", headers.subject or "")
  check(meta.auth_login == "svc", "the capture server saw login %s, not svc", tostring(meta.auth_login))
  check(meta.mail_from == SENDER and meta.rcpt_tos[1] == RECIPIENT, "the envelope is not the one asked for")

  step(10, "the row in PostgreSQL: the relay password only sealed")
  local sql = "SELECT version, profile FROM kfsmtp_profile WHERE id = 1"
  say("   $ %spsql -h %s -p %d -U postgres -d kfsmtp -At -c '%s'", server.root and "runuser -u postgres -- " or "",
    server.dir, server.port, sql)
  local row = server:psql(sql)
  local row_version, text = row:match("^(%d+)|(.*)$")
  check(row_version, "no row: %s", row)
  local doc = cjson.decode(text)
  local sealed = doc.RelayPassword
  check(type(sealed) == "table" and sealed.Sealed, "RelayPassword in the row is not sealed: %s", json.encode(sealed))
  say("   version %s; RelayUsername %q; RelayPassword = {Cipher = %q, KeyId = %q, Sealed = \"%s…\" (%d characters)}",
    row_version, doc.RelayUsername, sealed.Cipher, sealed.KeyId, sealed.Sealed:sub(1, 24), #sealed.Sealed)
  check(sealed.KeyId == key_id, "sealed with key %s, not %s", tostring(sealed.KeyId), key_id)
  check(not text:find(relay_password, 1, true), "the row holds the relay password in clear")
  check(not server:log():find(relay_password, 1, true), "the server's log holds the relay password")
  say("   the relay password in the row: no; in PostgreSQL's log (every statement logged): no")
  say("   sealed with key %s, the key file's (AES-256-GCM): whoever has the database without the key file has no password", key_id)

  step(11, "stopping everything")
end

local ok, err = xpcall(main, function(e)
  if type(e) == "table" and e.message then return e.message end
  if tostring(e):find("interrupted!$") then return "interrupted (Ctrl-C)" end
  return debug.traceback(tostring(e), 2)
end)
if not ok then
  io.stderr:write(("\ndemo-cluster FAILED at step %s: %s\n"):format(step_title, tostring(err)))
  for _, s in ipairs(started) do
    if s.nginx then
      local log = H.read(s.nginx.dir .. "/logs/error.log") or ""
      if log ~= "" then io.stderr:write(("-- %s's error log (last lines):\n%s\n"):format(s.name, log:sub(-1500))) end
    end
  end
  say("\n== stopping everything")
end
local stopped = cleanup()
if not stopped then io.stderr:write("demo-cluster: something did not stop (see above)\n") end
if ok and stopped then say("\n== demo-cluster OK") end
os.exit(ok and stopped and 0 or 1)
