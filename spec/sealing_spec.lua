-- Secrets at rest: a key file (bin/kfsmtp keygen), RelayPassword and
-- ClientSecret sealed in the store with AES-256-GCM, opened only for a
-- test, bound to their field, kept as they are by updates that do not
-- enter them again, and re-encrypted by bin/kfsmtp rekey. A capture relay
-- with AUTH checks that the opened password is the one entered.
local kfsmtp = require "kfsmtp"
local core = require "kfsmtp.core"
local cjson = require "cjson"
local H = require "helpers"

local USER = "svc-sealed"
local PASSWORD = "Sealed-Pw-" .. tostring(os.time())

-- run(args [, env]) --> stdout, stderr, exit status of bin/kfsmtp.
local function run(args, env)
  local dir = H.tmpdir()
  H.exec(("%s %s bin/kfsmtp %s > %s/out 2> %s/err; echo $? > %s/rc"):format(
    env or "", H.lua_run, args, dir, dir, dir))
  return H.read(dir .. "/out"), H.read(dir .. "/err"), tonumber(H.read(dir .. "/rc"))
end

local function mode_of(path)
  return (H.sh("stat -c %a " .. H.q(path)):gsub("%s+$", ""))
end

-- A new key file in a new folder --> path, key id.
local function new_key()
  local path = H.tmpdir() .. "/smtp.key"
  return path, assert(core.key_generate { path = path })
end

local function stored(path)
  return cjson.decode(H.read(path))
end

describe("secrets sealed at rest", function()
  local relay, attacker
  setup(function()
    assert.is_nil(os.getenv("KFSMTP_KEY_FILE"), "run the specs without KFSMTP_KEY_FILE set")
    relay = H.start_smtp { mode = "starttls", auth = USER .. ":" .. PASSWORD }
    attacker = H.start_smtp { mode = "starttls", auth = USER .. ":anything" }
  end)
  teardown(function() relay:stop() attacker:stop() end)

  local store
  before_each(function() store = kfsmtp.open(H.store_path()) end)

  local function profile(over)
    return H.with({ Host = "localhost", Port = relay.port, UseSSL = true, RelayAuthenticationType = 2,
      RelayUsername = USER, RelayPassword = PASSWORD, SenderAccount = "kf@example.com", SenderName = "KF" }, over)
  end

  local function test_req(over)
    return H.with(profile { RelayPassword = H.NONE, TestRecipient = "ops@example.com" }, over)
  end

  local function opts(key_file, extra)
    return H.with({ key_file = key_file, ca_file = H.certs().ca }, extra)
  end

  describe("the key file", function()
    it("keygen writes one line with the key id, mode 0600 whatever the umask, and never over a file", function()
      local dir = H.tmpdir()
      local path = dir .. "/new.key"
      local out, err, rc = run("keygen " .. H.q(path), "umask 000;")
      assert.are.equal(0, rc, err)
      local id = cjson.decode(out).key_id
      assert.truthy(id:match("^%x+$") and #id == 16, out)
      assert.are.equal("600", mode_of(path))
      local text = H.read(path)
      assert.truthy(text:match("^kfsmtp%-key%-v1 " .. id .. " [%w+/]+=\n$"), "one line: magic, id, base64 key")
      assert.are.equal(id, core.key_id { key_file = path })

      out, err, rc = run("keygen " .. H.q(path))
      assert.are.same({ 2, "" }, { rc, out })
      assert.truthy(err:find("already exists", 1, true) and err:find(path, 1, true), err)
      assert.are.equal(text, H.read(path), "the key is untouched")
      -- Nor through a link planted where the key should go.
      H.exec(("ln -s %s %s"):format(H.q(dir .. "/elsewhere"), H.q(dir .. "/link.key")))
      out, err, rc = run("keygen " .. H.q(dir .. "/link.key"))
      assert.are.same({ 2, "" }, { rc, out })
      assert.is_false(H.exists(dir .. "/elsewhere"), err)
    end)

    it("is refused when group or others may read it, another user owns it, or it is a link", function()
      local path = new_key()
      local dir = path:match("^(.*)/")
      for _, case in ipairs {
        { "chmod 0644", "permissions", "chmod 600" },
        { "chmod 0640", "permissions", "chmod 600" },
        { "chmod 0600 %s && chown 65534", "owner", "chown" },
      } do
        H.exec(("chmod 0600 %s && chown 0 %s && "):format(H.q(path), H.q(path)) .. case[1]:format(H.q(path)) .. " " .. H.q(path))
        local id, why, kind = core.key_id { key_file = path }
        assert.is_nil(id)
        assert.are.equal(case[2], kind)
        assert.truthy(why:find(path, 1, true) and why:find(case[3], 1, true), why)
        -- The update that would seal with it fails, naming the fix, and
        -- leaves the store as it was.
        local before = H.read(store.path)
        local p, err = store:update(profile(), opts(path))
        assert.is_nil(p)
        assert.are.same({ 502, "secret", "RelayPassword" }, { err.status, err.stage, err.field })
        assert.truthy(err.Message:find("could not be sealed", 1, true), err.Message)
        assert.are.equal(before, H.read(store.path))
      end
      H.exec(("chown 0 %s && chmod 0600 %s && ln -s %s %s"):format(H.q(path), H.q(path), H.q(path), H.q(dir .. "/link.key")))
      local id, why, kind = core.key_id { key_file = dir .. "/link.key" }
      assert.is_nil(id)
      assert.are.equal("link", kind)
      assert.truthy(why:find("symbolic link", 1, true) and why:find(dir .. "/link.key", 1, true), why)
      H.exec("mkfifo " .. H.q(dir .. "/fifo.key"))
      assert.are.equal("not_regular", select(3, core.key_id { key_file = dir .. "/fifo.key" }))
      H.write(dir .. "/short.key", "kfsmtp-key-v1 0123456789abcdef AAAA\n")
      H.exec("chmod 0600 " .. H.q(dir .. "/short.key"))
      assert.are.equal("malformed", select(3, core.key_id { key_file = dir .. "/short.key" }))
      -- An edited id no longer matches its key.
      H.write(dir .. "/edited.key", (H.read(path):gsub("^(kfsmtp%-key%-v1 )%x", "%1" .. "g")))
      H.exec("chmod 0600 " .. H.q(dir .. "/edited.key"))
      assert.are.equal("malformed", select(3, core.key_id { key_file = dir .. "/edited.key" }))
    end)
  end)

  describe("the store", function()
    it("never holds the secret, nor a length: 3 and 300 bytes seal to the same length", function()
      local key, id = new_key()
      local short, long = "x7Q", ("L"):rep(290) .. "0123456789"
      local lengths = {}
      for _, pw in ipairs { short, long } do
        assert(store:update(profile { RelayPassword = pw }, opts(key)))
        local text = H.read(store.path)
        for _, form in ipairs { pw, core.base64(pw), core.url_escape(pw) } do
          assert.falsy(text:find(form, 1, true), "the store shows the secret")
        end
        local rp = stored(store.path).RelayPassword
        assert.are.same({ "Cipher", "KeyId", "Sealed" }, H.keys(rp))
        assert.are.same({ "AES-256-GCM", id }, { rp.Cipher, rp.KeyId })
        lengths[#lengths + 1] = #rp.Sealed
      end
      assert.are.equal(lengths[1], lengths[2])
      -- 12 bytes of nonce, 512 of padded text, 16 of tag, in base64.
      assert.are.equal(720, lengths[1])
    end)

    it("seals a client secret too, never a reference, and shows neither", function()
      local key = new_key()
      local p = assert(store:update({ Host = "smtp.example.com", Port = 587, UseSSL = true, RelayAuthenticationType = 3,
        ClientId = "app", ClientSecret = "client-Secret-77", TokenEndpoint = "https://login.example.com/token",
        Scope = "smtp", SenderAccount = "kf@example.com" }, opts(key, { api_version = 2 })))
      assert.are.equal(cjson.null, p.ClientSecret.SecretValue)
      assert.truthy(stored(store.path).ClientSecret.Sealed)
      assert.falsy(H.read(store.path):find("client-Secret-77", 1, true))
      local dir = H.tmpdir()
      local providers = { [1] = { type = "file", dir = dir } }
      assert(store:update(profile { RelayPassword = { Provider = 1, Parameters = { Path = "pw" } } },
        opts(key, { api_version = 2, secret_providers = providers })))
      assert.are.same({ Provider = 1, Parameters = { Path = "pw" } }, stored(store.path).RelayPassword)
    end)

    it("stores a secret entered without a key as before, and seals it at the next update with one", function()
      assert(store:update(profile()))
      assert.are.equal(PASSWORD, stored(store.path).RelayPassword)
      local key, id = new_key()
      assert(store:update(profile { RelayPassword = H.NONE, SenderName = "Sealed now" }, opts(key)))
      assert.are.equal(id, stored(store.path).RelayPassword.KeyId)
      assert.falsy(H.read(store.path):find(PASSWORD, 1, true))
    end)

    it("takes no sealed form from a request", function()
      local key = new_key()
      assert(store:update(profile(), opts(key)))
      local sealed = stored(store.path).RelayPassword
      local before = H.read(store.path)
      local p, err = store:update(profile { Host = "127.0.0.1", RelayPassword = sealed }, opts(key, { api_version = 2 }))
      assert.is_nil(p)
      assert.are.same({ 400, "RelayPassword" }, { err.status, err.field })
      assert.truthy(err.Message:find("RelayPassword.Sealed", 1, true), err.Message)
      assert.are.equal(before, H.read(store.path))
    end)
  end)

  describe("a test", function()
    it("logs in to the relay with the stored sealed password", function()
      local key = new_key()
      assert(store:update(profile(), opts(key)))
      assert.truthy(stored(store.path).RelayPassword.Sealed)
      local before = #relay:messages()
      local res, info = store:test(test_req(), opts(key, { transcript = true }))
      assert.truthy(res, info and info.Message)
      assert.are.equal(before + 1, #relay:messages())
      assert.are.equal(USER, relay:messages()[before + 1].meta.auth_login)
      assert.falsy(kfsmtp.json.encode(info):find(PASSWORD, 1, true))
      -- And the key from KFSMTP_KEY_FILE, through the CLI.
      local _, err, rc = run(("test --recipient ops@example.com --ca-file %s --store %s"):format(
        H.q(H.certs().ca), H.q(store.path)), "KFSMTP_KEY_FILE=" .. H.q(key))
      assert.are.equal(0, rc, err)
      assert.are.equal(before + 2, #relay:messages())
    end)

    it("fails at stage secret with a missing or a wrong key, naming the key id, and changes nothing", function()
      local key, id = new_key()
      local other, other_id = new_key()
      assert(store:update(profile(), opts(key)))
      local before, sent = H.read(store.path), relay:commands()
      for _, case in ipairs { { nil, "no key file is configured" }, { other, "is key " .. other_id } } do
        local res, err = store:test(test_req(), opts(case[1]))
        assert.is_nil(res)
        assert.are.same({ 502, "secret", "0xA05300C0", "RelayPassword" }, { err.status, err.stage, err.ErrorCode, err.field })
        assert.truthy(err.Message:find("sealed with key " .. id, 1, true), err.Message)
        assert.truthy(err.Message:find(case[2], 1, true), err.Message)
        assert.truthy(err.Message:find("KFSMTP_KEY_FILE", 1, true) and err.Message:find("enter RelayPassword again", 1, true), err.Message)
        assert.falsy(err.Message:find(PASSWORD, 1, true))
        assert.are.equal(before, H.read(store.path), "the store is byte for byte the same")
      end
      assert.are.equal(sent, relay:commands(), "nothing reached the relay")
      -- The CLI exits with stage secret's status and tells the operator
      -- which key file it read.
      local _, err, rc = run(("test --recipient ops@example.com --store %s --key-file %s"):format(H.q(store.path), H.q(other)))
      assert.are.equal(20, rc)
      assert.truthy(err:find(other, 1, true) and err:find(id, 1, true), err)
    end)

    it("keeps the sealed password through an update that leaves it out, with no key", function()
      local key = new_key()
      assert(store:update(profile(), opts(key)))
      local sealed = stored(store.path).RelayPassword
      assert.truthy(sealed.Sealed)
      assert(store:update(profile { RelayPassword = H.NONE, SenderName = "Renamed" }, opts(nil)))
      assert.are.same(sealed, stored(store.path).RelayPassword)
      assert.are.equal("Renamed", stored(store.path).SenderName)
      -- With another key too: it seals only what is entered.
      local other = new_key()
      assert(store:update(profile { RelayPassword = H.NONE, SenderName = "Again" }, opts(other)))
      assert.are.same(sealed, stored(store.path).RelayPassword)
      assert(store:test(test_req(), opts(key)))
    end)

    it("does not open a sealed value moved to another field", function()
      local key = new_key()
      assert(store:update(profile(), opts(key)))
      local doc = stored(store.path)
      doc.RelayAuthenticationType, doc.ClientSecret, doc.RelayPassword = 3, doc.RelayPassword, nil
      doc.ClientId, doc.TokenEndpoint, doc.Scope = "app", "http://127.0.0.1:" .. H.closed_port() .. "/token", "smtp"
      H.write(store.path, cjson.encode(doc))
      local res, err = store:test(H.with(test_req { RelayAuthenticationType = 3 }, { RelayUsername = H.NONE }), opts(key))
      assert.is_nil(res)
      assert.are.same({ "secret", "ClientSecret" }, { err.stage, err.field })
      assert.truthy(err.Message:find("does not open with that key here", 1, true), err.Message)
    end)

    it("still sends a stored sealed password only where it was entered", function()
      local key = new_key()
      assert(store:update(profile(), opts(key)))
      assert.truthy(stored(store.path).RelayPassword.Sealed)
      local res, err = store:test(test_req { Port = attacker.port }, opts(key))
      assert.is_nil(res)
      assert.are.same({ 400, "RelayPassword" }, { err.status, err.field })
      assert.truthy(err.Message:find("must be entered again: Port differs", 1, true), err.Message)
      res, err = store:test(test_req { Host = "127.0.0.1", Port = attacker.port }, opts(key))
      assert.is_nil(res)
      assert.truthy(err.Message:find("must be entered again: Host differs", 1, true), err.Message)
      assert.are.equal("", attacker:commands(), "the attacker's server saw a connection")
      -- An update that moves it away refuses the same way.
      local p
      p, err = store:update(profile { Host = "127.0.0.1", RelayPassword = H.NONE }, opts(nil))
      assert.is_nil(p)
      assert.truthy(err.Message:find("RelayPassword must be entered again", 1, true), err.Message)
    end)
  end)

  describe("rekey", function()
    it("re-encrypts every sealed secret with the new key, under the lock", function()
      local old, old_id = new_key()
      local new, new_id = new_key()
      assert(store:update(profile(), opts(old)))
      local out, err, rc = run(("rekey --key-file %s --new-key-file %s --store %s"):format(H.q(old), H.q(new), H.q(store.path)))
      assert.are.equal(0, rc, err)
      assert.are.same({ { field = "RelayPassword", from = old_id, to = new_id } }, cjson.decode(out).resealed)
      assert.truthy(err:find("RelayPassword re-encrypted from key " .. old_id .. " to key " .. new_id, 1, true), err)
      assert.falsy((out .. err):find(PASSWORD, 1, true))
      local rp = stored(store.path).RelayPassword
      assert.are.equal(new_id, rp.KeyId)
      assert.falsy(H.read(store.path):find(PASSWORD, 1, true))
      assert.is_nil(core.unseal { key_file = old, sealed = rp.Sealed, aad = "kfsmtp/1/RelayPassword" })
      local res, info = store:test(test_req(), opts(old))
      assert.is_nil(res)
      assert.are.equal("secret", info.stage)
      res, info = store:test(test_req(), opts(new))
      assert.truthy(res, info and info.Message)
      -- Again: nothing left to do, nothing written.
      local before = H.read(store.path)
      out, err, rc = run(("rekey --key-file %s --new-key-file %s --store %s"):format(H.q(old), H.q(new), H.q(store.path)))
      assert.are.equal(0, rc, err)
      assert.are.same({ "RelayPassword" }, cjson.decode(out).kept)
      assert.are.equal(before, H.read(store.path))
    end)

    it("refuses with the wrong old key and writes nothing", function()
      local old, old_id = new_key()
      local wrong = new_key()
      local new = new_key()
      assert(store:update(profile(), opts(old)))
      local before = H.read(store.path)
      local out, err, rc = run(("rekey --key-file %s --new-key-file %s --store %s"):format(H.q(wrong), H.q(new), H.q(store.path)))
      assert.are.equal(20, rc)
      assert.truthy(cjson.decode(out).Message:find("sealed with key " .. old_id .. " and does not open with the old key", 1, true), out)
      assert.truthy(err:find(wrong, 1, true), err)
      assert.are.equal(before, H.read(store.path))
      out, err, rc = run(("rekey --new-key-file %s --store %s"):format(H.q(new), H.q(store.path)))
      assert.are.equal(20, rc, err)
      assert.truthy(cjson.decode(out).Message:find("no key file is configured", 1, true), out)
      assert.are.equal(before, H.read(store.path))
    end)

    it("seals a secret stored unencrypted", function()
      local new, new_id = new_key()
      assert(store:update(profile()))
      local out, err, rc = run(("rekey --new-key-file %s --store %s"):format(H.q(new), H.q(store.path)))
      assert.are.equal(0, rc, err)
      assert.are.same({ { field = "RelayPassword", from = cjson.null, to = new_id } }, cjson.decode(out).resealed)
      assert.are.equal(new_id, stored(store.path).RelayPassword.KeyId)
      assert(store:test(test_req(), opts(new)))
    end)
  end)
end)
