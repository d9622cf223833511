-- Real mail servers for the specs, configured as operators configure them:
-- Debian's Postfix 3.7 (with Dovecot 2.3 for SASL and postgrey for
-- greylisting) and Exim 4.96 (unpacked by scripts/exim.sh). Each runs from
-- its own configuration in a throwaway folder, listens on free loopback
-- ports only, delivers nothing anywhere (every message is discarded once
-- accepted), needs no DNS, and is started and stopped by its own pid: the
-- system's mail setup (/etc/postfix/main.cf, /etc/dovecot, /etc/exim4) is
-- never read or written.
--
--   local R = require "realmail"
--   local pf = R.start_postfix()   -- pf.ports.mx, .submission, ...; pf:log(); pf:stop()
--   local ex = R.start_exim()      -- ex.ports.submission, .smtps, ...
--
-- Users (R.USERS): alice and bob have plain-text passwords, so PLAIN, LOGIN
-- and CRAM-MD5 all work; hashed's password is kept only as a SHA512-CRYPT
-- hash while Dovecot still offers CRAM-MD5 (a common misconfiguration:
-- CRAM-MD5 needs the plain text). Each user owns USER@example.test.
local socket = require "socket"
local H = require "helpers"

local R = {}

R.DOMAIN = "example.test"          -- the senders' domain (not local to either server)
R.POSTFIX_DOMAIN = "mx.example.test" -- Postfix's local domain (its myhostname)
R.EXIM_DOMAIN = "exim.example.test"  -- Exim's local domain
R.OUTSIDE = "someone@example.org"    -- a recipient neither server is final for: relaying
R.USERS = {
  alice = "alice-Relay-Pass-1",
  bob = "bob-Relay-Pass-2",
  hashed = "hashed-Relay-Pass-3",
}

-- Absolute paths: the servers chdir before they read anything.
local cwd = H.sh("pwd"):gsub("%s+$", "")
R.EXIM = os.getenv("KFSMTP_EXIM") or (cwd .. "/build/exim/root/usr/sbin/exim4")

-- n distinct loopback ports that were free a moment ago (all bound at
-- once, so no two are the same, then released for the server).
function R.free_ports(n)
  local socks, ports = {}, {}
  for i = 1, n do
    socks[i] = assert(socket.bind("127.0.0.1", 0))
    local _, port = socks[i]:getsockname()
    ports[i] = tonumber(port)
  end
  for _, s in ipairs(socks) do s:close() end
  return ports
end

-- Fills ${name} in a template from vars; an unknown name is a bug here.
local function fill(template, vars)
  return (template:gsub("%${(%w[%w_]*)}", function(name)
    return tostring(assert(vars[name], "realmail: no value for ${" .. name .. "}"))
  end))
end

local function run(cmd)
  local out, ok = H.sh(H.plain .. cmd)
  assert(ok, cmd .. " failed: " .. out)
  return out
end

-- A folder the servers' own users (postfix, dovecot, Debian-exim) can
-- traverse: mktemp makes it 0700.
local function server_dir()
  local dir = H.tmpdir()
  run("chmod 0755 " .. H.q(dir))
  return dir
end

-- Runs a command that leaves a daemon behind: its output goes to a file,
-- never to the pipe H.sh reads (the daemon would hold it open).
local function start_daemon(cmd, out_path)
  local ok = H.exec(("%s%s < /dev/null > %s 2>&1"):format(H.plain, cmd, H.q(out_path)))
  assert(ok == true or ok == 0, cmd .. " failed: " .. (H.read(out_path) or ""))
end

local function listening(port)
  local c = socket.tcp()
  c:settimeout(0.2)
  local ok = c:connect("127.0.0.1", port)
  c:close()
  return ok ~= nil
end

-- Waits for a pid file and then for a port, whichever the server needs.
local function wait_for(what, check, log_path)
  local deadline = H.now_ms() + 15000
  while not check() do
    assert(H.now_ms() < deadline, what .. " did not start: " .. (H.read(log_path) or ""))
    H.sleep(0.02)
  end
end

local function read_pid(path)
  local s = H.read(path)
  return s and tonumber(s:match("%d+"))
end

-- A daemon's parent is init, which may take a second to reap it: a
-- zombie has ended.
local function alive(pid)
  local stat = H.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

-- Ends processes by their pids, all at once (each takes a second or
-- two to wind down its children), and waits up to 10 s until all are gone.
local function stop_pids(pids)
  for _, pid in ipairs(pids) do H.exec("kill -TERM " .. pid .. " 2>/dev/null") end
  local deadline = H.now_ms() + 10000
  for _, pid in ipairs(pids) do
    while alive(pid) and H.now_ms() < deadline do H.sleep(0.02) end
  end
end

-- Server certificate and key as the servers' own users may read them
-- (H.certs()'s folder is root's alone); the suite's CA signed them.
local function copy_certs(dir, owner)
  local c = H.certs()
  run(("cp %s %s/tls.crt && cp %s %s/tls.key && chmod 0644 %s/tls.crt && chmod 0640 %s/tls.key && chown root:%s %s/tls.key"):format(
    H.q(c.cert), H.q(dir), H.q(c.key), H.q(dir), H.q(dir), H.q(dir), owner, H.q(dir)))
  return dir .. "/tls.crt", dir .. "/tls.key"
end

local Server = {}
Server.__index = Server

-- The server's own log: Postfix's maillog_file and Dovecot's log_path;
-- Exim's mainlog, rejectlog and paniclog.
function Server:log()
  local parts = {}
  for _, path in ipairs(self.log_files) do parts[#parts + 1] = H.read(path) or "" end
  return table.concat(parts)
end

-- Waits (up to 5 s) until the log holds needle (plain text, or a Lua
-- pattern when is_pattern); true if it does. Postfix and Exim write their
-- lines a moment after the reply that ended the dialog.
function Server:log_shows(needle, is_pattern)
  local deadline = H.now_ms() + 5000
  repeat
    if self:log():find(needle, 1, not is_pattern) then return true end
    H.sleep(0.05)
  until H.now_ms() > deadline
  return false
end

function Server:stop()
  stop_pids(self.pids)
  self.pids = {}
end

---------------------------------------------------------------- Dovecot ----

-- Dovecot as Postfix's SASL server only (no IMAP or POP3 listener): a
-- passwd-file of R.USERS, mechanisms PLAIN LOGIN CRAM-MD5, its auth socket
-- at dir/run/auth-client.
local DOVECOT_CONF = [[
# Dovecot for kfsmtp's realmail specs: authentication for Postfix only.
base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = kfsmtp-${id}
protocols =
listen = 127.0.0.1
log_path = ${dir}/dovecot.log
auth_verbose = yes
auth_mechanisms = plain login cram-md5
# Postfix asks for AUTH only over TLS (smtpd_tls_auth_only): Dovecot sees
# its clients as local.
disable_plaintext_auth = no
ssl = no
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}
service auth {
  unix_listener auth-client {
    mode = 0666
  }
}
# A refused login is answered at once, and later logins from the same
# address are not slowed: the replies are the same, the specs only wait
# less. The auth penalty (2 s, then 4, 8, 15 after each failure from an
# address) is kept in anvil; with its socket closed (mode 0) the auth
# process, which runs as dovecot, cannot reach it and keeps none.
auth_failure_delay = 0
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
]]

local function start_dovecot(dir)
  -- From a file, so that the password is in no process's argv.
  H.write(dir .. "/hashed.in", R.USERS.hashed .. "\n")
  local hash = run("openssl passwd -6 -salt kfsmtprealmail -in " .. H.q(dir .. "/hashed.in")):gsub("%s+$", "")
  H.write(dir .. "/users", table.concat({
    "alice:{PLAIN}" .. R.USERS.alice .. "::::::",
    "bob:{PLAIN}" .. R.USERS.bob .. "::::::",
    "hashed:{SHA512-CRYPT}" .. hash .. "::::::",
  }, "\n") .. "\n")
  run("mkdir -p " .. H.q(dir .. "/state") .. " && chmod 0644 " .. H.q(dir .. "/users"))
  H.write(dir .. "/dovecot.conf", fill(DOVECOT_CONF, { dir = dir, id = dir:match("([^/.]+)/[^/]+$") }))
  start_daemon("dovecot -c " .. H.q(dir .. "/dovecot.conf"), dir .. "/dovecot.out")
  local socket_path = dir .. "/run/auth-client"
  wait_for("dovecot", function()
    return H.exists(dir .. "/run/master.pid") and H.exec("test -S " .. H.q(socket_path)) == true
  end, dir .. "/dovecot.log")
  return read_pid(dir .. "/run/master.pid"), socket_path
end

---------------------------------------------------------------- postgrey ---

local function start_postgrey(dir, port)
  run("mkdir -p " .. H.q(dir .. "/db") .. " && chown postgrey:postgrey " .. H.q(dir) .. " " .. H.q(dir .. "/db"))
  -- postgrey logs to syslog only; what Postfix logs of it is enough here.
  start_daemon(("postgrey --inet=127.0.0.1:%d --dbdir=%s --pidfile=%s --delay=300 --daemonize"):format(
    port, H.q(dir .. "/db"), H.q(dir .. "/postgrey.pid")), dir .. "/postgrey.out")
  wait_for("postgrey", function() return read_pid(dir .. "/postgrey.pid") and listening(port) end, dir .. "/postgrey.out")
  return read_pid(dir .. "/postgrey.pid")
end

---------------------------------------------------------------- Postfix ----

local POSTFIX_MAIN = [[
# Postfix for kfsmtp's realmail specs: an Internet-facing MX with a
# submission service, as its operator would set it up, on loopback ports.
compatibility_level = 3.6
queue_directory = ${dir}/spool
data_directory = ${dir}/data
# Its own log file (Postfix 3.4+: written by the postlog service).
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
myhostname = ${myhostname}
mydomain = example.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination = $myhostname, localhost
local_recipient_maps =
# 127.0.0.1 is NOT trusted: relaying needs a login.
mynetworks = 127.0.0.2/32
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
# Nothing leaves the machine: every accepted message is discarded.
default_transport = discard
relay_transport = discard
local_transport = discard
virtual_transport = discard
smtp_dns_support_level = disabled
smtp_host_lookup = native
alias_maps =
alias_database =
biff = no
# TLS offered everywhere, AUTH only once it is on.
smtpd_tls_cert_file = ${cert}
smtpd_tls_key_file = ${key}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtpd_sasl_type = dovecot
smtpd_sasl_path = ${sasl_path}
smtpd_sasl_auth_enable = yes
smtpd_sender_login_maps = texthash:${dir}/etc/sender_logins
anvil_rate_time_unit = 60s
# Rules the services of master.cf pick from, as Debian's master.cf does.
mua_client_restrictions = permit_sasl_authenticated, reject
mua_sender_restrictions = reject_sender_login_mismatch
greylist_restrictions = reject_unauth_destination, check_policy_service inet:127.0.0.1:${postgrey_port}
]]

local POSTFIX_MASTER = [[
# service type  private unpriv  chroot  wakeup  maxproc command + args
${mx} inet n - n - - smtpd
${submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_client_restrictions=$mua_client_restrictions
  -o smtpd_sender_restrictions=$mua_sender_restrictions
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
${submission_plain} inet n - n - - smtpd
  -o syslog_name=postfix/submission-plain
  -o smtpd_tls_security_level=encrypt
  -o smtpd_client_restrictions=$mua_client_restrictions
  -o smtpd_sender_restrictions=$mua_sender_restrictions
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sasl_mechanism_filter=plain
${submission_login} inet n - n - - smtpd
  -o syslog_name=postfix/submission-login
  -o smtpd_tls_security_level=encrypt
  -o smtpd_client_restrictions=$mua_client_restrictions
  -o smtpd_sender_restrictions=$mua_sender_restrictions
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sasl_mechanism_filter=login
${smtps} inet n - n - - smtpd
  -o syslog_name=postfix/smtps
  -o smtpd_tls_wrappermode=yes
  -o smtpd_client_restrictions=$mua_client_restrictions
  -o smtpd_sender_restrictions=$mua_sender_restrictions
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
${smtps_login} inet n - n - - smtpd
  -o syslog_name=postfix/smtps-login
  -o smtpd_tls_wrappermode=yes
  -o smtpd_client_restrictions=$mua_client_restrictions
  -o smtpd_sender_restrictions=$mua_sender_restrictions
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sasl_mechanism_filter=login
${sender_check} inet n - n - - smtpd
  -o syslog_name=postfix/sender-check
  -o smtpd_sender_restrictions=$mua_sender_restrictions
${greylist} inet n - n - - smtpd
  -o syslog_name=postfix/greylist
  -o smtpd_recipient_restrictions=$greylist_restrictions
${ratelimit} inet n - n - - smtpd
  -o syslog_name=postfix/ratelimit
  -o smtpd_client_connection_rate_limit=1
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
]]

R.POSTFIX_LISTENERS = { "mx", "submission", "submission_plain", "submission_login", "smtps", "smtps_login",
  "sender_check", "greylist", "ratelimit" }

-- start_postfix() --> server with ports = { mx, submission,
-- submission_plain, submission_login, smtps, smtps_login, greylist,
-- ratelimit }, :log()
-- (Postfix's maillog_file, then Dovecot's log), :stop() (Postfix, Dovecot,
-- postgrey, by pid).
--   mx                STARTTLS offered, AUTH only after it, relay only when
--                     logged in (127.0.0.1 is not in mynetworks)
--   submission        TLS required (STARTTLS), logins only (anonymous:
--                     "Client host rejected"), senders must be the login's
--                     own (reject_sender_login_mismatch); PLAIN LOGIN CRAM-MD5
--   submission_plain, submission_login   the same offering one mechanism
--   smtps             the same as submission with implicit TLS (wrappermode)
--   smtps_login       smtps offering LOGIN only
--   greylist          as mx, recipients checked by postgrey first
--   ratelimit         as mx, one connection per client a minute (anvil)
function R.start_postfix()
  local dir = server_dir()
  local s = setmetatable({ dir = dir, pids = {}, ports = {} }, Server)
  local ports = R.free_ports(#R.POSTFIX_LISTENERS + 1)
  for i, name in ipairs(R.POSTFIX_LISTENERS) do s.ports[name] = ports[i] end
  s.ports.postgrey = ports[#ports]
  for _, sub in ipairs { "postfix", "dovecot", "postgrey" } do run("mkdir -p " .. H.q(dir .. "/" .. sub)) end
  run("chmod 0755 " .. H.q(dir .. "/dovecot"))

  local dovecot_pid, sasl_path = start_dovecot(dir .. "/dovecot")
  s.pids[#s.pids + 1] = dovecot_pid
  s.pids[#s.pids + 1] = start_postgrey(dir .. "/postgrey", s.ports.postgrey)

  -- etc/ holds root's files only (postfix-script checks that), spool/
  -- and data/ beside it are Postfix's.
  local pf = dir .. "/postfix"
  local etc = pf .. "/etc"
  run(("mkdir -p %s %s/spool"):format(H.q(etc), H.q(pf)))
  local cert, key = copy_certs(etc, "postfix")
  local logins = {}
  for user in pairs(R.USERS) do logins[#logins + 1] = ("%s@%s %s"):format(user, R.DOMAIN, user) end
  table.sort(logins)
  H.write(etc .. "/sender_logins", table.concat(logins, "\n") .. "\n")
  local vars = { dir = pf, myhostname = R.POSTFIX_DOMAIN, cert = cert, key = key, sasl_path = sasl_path,
    postgrey_port = s.ports.postgrey }
  for name, port in pairs(s.ports) do vars[name] = port end
  H.write(etc .. "/main.cf", fill(POSTFIX_MAIN, vars))
  H.write(etc .. "/master.cf", fill(POSTFIX_MASTER, vars))
  s.log_files = { pf .. "/maillog", dir .. "/dovecot/dovecot.log" }
  -- `postfix -c DIR`: run by root, Postfix takes any configuration folder
  -- (alternate_config_directories in /etc/postfix/main.cf is for other
  -- users; that file need not even exist). start creates the queue
  -- folders (post-install create-missing) and checks them.
  start_daemon("postfix -c " .. H.q(etc) .. " start", pf .. "/start.out")
  wait_for("postfix", function() return read_pid(pf .. "/spool/pid/master.pid") and listening(s.ports.mx) end, pf .. "/maillog")
  table.insert(s.pids, 1, read_pid(pf .. "/spool/pid/master.pid"))
  return s
end

------------------------------------------------------------------- Exim ----

local EXIM_CONF = [[
# Exim for kfsmtp's realmail specs: a submission server with STARTTLS and
# AUTH after TLS, relaying for logged-in users only, on loopback ports.
primary_hostname = ${hostname}
qualify_domain = example.test
domainlist local_domains = @ : localhost
spool_directory = ${dir}/spool
log_file_path = ${dir}/log/%slog
pid_file_path = ${dir}/exim.pid
exim_path = ${exim}
keep_environment =
local_interfaces = 127.0.0.1
daemon_smtp_ports = ${submission} : ${smtps} : ${plain} : ${login} : ${oauth}
tls_on_connect_ports = ${smtps}
tls_advertise_hosts = *
tls_certificate = ${cert}
tls_privatekey = ${key}
# AUTH is offered only once TLS is on.
auth_advertise_hosts = ${if eq{$tls_in_cipher}{}{}{*}}
# No DNS: no reverse lookups, no ident.
host_lookup =
rfc1413_hosts =
dns_again_means_nonexist = *
log_selector = +smtp_connection +smtp_protocol_error +smtp_syntax_error +tls_peerdn +received_recipients
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  accept  hosts = :
  accept  authenticated = *
          control = submission/sender_retain
  require message = relay not permitted
          domains = +local_domains
  accept

begin routers

# Whatever was accepted goes nowhere.
discard_all:
  driver = redirect
  data = :blackhole:

begin transports

begin authenticators

PLAIN:
  driver = plaintext
  public_name = PLAIN
  server_prompts = :
  server_condition = ${lookup{$auth2}lsearch{${dir}/passwd}{${if eq{$value}{$auth3}}}{no}}
  server_set_id = $auth2
  server_advertise_condition = ${if and{{!eq{$received_port}{${login}}}{!eq{$received_port}{${oauth}}}}}

LOGIN:
  driver = plaintext
  public_name = LOGIN
  server_prompts = <| Username: | Password:
  server_condition = ${lookup{$auth1}lsearch{${dir}/passwd}{${if eq{$value}{$auth2}}}{no}}
  server_set_id = $auth1
  server_advertise_condition = ${if and{{!eq{$received_port}{${plain}}}{!eq{$received_port}{${oauth}}}}}

CRAM:
  driver = cram_md5
  public_name = CRAM-MD5
  server_secret = ${lookup{$auth1}lsearch{${dir}/passwd}{$value}fail}
  server_set_id = $auth1
  server_advertise_condition = ${if or{{eq{$received_port}{${submission}}}{eq{$received_port}{${smtps}}}}}
# XOAUTH2 as Microsoft 365 offers it, with the bearer token checked against
# the token files' contents (what the specs' token endpoint issued last):
# the initial response "user=U^Aauth=Bearer T^A^A" is one string to the
# plaintext driver, which splits at NUL only.
XOAUTH2:
  driver = plaintext
  public_name = XOAUTH2
  server_prompts = :
  server_condition = ${if match{$auth1}{\N^user=[^\x01]+\x01auth=Bearer ([^\x01]+)\x01\x01$\N}{${if or{${oauth_tokens}}}}{no}}
  server_set_id = ${sg{$auth1}{\N^user=([^\x01]+)\x01.*$\N}{\$1}}
  server_advertise_condition = ${if eq{$received_port}{${oauth}}}
]]

R.EXIM_LISTENERS = { "submission", "smtps", "plain", "login", "oauth" }

-- start_exim(opts) --> server with ports = { submission, smtps, plain,
-- login, oauth }, :log() (mainlog, rejectlog, paniclog), :stop() (by pid).
-- opts.oauth_token_files: the files whose content (the token an endpoint
-- issued last) the oauth port takes as a bearer token; default one file,
-- server.oauth_token_file.
--   submission  STARTTLS, AUTH PLAIN LOGIN CRAM-MD5 after TLS, relay only
--               when logged in ("550 relay not permitted")
--   smtps       the same with implicit TLS (tls_on_connect_ports)
--   plain, login  as submission, offering PLAIN alone, LOGIN alone
--   oauth       as submission, offering XOAUTH2 alone
-- The configuration file must be root's and writable by no one else (Exim
-- refuses it otherwise). Started by root with -C, the daemon keeps root
-- although the file is not in /etc/exim4/trusted_configs (that list is for
-- other callers); the delivery processes it runs as Debian-exim lose their
-- privilege over the -C (a line each in the paniclog) and deliver to
-- :blackhole: all the same.
function R.start_exim(opts)
  assert(H.exists(R.EXIM), R.EXIM .. " is missing: run `make deps` (scripts/exim.sh unpacks Exim)")
  local dir = server_dir()
  local token_files = opts and opts.oauth_token_files or { dir .. "/oauth-token" }
  local s = setmetatable({ dir = dir, pids = {}, ports = {} }, Server)
  local ports = R.free_ports(#R.EXIM_LISTENERS)
  for i, name in ipairs(R.EXIM_LISTENERS) do s.ports[name] = ports[i] end
  local cert, key = copy_certs(dir, "Debian-exim")
  local users = {}
  for user, password in pairs(R.USERS) do users[#users + 1] = user .. ": " .. password end
  table.sort(users)
  H.write(dir .. "/passwd", table.concat(users, "\n") .. "\n")
  run(("mkdir -p %s/spool %s/log && chown Debian-exim:Debian-exim %s/spool %s/log && chown root:Debian-exim %s/passwd && chmod 0640 %s/passwd"):format(
    H.q(dir), H.q(dir), H.q(dir), H.q(dir), H.q(dir), H.q(dir)))
  local checks = {}
  for i, path in ipairs(token_files) do
    assert(not path:find("[{}$\\%s]"), "start_exim: a token file's path may not hold braces, $, \\ or spaces")
    if not H.exists(path) then H.write(path, "none-issued-yet\n") end
    checks[i] = ("{eq{$1}{${readfile{%s}{}}}}"):format(path)
  end
  s.oauth_token_file = token_files[1]
  local vars = { dir = dir, hostname = R.EXIM_DOMAIN, exim = R.EXIM, cert = cert, key = key,
    oauth_tokens = table.concat(checks) }
  for name, port in pairs(s.ports) do vars[name] = port end
  -- Exim's own ${...} expansions stay: only the names above are filled.
  local conf = EXIM_CONF:gsub("%${(%w[%w_]*)}", function(name)
    return vars[name] and tostring(vars[name]) or nil
  end)
  H.write(dir .. "/exim.conf", conf)
  run("chmod 0644 " .. H.q(dir .. "/exim.conf"))
  s.log_files = { dir .. "/log/mainlog", dir .. "/log/rejectlog", dir .. "/log/paniclog" }
  start_daemon(("%s -C %s -bd -q30m"):format(H.q(R.EXIM), H.q(dir .. "/exim.conf")), dir .. "/start.out")
  wait_for("exim", function() return read_pid(dir .. "/exim.pid") and listening(s.ports.submission) end, dir .. "/log/paniclog")
  s.pids[1] = read_pid(dir .. "/exim.pid")
  return s
end

return R
