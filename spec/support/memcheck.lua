-- Exercised under valgrind by spec/memcheck_spec.lua: every C path of the
-- core (validation, composition, store, successful and failed deliveries,
-- STARTTLS, OAuth token fetches good, refused and with extra headers,
-- secret files read and refused, key files and sealed values made, read
-- and refused, a sealed password stored and opened for a test) a few
-- times, so a leak per call would show as definitely lost.
-- usage: lua5.4 memcheck.lua STORE_PATH PORT CLOSED_PORT OAUTH_PORT TOKEN_URL CA_FILE
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local kfsmtp = require "kfsmtp"
local path, port, closed = arg[1], tonumber(arg[2]), tonumber(arg[3])
local oauth_port, token_url, ca_file = tonumber(arg[4]), arg[5], arg[6]
local store = kfsmtp.open(path)
local core = require "kfsmtp.core"
local secrets = path:match("^(.*)/[^/]*$")
assert(core.store_write(secrets .. "/secret", "s3cret\r\n"))
for i = 1, 3 do
  assert(store:update { Host = "127.0.0.1", Port = port, SenderAccount = "kf@example.com",
    SenderName = "Zertifikatsstelle Köln " .. i, RelayAuthenticationType = 2, RelayUsername = "u", RelayPassword = "p" })
  assert(store:get())
  assert(not store:update { Host = "smtp://bad", SenderAccount = "kf@example.com" })
  local req = { Host = "127.0.0.1", Port = port, SenderAccount = "kf@example.com",
    SenderName = "Zertifikatsstelle Köln", TestRecipient = "ops@example.com" }
  assert(store:test(req, { transcript = true }))
  for _, stage in ipairs { "connect", "tls", "auth", "rcpt" } do
    assert(store:test(req, { quit_after = stage, transcript = true }))
  end
  req.TestRecipient = "nobody@example.com"
  assert(not store:test(req, { transcript = true }))
  req.Port = closed
  assert(not store:test(req))
  local oauth = { Host = "localhost", Port = oauth_port, UseSSL = true, RelayAuthenticationType = 3,
    SenderAccount = "kf@example.com", TestRecipient = "ops@example.com", ClientId = "memcheck-app",
    ClientSecret = "memcheck-secret", TokenEndpoint = token_url, Scope = "smtp" }
  assert(store:test(oauth, { ca_file = ca_file, transcript = true }))
  oauth.ClientSecret = "wrong"
  assert(not store:test(oauth, { ca_file = ca_file }))
  assert(core.read_secret_file { dir = secrets, path = "secret" } == "s3cret")
  for want, t in pairs { too_large = { path = "secret", max = 4 }, missing = { path = "absent" },
      outside = { path = "../" }, not_regular = { path = "." } } do
    t.dir = secrets
    assert(select(3, core.read_secret_file(t)) == want, want)
  end
end
-- Secrets sealed at rest: keys made, read and refused; values sealed,
-- opened, and refused for another field, another key or a broken text;
-- the store's update and test with a sealed password.
local key = secrets .. "/seal.key"
assert(core.key_generate { path = key })
assert(core.store_write(secrets .. "/broken.key", "kfsmtp-key-v1 0123456789abcdef AAAA\n"))
for i = 1, 3 do
  local id = assert(core.key_id { key_file = key })
  assert(select(3, core.key_generate { path = key }) == "exists")
  assert(select(3, core.key_id { key_file = secrets .. "/absent.key" }) == "missing")
  assert(select(3, core.key_id { key_file = secrets .. "/broken.key" }) == "malformed")
  assert(select(3, core.key_id { key_file = secrets }) == "not_regular")
  local sealed = assert(core.seal { key_file = key, plaintext = "sealed-" .. i, aad = "kfsmtp/1/RelayPassword" })
  assert(core.unseal { key_file = key, sealed = sealed, aad = "kfsmtp/1/RelayPassword", key_id = id } == "sealed-" .. i)
  assert(select(3, core.unseal { key_file = key, sealed = sealed, aad = "kfsmtp/1/ClientSecret" }) == "not_opened")
  assert(select(3, core.unseal { key_file = key, sealed = sealed, aad = "x", key_id = "0000000000000000" }) == "wrong_key")
  assert(select(3, core.unseal { key_file = key, sealed = "AAAA", aad = "x" }) == "bad_sealed")
  assert(select(3, core.seal { key_file = secrets .. "/broken.key", plaintext = "x", aad = "x" }) == "malformed")
  local req = { Host = "127.0.0.1", Port = port, SenderAccount = "kf@example.com", RelayAuthenticationType = 2,
    RelayUsername = "u", RelayPassword = "sealed-pw" }
  assert(store:update(req, { key_file = key }))
  req.RelayPassword, req.TestRecipient = nil, "ops@example.com"
  -- The capture server offers no AUTH: the test fails there, after opening.
  local _, err = store:test(req, { key_file = key })
  assert(err.stage == "auth", err.Message)
  _, err = store:test(req)
  assert(err.stage == "secret", err.Message)
end
-- After the tests: a token fetched here replaces the one the relay takes.
local r = core.fetch_token { endpoint = token_url, client_id = "memcheck-app", client_secret = "memcheck-secret",
  ca_file = ca_file, headers = { "X-Api-Key: memcheck-key", "X-Trace: 1" } }
assert(r.ok and r.http_status == 200, r.curl_error)
collectgarbage()
print("memcheck script done")
