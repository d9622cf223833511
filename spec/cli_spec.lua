-- bin/kfsmtp as a person runs it: JSON out, exit status per stage, the
-- password from a file or the environment and never echoed.
local H = require "helpers"
local cjson = require "cjson"

local SECRET = "cli-Secret-9931"

-- run(args, env) --> stdout, stderr, exit status
local function run(args, env)
  local dir = H.tmpdir()
  local cmd = ("%s %s bin/kfsmtp %s > %s/out 2> %s/err; echo $? > %s/rc"):format(
    env or "", H.lua_run, args, dir, dir, dir)
  H.exec(cmd)
  return H.read(dir .. "/out"), H.read(dir .. "/err"), tonumber(H.read(dir .. "/rc"))
end

describe("the kfsmtp command", function()
  local srv, store_env
  setup(function() srv = H.start_smtp { mode = "plain" } end)
  teardown(function() srv:stop() end)
  before_each(function() store_env = "KFSMTP_STORE=" .. H.q(H.store_path()) end)

  it("explains itself with --help", function()
    local out, _, rc = run("--help")
    assert.are.equal(0, rc)
    for _, word in ipairs { "get", "update", "test", "--password-file", "Exit status" } do
      assert.truthy(out:find(word, 1, true), word)
    end
  end)

  it("prints the default profile as the API's JSON", function()
    local out, _, rc = run("get", store_env)
    assert.are.equal(0, rc)
    assert.are.same({ Host = "", Id = 1, Port = 25, RelayAuthenticationType = 0, RelayUsername = "",
      SenderAccount = "", SenderAddress = "", SenderName = "", UseSSL = false }, cjson.decode(out))
  end)

  it("updates with a password from a file, and never prints it", function()
    local pwfile = H.tmpdir() .. "/pw"
    H.write(pwfile, SECRET .. "\n")
    local out, err, rc = run(("update --host mail.example.com --port 587 --use-ssl --auth-type 2 --username 'CORP\\svc' --password-file %s --sender-account kf@example.com"):format(H.q(pwfile)), store_env)
    assert.are.equal(0, rc, err)
    local p = cjson.decode(out)
    assert.are.equal("mail.example.com", p.Host)
    assert.are.equal(587, p.Port)
    assert.is_true(p.UseSSL)
    assert.are.equal("CORP\\svc", p.RelayUsername)
    assert.falsy((out .. err):find(SECRET, 1, true))
    -- A later update that changes only the sender name keeps the rest and
    -- the password; one that moves the port must be given the password again.
    out, err, rc = run("update --sender-name 'PKI alerts'", store_env)
    assert.are.equal(0, rc, err)
    assert.are.equal("mail.example.com", cjson.decode(out).Host)
    local path = store_env:match("'(.*)'")
    assert.truthy(H.read(path):find(SECRET, 1, true))
    out, err, rc = run("update --port 2525", store_env)
    assert.are.equal(3, rc, err)
    assert.truthy(err:find("RelayPassword must be entered again: Port", 1, true), err)
    assert.are.equal(587, cjson.decode(H.read(path)).Port, "the refused update changed nothing")
    assert.falsy((out .. err):find(SECRET, 1, true))
  end)

  it("prints version 2's profile, with the OAuth fields and never the secret, on --api-version 2", function()
    local secret = "cli-Client-Secret-51"
    local out, err, rc = run("update --host smtp.office365.com --port 587 --use-ssl --auth-type 3 --client-id app-1 --token-endpoint https://login.example.com/t/token --scope https://outlook.office365.com/.default --sender-account pki@example.com --api-version 2",
      store_env .. " KFSMTP_CLIENT_SECRET=" .. secret)
    assert.are.equal(0, rc, err)
    assert.are.equal("app-1", cjson.decode(out).ClientId.SecretValue)
    out, err, rc = run("get --api-version 2", store_env)
    assert.are.equal(0, rc, err)
    local p = cjson.decode(out)
    assert.are.same({ "app-1", "https://login.example.com/t/token", "https://outlook.office365.com/.default", "" },
      { p.ClientId.SecretValue, p.TokenEndpoint, p.Scope, p.Audience })
    assert.falsy((out .. err):find(secret, 1, true))
    out = run("get", store_env)
    assert.is_nil(cjson.decode(out).ClientId)
    local _, _, bad = run("get --api-version 3", store_env)
    assert.are.equal(2, bad)
  end)

  it("takes the password from the environment", function()
    local _, err, rc = run("update --host mail.example.com --auth-type 2 --username svc --sender-account kf@example.com",
      store_env .. " KFSMTP_RELAY_PASSWORD=" .. SECRET)
    assert.are.equal(0, rc, err)
    local path = store_env:match("'(.*)'")
    assert.truthy(H.read(path):find(SECRET, 1, true))
  end)

  it("refuses a password on the command line", function()
    local out, err, rc = run("update --password " .. SECRET, store_env)
    assert.are.equal(2, rc)
    assert.truthy(err:find("--password-file", 1, true))
    assert.falsy((out .. err):find(SECRET, 1, true))
  end)

  it("runs a test delivery and prints the test response", function()
    local _, err, rc = run(("update --host 127.0.0.1 --port %d --sender-account kf@example.com --sender-name 'KF CLI'"):format(srv.port), store_env)
    assert.are.equal(0, rc, err)
    local before = #srv:messages()
    local out
    out, err, rc = run("test --recipient ops@example.com --transcript", store_env)
    assert.are.equal(0, rc, err)
    local res = cjson.decode(out)
    assert.are.equal("ops@example.com", res.TestRecipient)
    assert.are.equal(srv.port, res.Port)
    assert.truthy(err:find("accepted the test message", 1, true))
    assert.truthy(err:find("C: MAIL FROM:<kf@example.com>", 1, true))
    assert.are.equal(before + 1, #srv:messages())
  end)

  it("takes --auth-mechanism in any letter case, and refuses an unknown one", function()
    local _, err, rc = run(("test --host 127.0.0.1 --port %d --sender-account kf@example.com --recipient ops@example.com --auth-mechanism scram"):format(srv.port), store_env)
    assert.are.equal(2, rc)
    assert.truthy(err:find('--auth-mechanism takes "PLAIN"', 1, true), err)
    _, err, rc = run(("test --host 127.0.0.1 --port %d --sender-account kf@example.com --recipient ops@example.com --auth-mechanism plain --quit-after connect"):format(srv.port), store_env)
    assert.are.equal(0, rc, err)
  end)

  it("exits with 75 (EX_TEMPFAIL) for a refusal for now, and says it is temporary", function()
    local greylisting = H.start_hostile { behaviour = "greylist" }
    finally(function() greylisting:stop() end)
    local out, err, rc = run(("test --host 127.0.0.1 --port %d --sender-account kf@example.com --recipient ops@example.com"):format(greylisting.port), store_env)
    assert.are.equal(75, rc)
    assert.are.equal("0xA05300B0", cjson.decode(out).ErrorCode)
    assert.truthy(err:find("refused for now (temporary) at stage rcpt", 1, true), err)
  end)

  it("exits with the failing stage's status and prints the API's error body", function()
    local out, _, rc = run(("test --host 127.0.0.1 --port %d --sender-account kf@example.com --recipient nobody@example.com"):format(srv.port), store_env)
    assert.are.equal(17, rc)
    local body = cjson.decode(out)
    assert.are.equal("0xA0530072", body.ErrorCode) -- recipient_rejected
    assert.truthy(body.Message:find("nobody@example.com", 1, true))
    _, _, rc = run(("test --host 127.0.0.1 --port %d --sender-account kf@example.com --recipient ops@example.com"):format(H.closed_port()), store_env)
    assert.are.equal(11, rc)
  end)

  it("exits 3 on an invalid field and 4 on a corrupt store", function()
    local out, _, rc = run("update --host 'smtp://mail.example.com' --sender-account kf@example.com", store_env)
    assert.are.equal(3, rc)
    assert.are.equal("0xA0530001", cjson.decode(out).ErrorCode)
    local path = store_env:match("'(.*)'")
    H.write(path, "{not json")
    out, _, rc = run("get", store_env)
    assert.are.equal(4, rc)
    assert.are.equal("0xA05300F0", cjson.decode(out).ErrorCode)
  end)

  it("rejects unknown options with a pointer to --help", function()
    local _, err, rc = run("get --colour blue", store_env)
    assert.are.equal(2, rc)
    assert.truthy(err:find("--help", 1, true))
  end)
end)
