-- Round trips: kfsmtp's tests through bench/delay_relay.py, which counts
-- the turns of each conversation, must make exactly the minimum each
-- scenario allows (derived in bench/README.md): an initial response on
-- every AUTH line, the token endpoint's connection kept between tests, and
-- nothing waited for twice. Counts, not times: the relay's delay (2 ms
-- each way here) only orders the chunks.
local H = require "helpers"

local CLIENT, SECRET, MAILBOX = "app-rt", "client-Secret-rt", "kf-mailbox@example.com"

-- A relay in front of 127.0.0.1:port; :connections() --> the turns of
-- each connection it closed so far, in order.
local Relay = {}
Relay.__index = Relay

local function start_relay(port)
  local dir = H.tmpdir()
  local out = dir .. "/out"
  -- env execs python: $! is the relay's own pid.
  H.exec(("%s%s bench/delay_relay.py --to 127.0.0.1:%d --delay-ms 2 > %s 2>&1 & echo $! > %s"):format(
    H.plain, H.python, port, H.q(out), H.q(dir .. "/pid")))
  local deadline = H.now_ms() + 10000
  while not (H.read(out) or ""):find("listening") do
    assert(H.now_ms() < deadline, "delay_relay.py did not start: " .. (H.read(out) or ""))
    H.sleep(0.02)
  end
  local listen = tonumber((H.read(out)):match("listening 127%.0%.0%.1:(%d+)"))
  local pid = (H.read(dir .. "/pid") or ""):match("%d+")
  return setmetatable({ out = out, port = listen, pid = pid }, Relay)
end

-- Waits until n connections have closed (or 5 s), then their turns.
function Relay:connections(n)
  local deadline = H.now_ms() + 5000
  local turns
  repeat
    turns = {}
    for t in (H.read(self.out) or ""):gmatch("conn %d+ turns (%d+)") do turns[#turns + 1] = tonumber(t) end
    if #turns >= n then break end
    H.sleep(0.02)
  until H.now_ms() > deadline
  return turns
end

function Relay:stop()
  assert(self.pid, "the relay's pid is unknown")
  H.exec("kill " .. self.pid .. " 2>/dev/null")
end

-- n tests of request in a process of their own (so that what it keeps,
-- the token endpoint's connection, closes when it ends); the infos' auth
-- mechanisms and errors.
local function run_tests(request, opts, n)
  local dir = H.tmpdir()
  H.write(dir .. "/case.lua", ([[
package.path = "lua/?.lua;" .. package.path
package.cpath = %q .. "/?.so;" .. package.cpath
local kfsmtp = require "kfsmtp"
local store = kfsmtp.open(%q)
for _ = 1, %d do
  local ok, info = store:test(%s, %s)
  io.write(ok and ("ok " .. tostring(info.auth_mechanism)) or ("failed " .. tostring(info.Message)), "\n")
end
]]):format(H.build, dir .. "/store.json", n, request, opts))
  local out, ok = H.sh(H.lua_run .. " " .. H.q(dir .. "/case.lua"))
  assert(ok, out)
  return out
end

describe("round trips through a delaying relay", function()
  local ca
  setup(function() ca = H.certs().ca end)

  it("plain SMTP: 7 (connect and greeting, EHLO, MAIL, RCPT, DATA, the message, QUIT)", function()
    local smtp = H.start_smtp { mode = "plain" }
    local relay = start_relay(smtp.port)
    finally(function() relay:stop() smtp:stop() end)
    local out = run_tests(([[{ Host = "127.0.0.1", Port = %d, UseSSL = false, SenderAccount = "kf@example.com",
      TestRecipient = "ops@example.com" }]]):format(relay.port), "{}", 2)
    assert.are.equal("ok none\nok none\n", out)
    assert.are.same({ 7, 7 }, relay:connections(2))
  end)

  -- One type-2 test against an aiosmtpd in mode, the mechanism forced;
  -- --> the relay's turns.
  local function password_turns(mode, mechanism)
    local smtp = H.start_smtp { mode = mode, auth = "svc:pw-rt" }
    local relay = start_relay(smtp.port)
    finally(function() relay:stop() smtp:stop() end)
    local out = run_tests(([[{ Host = "localhost", Port = %d, UseSSL = true, RelayAuthenticationType = 2,
      RelayUsername = "svc", RelayPassword = "pw-rt", SenderAccount = "kf@example.com",
      TestRecipient = "ops@example.com" }]]):format(relay.port),
      ("{ ca_file = %q, tls_mode = %q, auth_mechanism = %q }"):format(ca, mode, mechanism), 1)
    assert.are.equal("ok " .. mechanism .. "\n", out)
    return relay:connections(1)
  end

  it("STARTTLS + AUTH PLAIN: 11, the credentials on the AUTH line", function()
    assert.are.same({ 11 }, password_turns("starttls", "PLAIN"))
  end)

  it("implicit TLS + AUTH LOGIN: 10, the user name on the AUTH line", function()
    assert.are.same({ 10 }, password_turns("implicit", "LOGIN"))
  end)

  it("type 3: the token on one kept connection (2 turns, then 1 a token), 11 for SMTP with the bearer", function()
    -- Tokens that live 60 s are never kept: each test asks for one.
    local tokens = H.start_token_server(CLIENT, SECRET, "--expires-in 60")
    local smtp = H.start_smtp { mode = "starttls", oauth_token_file = tokens.token_file, oauth_only = true,
      oauth_mechs = "XOAUTH2" }
    local token_relay, smtp_relay = start_relay(tokens.port), start_relay(smtp.port)
    finally(function() token_relay:stop() smtp_relay:stop() smtp:stop() tokens:stop() end)
    local out = run_tests(([[{ Host = "localhost", Port = %d, UseSSL = true, RelayAuthenticationType = 3,
      RelayUsername = %q, SenderAccount = %q, TestRecipient = "ops@example.com", ClientId = %q,
      ClientSecret = %q, Scope = "smtp", TokenEndpoint = "https://localhost:%d/token" }]]):format(
      smtp_relay.port, MAILBOX, MAILBOX, CLIENT, SECRET, token_relay.port), ("{ ca_file = %q }"):format(ca), 3)
    assert.are.equal(("ok XOAUTH2\n"):rep(3), out)
    assert.are.equal(3, tokens:requests())
    assert.are.same({ 11, 11, 11 }, smtp_relay:connections(3))
    -- One connection for the three requests: 2 + 1 + 1.
    assert.are.same({ 4 }, token_relay:connections(1))
  end)
end)
