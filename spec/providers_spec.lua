-- Secret references (version 2's {"Provider", "Parameters"}) through the
-- providers an operator configures: a "file" inside a folder, an "env"
-- variable from a list. A caller who may change the profile names a
-- provider and a place in it, never anything the operator did not allow,
-- and never sees the secret. Real SMTP capture servers with AUTH check
-- that the right secret was sent; the attacker's server that nothing was.
local kfsmtp = require "kfsmtp"
local cjson = require "cjson"
local H = require "helpers"

local USER = "svc-ref"
local FILE_SECRET = "File-Provider-Pw-" .. tostring(os.time())
-- The env provider reads this process's environment, which a spec cannot
-- change: HOME is there wherever busted runs.
local ENV_NAME = "HOME"
local ENV_SECRET = assert(os.getenv(ENV_NAME), "HOME must be set")

local dir, providers

local function provider_opts(extra)
  local o = { api_version = 2, secret_providers = providers, ca_file = H.certs().ca }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function ref(provider, parameters)
  return { Provider = provider, Parameters = parameters }
end

-- Each output of a call, as text, to look for a secret in.
local function all_text(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    parts[#parts + 1] = type(v) == "table" and kfsmtp.json.encode(setmetatable(v, nil)) or tostring(v)
  end
  return table.concat(parts, "\n")
end

local function never_shows(secret, ...)
  assert.falsy(all_text(...):find(secret, 1, true), "the secret appears in the output")
end

describe("secret providers", function()
  local relay_file, relay_env, attacker
  setup(function()
    dir = H.tmpdir()
    H.sh("mkdir -p " .. H.q(dir .. "/secrets/smtp") .. " && chmod 0700 " .. H.q(dir .. "/secrets"))
    H.write(dir .. "/secrets/smtp/password", FILE_SECRET .. "\n")
    H.sh("chmod 0600 " .. H.q(dir .. "/secrets/smtp/password"))
    providers = {
      [1] = { type = "file", dir = dir .. "/secrets" },
      [2] = { type = "env", names = { ENV_NAME, "KFSMTP_UNSET_FOR_SPECS" } },
    }
    relay_file = H.start_smtp { mode = "starttls", auth = USER .. ":" .. FILE_SECRET }
    relay_env = H.start_smtp { mode = "starttls", auth = USER .. ":" .. ENV_SECRET }
    attacker = H.start_smtp { mode = "plain", auth = USER .. ":anything", auth_plaintext = true }
  end)
  teardown(function() relay_file:stop() relay_env:stop() attacker:stop() end)

  local store
  before_each(function() store = kfsmtp.open(H.store_path()) end)

  local function profile(relay, password, over)
    local t = { Host = "localhost", Port = relay.port, UseSSL = true, RelayAuthenticationType = 2,
      RelayUsername = { SecretValue = USER }, RelayPassword = password,
      SenderAccount = "kf@example.com", SenderName = "KF" }
    for k, v in pairs(over or {}) do t[k] = v end
    return t
  end

  local function test_of(p)
    p = H.with(p, { TestRecipient = "ops@example.com" })
    return p
  end

  describe("configured by the operator", function()
    it("raises on a bad configuration, naming the provider", function()
      for _, bad in ipairs {
        { { [0] = { type = "file", dir = "/run/secrets" } }, "ids must be whole numbers" },
        { { [1] = { type = "file", dir = "relative" } }, "dir must be an absolute folder path" },
        { { [1] = { type = "env", names = {} } }, "names must list" },
        { { [1] = { type = "env", names = { "NOT A NAME" } } }, "is not an environment variable name" },
        { { [1] = { type = "vault" } }, "type must be \"file\" or \"env\"" },
        { { [1] = { type = "file", dir = "/x", names = { "A" }, extra = 1 } }, "unknown key" },
      } do
        assert.has_error(function() kfsmtp.configure { secret_providers = bad[1] } end)
        local ok, why = pcall(store.update, store, {}, { secret_providers = bad[1] })
        assert.is_false(ok)
        assert.truthy(tostring(why):find(bad[2], 1, true), tostring(why))
      end
    end)
  end)

  describe("a reference in a request", function()
    local function refused(password, needle)
      local before = H.read(store.path)
      local p, err = store:update(profile(relay_file, password), provider_opts())
      assert.is_nil(p)
      assert.are.same({ 400, "validate", "RelayPassword" }, { err.status, err.stage, err.field }, err.Message)
      assert.truthy(err.Message:find(needle, 1, true), err.Message)
      assert.are.equal(before, H.read(store.path), "the store is unchanged")
      return err
    end

    it("must name a configured provider", function()
      local err = refused(ref(9, { Path = "smtp/password" }), "RelayPassword.Provider 9 is not a secret provider")
      assert.truthy(err.Message:find("1 (file), 2 (env)", 1, true), err.Message)
      local p, err2 = store:update(profile(relay_file, ref(1, { Path = "smtp/password" })), { api_version = 2 })
      assert.is_nil(p)
      assert.truthy(err2.Message:find("has none configured", 1, true), err2.Message)
    end)

    it("must give the provider's one parameter", function()
      refused(ref(1, {}), "RelayPassword.Parameters.Path is required")
      refused(ref(1, { Name = "HOME" }), "RelayPassword.Parameters.Name is not a parameter of provider 1 (file)")
      refused(ref(2, { Path = "x" }), "RelayPassword.Parameters.Path is not a parameter of provider 2 (env)")
    end)

    it("may not point a file provider outside its folder", function()
      for _, path in ipairs { "../secrets-other/x", "smtp/../../etc/shadow", "/etc/shadow", dir .. "/secrets-evil/x",
          "./password", "smtp//password" } do
        refused(ref(1, { Path = path }), "RelayPassword.Parameters.Path")
      end
    end)

    it("may not name a variable the operator did not list", function()
      for _, name in ipairs { "PATH", "KFSMTP_RELAY_PASSWORD", "home" } do
        refused(ref(2, { Name = name }), "is not a variable provider 2 may read")
      end
    end)

    it("is checked for ClientSecret and the names too", function()
      local _, err = store:update({ Host = "smtp.example.com", Port = 587, UseSSL = true, RelayAuthenticationType = 3,
        SenderAccount = "kf@example.com", ClientId = ref(2, { Name = "PATH" }), ClientSecret = ref(1, { Path = "/etc/shadow" }),
        TokenEndpoint = "https://login.example.com/token", Scope = "s" }, provider_opts())
      assert.are.equal(400, err.status)
      assert.truthy(err.field == "ClientId" or err.field == "ClientSecret", err.field)
    end)
  end)

  describe("a stored reference", function()
    it("is stored as the reference, shown as one, and resolved at test time (file)", function()
      local p = assert(store:update(profile(relay_file, ref(1, { path = "smtp/password" })), provider_opts()))
      assert.are.same({ SecretValue = cjson.null, Parameters = { Path = "smtp/password" }, Provider = 1 }, p.RelayPassword)
      local text = H.read(store.path)
      assert.falsy(text:find(FILE_SECRET, 1, true), "the store holds the reference, not the secret")
      assert.truthy(text:find('"Provider": 1', 1, true), text)
      -- An absolute path inside the folder is kept relative to it.
      p = assert(store:update(profile(relay_file, ref(1, { Path = dir .. "/secrets/smtp/password" })), provider_opts()))
      assert.are.equal("smtp/password", p.RelayPassword.Parameters.Path)
      -- A form that loaded the profile sends RelayPassword as GET shows it.
      local res, info = store:test(test_of(profile(relay_file, store:get({ api_version = 2 }).RelayPassword)),
        provider_opts { transcript = true })
      assert.is_nil(info.Message, info.Message)
      assert.are.equal(USER, relay_file:messages()[#relay_file:messages()].meta.auth_login)
      never_shows(FILE_SECRET, res, info, p, store:get(), store:get { api_version = 2 })
    end)

    it("is resolved at test time (env), for the user name too", function()
      assert(store:update(profile(relay_env, ref(2, { Name = ENV_NAME }), { RelayUsername = { SecretValue = USER } }),
        provider_opts()))
      local before = #relay_env:messages()
      local res, info = store:test(test_of(profile(relay_env, nil)), provider_opts { transcript = true })
      assert.is_nil(info.Message, info.Message)
      assert.are.equal(before + 1, #relay_env:messages())
      never_shows(ENV_SECRET, res, info)
      -- A reference given in the test itself.
      local _, info2 = store:test(test_of(profile(relay_env, ref(2, { Name = ENV_NAME }))), provider_opts())
      assert.is_nil(info2.Message, info2.Message)
    end)

    local function fails_at_secret(password_ref, needle, setup_fn)
      assert(store:update(profile(relay_file, password_ref), provider_opts()))
      if setup_fn then setup_fn() end
      local before = relay_file:commands()
      local res, err = store:test(test_of(profile(relay_file, nil)), provider_opts { transcript = true })
      assert.is_nil(res)
      assert.are.same({ 502, "secret", "RelayPassword", "0xA05300C0" }, { err.status, err.stage, err.field, err.ErrorCode })
      assert.truthy(err.Message:find("provider 1, file, Path", 1, true), err.Message)
      assert.truthy(err.Message:find(needle, 1, true), err.Message)
      assert.truthy(err.Message:find("Nothing was sent to the SMTP server", 1, true), err.Message)
      assert.falsy(err.Message:find(dir, 1, true), "the provider's folder is the operator's business")
      assert.are.equal(before, relay_file:commands(), "nothing reached the relay")
      return err
    end

    it("whose file is missing at test time fails at stage secret, naming provider and path", function()
      fails_at_secret(ref(1, { Path = "smtp/not-yet" }), "smtp/not-yet")
    end)

    it("whose file others may read fails at stage secret, never quoting it", function()
      local path = dir .. "/secrets/smtp/open"
      H.write(path, "Open-File-Secret-77\n")
      H.sh("chmod 0644 " .. H.q(path))
      local err = fails_at_secret(ref(1, { Path = "smtp/open" }), "chmod o-rwx")
      never_shows("Open-File-Secret-77", err)
    end)

    it("whose file a link takes outside the folder fails at stage secret", function()
      local outside = H.tmpdir() .. "/elsewhere"
      H.write(outside, "Outside-Secret-5\n")
      H.sh("chmod 0600 " .. H.q(outside) .. " && ln -sf " .. H.q(outside) .. " " .. H.q(dir .. "/secrets/smtp/link"))
      local err = fails_at_secret(ref(1, { Path = "smtp/link" }), "smtp/link")
      never_shows("Outside-Secret-5", err)
    end)

    it("whose variable is unset fails at stage secret", function()
      assert(store:update(profile(relay_env, ref(2, { Name = "KFSMTP_UNSET_FOR_SPECS" })), provider_opts()))
      local _, err = store:test(test_of(profile(relay_env, nil)), provider_opts())
      assert.are.same({ "secret", "RelayPassword" }, { err.stage, err.field })
      assert.truthy(err.Message:find('provider 2, env, Name "KFSMTP_UNSET_FOR_SPECS"', 1, true), err.Message)
    end)

    it("whose provider the operator removed fails at stage secret", function()
      assert(store:update(profile(relay_file, ref(1, { Path = "smtp/password" })), provider_opts()))
      local _, err = store:test(test_of(profile(relay_file, nil)), { api_version = 2, secret_providers = { [2] = providers[2] },
        ca_file = H.certs().ca })
      assert.are.same({ "secret", "RelayPassword" }, { err.stage, err.field })
      assert.truthy(err.Message:find("no such provider is configured now", 1, true), err.Message)
    end)

    it("is used only where it was entered, like a stored password", function()
      assert(store:update(profile(relay_file, ref(1, { Path = "smtp/password" })), provider_opts()))
      for _, over in ipairs {
        { Host = "127.0.0.1", Port = attacker.port, UseSSL = false },
        { Port = attacker.port },
        { RelayUsername = { SecretValue = "someone-else" } },
        { UseSSL = false },
      } do
        local _, err = store:test(test_of(profile(relay_file, nil, over)), provider_opts())
        assert.are.same({ 400, "RelayPassword" }, { err.status, err.field })
        assert.truthy(err.Message:find("RelayPassword must be entered again", 1, true), err.Message)
      end
      local p, err = store:update(profile(relay_file, nil, { Host = "127.0.0.1", Port = attacker.port, UseSSL = false }),
        provider_opts())
      assert.is_nil(p)
      assert.are.equal("RelayPassword", err.field)
      assert.are.equal("", attacker:commands(), "the attacker's server saw a connection")
    end)
  end)

  it("masks whatever a provider gave, a user name too, when a server echoes it", function()
    -- A caller points RelayUsername at a secret the provider holds; the
    -- server quotes the login it refused.
    local echo = H.start_hostile { behaviour = "echo_auth", mechs = "LOGIN" }
    finally(function() echo:stop() end)
    local _, err = store:test({ Host = "127.0.0.1", Port = echo.port, RelayAuthenticationType = 2,
      RelayUsername = ref(1, { Path = "smtp/password" }), RelayPassword = { SecretValue = "not-secret-pw" },
      SenderAccount = "kf@example.com", SenderName = "", TestRecipient = "ops@example.com" },
      provider_opts { transcript = true })
    assert.are.equal("auth", err.stage, err.Message)
    assert.truthy(all_text(err):find("***", 1, true), err.smtp_reply)
    never_shows(FILE_SECRET, err, tostring(err))
    never_shows(require("kfsmtp.core").base64(FILE_SECRET), err)
  end)

  describe("with hosts", function()
    it("gives its secrets to the listed SMTP hosts only, at entry and at test time", function()
      local with_hosts = { [1] = providers[1], [3] = { type = "file", dir = dir .. "/secrets", hosts = { "LOCALHOST." } } }
      local opts = provider_opts { secret_providers = with_hosts }
      assert(store:update(profile(relay_file, ref(3, { Path = "smtp/password" })), opts))
      local _, info = store:test(test_of(profile(relay_file, nil)), opts)
      assert.is_nil(info.Message, info.Message)
      -- Entered for another host: refused before anything is stored or sent.
      for _, call in ipairs { store.update, store.test } do
        local p, err = call(store, test_of(profile(attacker, ref(3, { Path = "smtp/password" }),
          { Host = "127.0.0.1", UseSSL = false })), opts)
        assert.is_nil(p)
        assert.are.same({ 400, "RelayPassword" }, { err.status, err.field })
        assert.truthy(err.Message:find('"127.0.0.1" is not one', 1, true), err.Message)
      end
      assert.are.equal("", attacker:commands(), "the attacker's server saw a connection")
      -- The operator narrows the list later: the stored reference is refused when read.
      with_hosts[3] = { type = "file", dir = dir .. "/secrets", hosts = { "mail.example.com" } }
      local _, err = store:test(test_of(profile(relay_file, nil)), provider_opts { secret_providers = with_hosts })
      assert.are.same({ "secret", "RelayPassword" }, { err.stage, err.field })
      assert.has_error(function() kfsmtp.configure { secret_providers = { [1] = { type = "env", names = { "A" }, hosts = {} } } } end)
      -- A client secret goes to the token endpoint: its host is the one checked.
      local oauth = { Host = "localhost", Port = relay_file.port, UseSSL = true, RelayAuthenticationType = 3,
        SenderAccount = "kf@example.com", ClientId = "app", Scope = "s", ClientSecret = ref(3, { Path = "smtp/password" }) }
      with_hosts[3] = { type = "file", dir = dir .. "/secrets", hosts = { "localhost" } }
      assert(store:update(H.with(oauth, { TokenEndpoint = "https://localhost:1/token" }), opts))
      local p
      p, err = store:update(H.with(oauth, { TokenEndpoint = "https://127.0.0.1:1/token" }), opts)
      assert.is_nil(p)
      assert.are.same({ 400, "ClientSecret" }, { err.status, err.field })
      assert.truthy(err.Message:find('"127.0.0.1" is not one', 1, true), err.Message)
    end)
  end)

  describe("on the command line", function()
    -- run(args, env) --> stdout, stderr, exit status
    local function run(args, env)
      local out_dir = H.tmpdir()
      H.exec(("%s %s bin/kfsmtp %s > %s/out 2> %s/err; echo $? > %s/rc"):format(env, H.lua_run, args,
        out_dir, out_dir, out_dir))
      return H.read(out_dir .. "/out"), H.read(out_dir .. "/err"), tonumber(H.read(out_dir .. "/rc"))
    end
    local function env_for(path)
      return ("KFSMTP_STORE=%s KFSMTP_SECRET_PROVIDERS=%s"):format(H.q(path), H.q(cjson.encode {
        ["1"] = { type = "file", dir = dir .. "/secrets" }, ["2"] = { type = "env", names = { "KFSMTP_CLI_SECRET" } } }))
    end
    local flags = " --api-version 2 --host localhost --use-ssl --auth-type 2 --username " .. USER ..
      " --sender-account kf@example.com --ca-file " .. H.q(H.certs().ca)

    it("stores and uses a reference given with --password-ref, reading providers from KFSMTP_SECRET_PROVIDERS", function()
      local env = env_for(H.store_path())
      local out, err, rc = run("update --port " .. relay_file.port .. flags .. " --password-ref 1:smtp/password", env)
      assert.are.equal(0, rc, err)
      assert.are.same({ Path = "smtp/password" }, cjson.decode(out).RelayPassword.Parameters)
      out, err, rc = run("test --recipient ops@example.com --api-version 2 --ca-file " .. H.q(H.certs().ca), env)
      assert.are.equal(0, rc, err)
      never_shows(FILE_SECRET, out, err)
      -- The env provider, with the variable set for this one command.
      out, err, rc = run("test --recipient ops@example.com --port " .. relay_env.port .. flags ..
        " --password-ref 2:KFSMTP_CLI_SECRET", env .. " KFSMTP_CLI_SECRET=" .. H.q(ENV_SECRET))
      assert.are.equal(0, rc, err)
      never_shows(ENV_SECRET, out, err)
    end)

    it("exits with stage secret's status for an unreadable reference, and 2 for misuse", function()
      local env = env_for(H.store_path())
      local _, err, rc = run("test --recipient ops@example.com --port " .. relay_file.port .. flags ..
        " --password-ref 1:smtp/absent", env)
      assert.are.equal(require("kfsmtp.cli").EXIT.secret, rc, err)
      assert.truthy(err:find("at stage secret", 1, true), err)
      _, err, rc = run("update --port " .. relay_file.port .. flags .. " --password-ref 1:/etc/shadow", env)
      assert.are.equal(3, rc, err)
      _, err, rc = run("update --password-ref 1:x", env)
      assert.are.equal(2, rc, err)
      assert.truthy(err:find("needs --api-version 2", 1, true), err)
      _, err, rc = run("get", "KFSMTP_SECRET_PROVIDERS='{\"1\": {\"type\": \"vault\"}}'")
      assert.are.equal(2, rc, err)
      assert.truthy(err:find("KFSMTP_SECRET_PROVIDERS", 1, true), err)
    end)
  end)
end)
