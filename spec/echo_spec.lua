-- A server that echoes a secret back: what kfsmtp returns must not carry
-- it, in clear, in base64 (at the offset it had in the SASL payload) or
-- URL-encoded (as the token request sent it).
local kfsmtp = require "kfsmtp"
local core = require "kfsmtp.core"
local H = require "helpers"

-- Odd lengths and characters, so that the base64 and URL forms differ
-- from the clear one at every alignment.
local PASSWORD = "Pw/+ é-" .. tostring(os.time() % 100000)
local CLIENT, CLIENT_SECRET = "app-echo", "cs+/ =é" .. tostring(os.time() % 1000)
local MAILBOX = "kf-mailbox@example.com"

-- Every form of secret that must not be found anywhere in values.
local function nowhere(secret, values)
  local forms = { secret, core.base64(secret), core.url_escape(secret) }
  for offset = 1, 2 do
    forms[#forms + 1] = core.base64(("\0"):rep(offset) .. secret):sub(4, -4)
  end
  for _, form in ipairs(forms) do
    assert.is_false(H.mentions(values, form), ("the secret (as %q) came back"):format(form))
  end
end

-- A password login against an echoing server offering only mech:
-- res, err.
local function log_in(mech)
  local srv = H.start_hostile { behaviour = "echo_auth", mechs = mech }
  finally(function() srv:stop() end)
  return kfsmtp.open(H.store_path()):test({ Host = "127.0.0.1", Port = srv.port,
    RelayAuthenticationType = 2, RelayUsername = "svc", RelayPassword = PASSWORD,
    SenderAccount = "kf@example.com", TestRecipient = "ops@example.com" }, { transcript = true })
end

describe("a secret a server echoes back", function()
  it("is masked in a refused AUTH PLAIN (payload and password)", function()
    local res, err = log_in("PLAIN")
    assert.is_nil(res)
    assert.are.equal("auth", err.stage)
    assert.truthy(err.smtp_reply:find("you sent", 1, true), "the server did echo")
    assert.truthy(err.Message:find("***", 1, true), err.Message)
    nowhere(PASSWORD, { err, tostring(err) })
  end)

  it("is masked in a refused AUTH LOGIN", function()
    local _, err = log_in("LOGIN")
    assert.are.equal("auth", err.stage)
    assert.truthy(err.smtp_reply:find("secret ***", 1, true), err.smtp_reply)
    nowhere(PASSWORD, err)
  end)

  it("is masked when a relay echoes the access token (XOAUTH2)", function()
    local tokens = H.start_token_server(CLIENT, CLIENT_SECRET)
    local srv = H.start_hostile { behaviour = "echo_auth", oauth = true }
    finally(function() srv:stop() tokens:stop() end)
    local _, err = kfsmtp.open(H.store_path()):test({ Host = "127.0.0.1", Port = srv.port,
      RelayAuthenticationType = 3, RelayUsername = MAILBOX, SenderAccount = MAILBOX,
      TestRecipient = "ops@example.com", ClientId = CLIENT, ClientSecret = CLIENT_SECRET,
      Scope = "echo", TokenEndpoint = tokens.url }, { ca_file = H.certs().ca, transcript = true })
    assert.are.equal("auth", err.stage, err.Message)
    local token = tokens:token()
    assert.truthy(token:match("^tok%-"))
    nowhere(token, err)
    nowhere(CLIENT_SECRET, err)
  end)

  it("is masked when the token endpoint quotes the client secret", function()
    local tokens = H.start_token_server(CLIENT, "the-right-one", "--echo-secret")
    finally(function() tokens:stop() end)
    local _, err = kfsmtp.open(H.store_path()):test({ Host = "127.0.0.1", Port = H.closed_port(),
      RelayAuthenticationType = 3, RelayUsername = MAILBOX, SenderAccount = MAILBOX,
      TestRecipient = "ops@example.com", ClientId = CLIENT, ClientSecret = CLIENT_SECRET,
      Scope = "echo", TokenEndpoint = tokens.url }, { ca_file = H.certs().ca })
    assert.are.equal("token", err.stage)
    assert.truthy(err.error_description:find("Secret: ***", 1, true), err.error_description)
    nowhere(CLIENT_SECRET, { err, tostring(err) })
  end)
end)
