-- POST /SMTP/Test: one test message, in four steps: which credentials the
-- request may use, the message, the delivery (with one retry when the
-- relay refuses a cached OAuth token), and the info a person reads.
local core = require "kfsmtp.core"
local diagnosis = require "kfsmtp.diagnosis"
local errors = require "kfsmtp.errors"
local json = require "kfsmtp.json"
local mask = require "kfsmtp.mask"
local oauth = require "kfsmtp.oauth"
local options = require "kfsmtp.options"
local profile = require "kfsmtp.profile"
local request_headers = require "kfsmtp.request_headers"
local sealing = require "kfsmtp.sealing"
local secrets = require "kfsmtp.secrets"

local ipairs, ceil, min, floor = ipairs, math.ceil, math.min, math.floor

local _M = {}

-- The credentials of the test: { password = } for type 2, { client = }
-- for type 3, {} for anonymous; stored secrets are reused only as
-- kfsmtp.profile allows, references are read from their providers now
-- (kfsmtp.secrets), and sealed ones opened now with the key file
-- (kfsmtp.sealing). credentials | nil, err.
local function credentials(store, t, opts)
  local tls_mode = options.get(opts, "tls_mode")
  local providers = options.get(opts, "secret_providers")
  local key_file = options.key_file(opts)
  local auth = t.RelayAuthenticationType
  if auth == profile.AUTH_ANONYMOUS then return {} end
  local stored, err = {}, nil
  if auth == profile.AUTH_OAUTH or not t.RelayPassword or t.RelayPassword == "" then
    stored, err = store:load()
    if not stored then return nil, err end
  end
  -- Whatever a provider gives is masked in the answer, names too: a
  -- caller may point RelayUsername or ClientId at any secret a provider
  -- holds, and a server may echo those.
  local values, from_providers = {}, {}
  local function resolve(name, v)
    if secrets.is_sealed(v) then
      values[name], err = sealing.open(name, v, key_file, t.Id)
      return err
    end
    values[name], err = secrets.resolve(name, v, providers, profile.destination(t, name))
    if secrets.is_reference(v) and values[name] then from_providers[#from_providers + 1] = values[name] end
    return err
  end
  if auth == profile.AUTH_PASSWORD then
    local password
    password, err = profile.stored_password(t, stored, tls_mode, options.get(opts, "auth_mechanism"))
    if not password then return nil, err end
    err = resolve("RelayUsername", t.RelayUsername) or resolve("RelayPassword", password)
    if err then return nil, err end
    return { password = values.RelayPassword, username = values.RelayUsername, from_providers = from_providers }
  end
  err = profile.resolve_oauth(t, stored, tls_mode)
    or resolve("RelayUsername", t.RelayUsername) or resolve("ClientId", t.ClientId)
    or resolve("ClientSecret", t.ClientSecret)
  if err then return nil, err end
  -- Headers entered for the stored endpoint go with it, and only there.
  local headers = t.RequestHeaders
  if headers == nil and t.TokenEndpoint == stored.TokenEndpoint then headers = stored.RequestHeaders end
  return {
    client = { endpoint = t.TokenEndpoint, client_id = values.ClientId, client_secret = values.ClientSecret,
      scope = t.Scope, audience = t.Audience, headers = request_headers.lines(headers),
      -- Where its token goes, and how the endpoint was checked: a token
      -- kept for one relay is not handed to another (the client secret
      -- may have been revoked since), nor one fetched unverified to a
      -- verified test.
      bound_to = { t.Host, tostring(t.Port), tostring(t.UseSSL), tostring(tls_mode),
        tostring(options.get(opts, "tls_verify")), options.get(opts, "ca_file") or "" } },
    -- The mailbox the token lets the app send as.
    username = values.RelayUsername ~= "" and values.RelayUsername or t.SenderAccount,
    from_providers = from_providers,
  }
end

-- One deadline for the whole test (SPEC: timeout_ms covers the token
-- fetch, the delivery, the one retry and QUIT): each transfer gets what is
-- left of it. --> clock { started, deadline, connect_ms, token_ms }
local function start_clock(opts)
  local now = core.clock_ms()
  return { started = now, deadline = now + options.get(opts, "timeout_ms"),
    connect_ms = options.get(opts, "connect_timeout_ms"), token_ms = 0 }
end

-- Sets t.timeout_ms and t.connect_timeout_ms to what the clock has left;
-- false when nothing is left.
local function budget(clock, t)
  local left = ceil(clock.deadline - core.clock_ms())
  if left < 1 then return false end
  t.timeout_ms, t.connect_timeout_ms = left, min(clock.connect_ms, left)
  return true
end

-- A token within the test's deadline, its time counted in clock.token_ms.
local function token_for(client, opts, clock)
  local limits = {}
  if not budget(clock, limits) then
    return nil, nil, oauth.timed_out(client, options.get(opts, "timeout_ms"))
  end
  local t0 = core.clock_ms()
  local token, cached, err = oauth.token(client, opts, limits)
  clock.token_ms = clock.token_ms + (core.clock_ms() - t0)
  return token, cached, err
end

-- Challenge-response mechanisms: a server that offers one but keeps only
-- hashed passwords refuses every login with it (a common Dovecot set-up),
-- and libcurl picks it over PLAIN and LOGIN without trying those.
local CHALLENGE_RESPONSE = { ["CRAM-MD5"] = true, ["DIGEST-MD5"] = true, NTLM = true }

-- The mechanism to try once more with after r's refusal: PLAIN or LOGIN,
-- when a challenge-response mechanism chosen by libcurl was refused, over
-- TLS, and the server offers one of them | nil.
local function fallback_mechanism(r, d, opts)
  if r.ok or r.stage ~= "auth" or not r.auth_sent or not CHALLENGE_RESPONSE[r.auth_mechanism]
      or options.get(opts, "auth_mechanism") or d.tls_mode == "none" or not (r.reply or ""):match("^5") then
    return nil
  end
  local _, mechanisms = diagnosis.offered(r.ehlo)
  local set = {}
  for _, m in ipairs(mechanisms) do set[m] = true end
  return set.PLAIN and "PLAIN" or set.LOGIN and "LOGIN" or nil
end

-- Delivers, fetching the token first for type 3; a cached token the relay
-- refuses (revoked, or expired early) is replaced once, if time is left.
-- Every token used is added to sent. result of core.deliver | nil, err
-- (stage "token").
local function deliver(d, creds, opts, clock, sent)
  local token, cached, err
  if creds.client then
    token, cached, err = token_for(creds.client, opts, clock)
    if not token then return nil, err end
    d.bearer = token
    sent[#sent + 1] = token
  end
  if not budget(clock, d) then
    return nil, errors.new("timeout", { stage = "connect",
      Message = ("No time was left for the delivery within timeout_ms (%d ms)."):format(options.get(opts, "timeout_ms")) })
  end
  local r = core.deliver(d)
  local mech = not creds.client and fallback_mechanism(r, d, opts)
  if mech and budget(clock, d) then
    local refused = r.auth_mechanism
    d.auth_mechanism = mech
    r = core.deliver(d)
    r.fallback = { refused = refused, used = mech }
  end
  if creds.client and not r.ok and r.stage == "auth" and r.auth_sent and cached then
    oauth.forget(creds.client)
    local fresh, _, why = token_for(creds.client, opts, clock)
    if not fresh then return nil, why end
    d.bearer = fresh
    sent[#sent + 1] = fresh
    -- Without time left, the refusal of the cached token is the answer.
    if not budget(clock, d) then return r end
    r = core.deliver(d)
  end
  return r
end

local function queue_id_of(reply)
  if not reply then return nil end
  return reply:match("[Qq]ueued as ([%w%.%-_]+)") or reply:match("[Ii]nternal[Ii]d=(%d+)")
    or reply:match(" id=([%w%-]+)")
end

local function tls_info(r, tls_mode)
  local tls = { mode = tls_mode, version = "", verified = false }
  if r.tls then
    tls.version, tls.verified = r.tls.version, r.tls.verified
    local cert = r.tls.cert
    cert.names = json.array(cert.names)
    tls.cert = cert
  end
  return tls
end

local function warnings_of(r, d, quit_after)
  local warnings = json.array()
  if r.auth_sent and d.tls_mode == "none" then
    warnings[#warnings + 1] = "The credentials were sent without TLS (UseSSL is false): anyone on the network path could read them. Set UseSSL to true if the relay supports it."
  end
  if d.tls_mode ~= "none" and not d.tls_verify then
    warnings[#warnings + 1] = "Certificate verification is off (tls_verify = false): the server's identity was not checked."
  end
  if quit_after then
    warnings[#warnings + 1] = ("quit_after = %q: the dialog stopped there as asked; no message was sent."):format(quit_after)
  end
  if r.fallback then
    warnings[#warnings + 1] = ("The server refused %s and accepted %s with the same credentials: it cannot check %s (it likely keeps only password hashes). Set auth_mechanism = %q to skip the failing attempt, or have the server stop offering %s."):format(
      r.fallback.refused, r.fallback.used, r.fallback.refused, r.fallback.used, r.fallback.refused)
  end
  return warnings
end

-- The timings of a good test: the last delivery's stages, the token
-- fetches, and the whole call.
local function timings_of(r, clock)
  local timings = r.timings
  timings.token = floor(clock.token_ms * 1000 + 0.5) / 1000
  timings.total = floor((core.clock_ms() - clock.started) * 1000 + 0.5) / 1000
  return timings
end

-- The info of a good test: what happened, for a person to read.
local function info_of(r, d, message_id, clock)
  local quit_after = d.quit_after
  local capabilities, mechanisms = diagnosis.offered(r.ehlo)
  return {
    quit_after = quit_after,
    capabilities = capabilities,
    auth_mechanisms_offered = mechanisms,
    timings = timings_of(r, clock),
    tls = tls_info(r, d.tls_mode),
    auth_mechanism = r.auth_mechanism ~= "" and r.auth_mechanism or "none",
    greeting = r.greeting,
    reply = quit_after and diagnosis.last_line(r.reply) or r.final_reply,
    queue_id = not quit_after and queue_id_of(r.final_reply) or nil,
    message_id = not quit_after and message_id or nil,
    warnings = warnings_of(r, d, quit_after),
    transcript = d.transcript and json.array(r.transcript) or nil,
  }
end

-- run(store, req, opts) --> response, info | nil, err. opts are checked.
function _M.run(store, req, opts)
  local api_version = options.get(opts, "api_version")
  local t, err = profile.read(req, true, api_version, options.get(opts, "secret_providers"))
  if not t then return nil, err end
  local creds
  creds, err = credentials(store, t, opts)
  if not creds then return nil, err end

  local clock = start_clock(opts)
  local tls_mode = options.tls_mode(opts, t)
  local message, message_id = core.compose {
    sender_name = t.SenderName, sender_account = t.SenderAccount,
    recipient = t.TestRecipient, host = t.Host, port = t.Port, tls_mode = tls_mode,
  }
  local d = {
    host = t.Host, port = t.Port, tls_mode = tls_mode,
    username = creds.username, password = creds.password,
    mail_from = "<" .. t.SenderAccount .. ">", rcpt_to = "<" .. t.TestRecipient .. ">",
    message = message, helo = options.helo(opts),
    ca_file = options.get(opts, "ca_file"), tls_verify = options.get(opts, "tls_verify"),
    pinned_pubkey = options.get(opts, "pinned_pubkey"),
    transcript = opts.transcript == true,
    quit_after = opts.quit_after,
    auth_mechanism = options.get(opts, "auth_mechanism"),
  }
  -- The secrets this test sends, masked in all it returns.
  local sent = { creds.password or false, creds.client and creds.client.client_secret or false }
  for _, v in ipairs(creds.from_providers or {}) do sent[#sent + 1] = v end
  local r
  r, err = deliver(d, creds, opts, clock, sent)
  local needles = mask.needles(sent)
  if not r then
    err.transcript = d.transcript and json.array() or nil
    return nil, mask.mask(err, needles)
  end
  if not r.ok then
    err = diagnosis.from_delivery(r, {
      host = t.Host, port = t.Port, tls_mode = tls_mode,
      sender = t.SenderAccount, recipient = t.TestRecipient, oauth = t.RelayAuthenticationType == profile.AUTH_OAUTH,
      -- A probe that stops before AUTH logs in with nothing.
      credentials = d.username ~= nil and opts.quit_after ~= "connect" and opts.quit_after ~= "tls",
      connect_timeout_ms = clock.connect_ms, timeout_ms = options.get(opts, "timeout_ms"),
    })
    err.transcript = d.transcript and json.array(r.transcript) or nil
    return nil, mask.mask(err, needles)
  end
  return profile.test_out(t, api_version), mask.mask(info_of(r, d, message_id, clock), needles)
end

return _M
