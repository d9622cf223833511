-- The kfsmtp command: get, update and test the SMTP profile from a shell.
-- JSON on stdout (the same bodies as the HTTP API); people-facing lines on
-- stderr; the exit status names the failing stage.
local kfsmtp = require "kfsmtp"
local core = require "kfsmtp.core"
local cjson = require "cjson.safe"
local json = kfsmtp.json
local options = require "kfsmtp.options"
local sealing = require "kfsmtp.sealing"
local secrets = require "kfsmtp.secrets"

local _M = {}

local USAGE = [[
Usage: kfsmtp get    [--api-version 1|2] [--store PATH]
       kfsmtp update [FIELDS] [--replace] [--api-version 1|2] [--store PATH]
       kfsmtp test   --recipient ADDRESS [FIELDS] [TEST OPTIONS] [--store PATH]
       kfsmtp user-add NAME --users-file FILE [--permissions read,modify]
       kfsmtp store init [--store URI]   (creates the PostgreSQL store's table)
       kfsmtp keygen FILE
       kfsmtp rekey --key-file OLD --new-key-file NEW [--store PATH]

Reads, changes and tests the one SMTP profile, like Keyfactor Command's
GET /SMTP, PUT /SMTP and POST /SMTP/Test. Prints the API's JSON on stdout.

`update` and `test` start from the stored profile and change only the
fields you give (use `update --replace` to replace the whole profile, as
PUT does). `test` sends a real test message to the recipient.

Fields:
  --host NAME               SMTP server host name or IP address
  --port N                  port (25, 587, 465 ...); default ${port}
  --use-ssl / --no-use-ssl  TLS: implicit on ${implicit_tls_port}, STARTTLS (required) elsewhere
  --auth-type 0|2|3         0 anonymous, 2 username and password,
                            3 OAuth 2.0 client credentials (XOAUTH2/OAUTHBEARER)
  --username USER           relay account, DOMAIN\user or an address
  --password-file FILE      read the relay password from FILE (first line)
  --password-env VAR        read it from environment variable VAR
                            (default: KFSMTP_RELAY_PASSWORD when set)
                            The password is never accepted on the command
                            line, where other users could read it.
  --client-id ID            OAuth (type 3): the app's client id
  --client-secret-file FILE OAuth: the client secret (first line); default
                            KFSMTP_CLIENT_SECRET; never on the command line
  --token-endpoint URL      OAuth: https URL of the token endpoint
  --scope SCOPE             OAuth: e.g. https://outlook.office365.com/.default
  --audience AUDIENCE       OAuth: optional, sent as "resource"
  --sender-account ADDRESS  envelope sender and From address
  --sender-name NAME        display name in From
  --json FILE               read fields as a JSON object from FILE (- = stdin);
                            flags given as well override it

Test options:
  --recipient ADDRESS       where the test message goes (required)
  --tls-mode MODE           implicit | starttls | none: override the
                            inference from UseSSL and Port
  --ca-file FILE            verify the server against this CA bundle
  --insecure                do not verify the certificate (says so in output)
  --pinned-pubkey SPEC      sha256//BASE64 pin of the server's public key
  --helo NAME               EHLO name (default: this machine's host name)
  --connect-timeout-ms N    default ${connect_timeout_ms}
  --timeout-ms N            whole test, default ${timeout_ms}
  --auth-mechanism MECH     PLAIN, LOGIN, CRAM-MD5, ...: log in with this one
                            (default: the strongest both sides offer, and once
                            PLAIN/LOGIN over TLS if a challenge-response one is
                            refused)
  --quit-after STAGE        connect | tls | auth | rcpt: run the dialog up to
                            that stage and stop; NO message is sent
  --transcript              print the SMTP dialog (secrets as ***) on stderr
  --info                    print the details (timings, TLS, reply) as JSON on stderr

--api-version 2 speaks version 2 of the API (Keyfactor's v2 models): the
credentials as secret objects, the OAuth fields and RequestHeaders (give
them with --json). With it, a secret may be a reference to a secret
provider instead of a value:
  --password-ref ID:WHERE       the relay password from provider ID
  --client-secret-ref ID:WHERE  the client secret from provider ID
WHERE is the file's path in a file provider's folder, or the variable's
name for an env provider. The providers are the operator's, as JSON in
KFSMTP_SECRET_PROVIDERS, e.g.
  {"1": {"type": "file", "dir": "/run/secrets"}, "2": {"type": "env", "names": ["SMTP_PASSWORD"]}}

Store: --store PATH, else $KFSMTP_STORE, else ./kfsmtp-store.json

Secrets at rest: with a key file, `update` stores a password or client
secret you enter sealed (AES-256-GCM), and `test` opens it when needed:
  --key-file FILE           the key file, else $KFSMTP_KEY_FILE; without
                            one, a secret you enter is stored unencrypted
  kfsmtp keygen FILE        writes a new key file (mode 0600; never over
                            an existing file) and prints its key id
  kfsmtp rekey --key-file OLD --new-key-file NEW
                            seals every stored secret with NEW (those
                            sealed with OLD are opened first; nothing is
                            written unless all open), under the store's lock

Callers of the HTTP API (kfsmtp.openresty) live in a users file:
  kfsmtp user-add 'CORP\alice' --users-file users.json --permissions read,modify
adds or replaces a user (password from --password-file, --password-env or
KFSMTP_USER_PASSWORD; stored as a salted PBKDF2 hash). Permissions: read
(/system_settings/read/), modify (/system_settings/modify/), all.

Exit status: 0 ok; 2 usage; 3 invalid field; 4 store error; failing test
stage: ${stage_exits} (token: the OAuth token endpoint);
75 a temporary refusal (4xx: greylisting, limits): test again later.
]]

-- A failing test exits with 10 + the stage's place in core.STAGES; a
-- refusal for now (4xx) with sysexits.h's EX_TEMPFAIL, whatever the stage.
local EXIT = { usage = 2, validate = 3, store = 4, temporary = 75 }
local FIRST_STAGE_EXIT = 10
local stage_exits = {}
for i, stage in ipairs(core.STAGES) do
  EXIT[stage] = FIRST_STAGE_EXIT + i - 1
  stage_exits[i] = ("%d %s"):format(EXIT[stage], stage)
end
_M.EXIT = EXIT

USAGE = USAGE:gsub("%${([%w_]+)}", function(name)
  if name == "stage_exits" then return table.concat(stage_exits, ", ") end
  return tostring(assert(core.DEFAULTS[name], name))
end)

-- flag --> { field or option, kind }
local FIELD_FLAGS = {
  host = { "Host" }, port = { "Port" }, ["auth-type"] = { "RelayAuthenticationType" },
  ["relay-authentication-type"] = { "RelayAuthenticationType" },
  username = { "RelayUsername" }, ["relay-username"] = { "RelayUsername" },
  ["sender-account"] = { "SenderAccount" }, ["sender-name"] = { "SenderName" },
  recipient = { "TestRecipient" }, ["test-recipient"] = { "TestRecipient" },
  id = { "Id" },
  ["client-id"] = { "ClientId" }, ["token-endpoint"] = { "TokenEndpoint" },
  scope = { "Scope" }, audience = { "Audience" },
}
local OPTION_FLAGS = {
  ["tls-mode"] = "tls_mode", ["ca-file"] = "ca_file", helo = "helo",
  ["pinned-pubkey"] = "pinned_pubkey", ["quit-after"] = "quit_after", ["auth-mechanism"] = "auth_mechanism",
  ["connect-timeout-ms"] = "connect_timeout_ms", ["timeout-ms"] = "timeout_ms",
}
local SWITCHES = { transcript = true, info = true, insecure = true, replace = true,
  help = true, ["use-ssl"] = true, ["no-use-ssl"] = true }
local VALUE_FLAGS = { store = true, json = true, ["password-file"] = true, ["password-env"] = true,
  ["users-file"] = true, permissions = true, ["client-secret-file"] = true, ["api-version"] = true,
  ["password-ref"] = true, ["client-secret-ref"] = true, ["key-file"] = true, ["new-key-file"] = true }

local function usage_error(msg)
  return { usage = msg }
end

local function parse(argv)
  local a = { fields = {}, options = {}, flags = {} }
  local i = 1
  while i <= #argv do
    local word = argv[i]
    local name, inline = word:match("^%-%-([%w%-]+)=(.*)$")
    name = name or word:match("^%-%-([%w%-]+)$")
    if word == "-h" then name = "help" end
    if not name then
      if not a.command then
        a.command = word
      elseif a.command == "user-add" and not a.user then
        a.user = word
      elseif a.command == "keygen" and not a.path then
        a.path = word
      elseif a.command == "store" and not a.action then
        a.action = word
      else
        return nil, usage_error(("unexpected argument %q"):format(word))
      end
    elseif name == "client-secret" then
      return nil, usage_error("the client secret is never taken from the command line: use --client-secret-file FILE or KFSMTP_CLIENT_SECRET")
    elseif name == "password" or name == "relay-password" then
      return nil, usage_error("the password is never taken from the command line (other users can read it in the process list): use --password-file FILE, --password-env VAR or KFSMTP_RELAY_PASSWORD")
    elseif SWITCHES[name] then
      if name == "use-ssl" and inline then
        a.fields.UseSSL = inline
      elseif inline then
        return nil, usage_error(("--%s takes no value"):format(name))
      elseif name == "use-ssl" then a.fields.UseSSL = true
      elseif name == "no-use-ssl" then a.fields.UseSSL = false
      else a.flags[name] = true end
    else
      local value = inline
      if value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then return nil, usage_error(("--%s needs a value"):format(name)) end
      end
      if FIELD_FLAGS[name] then
        a.fields[FIELD_FLAGS[name][1]] = value
      elseif OPTION_FLAGS[name] then
        local opt = OPTION_FLAGS[name]
        if opt:match("_ms$") then
          local n = tonumber(value)
          if not n or n <= 0 then return nil, usage_error(("--%s needs a positive number of milliseconds"):format(name)) end
          value = n
        end
        a.options[opt] = value
      elseif VALUE_FLAGS[name] then
        a.flags[name] = value
      else
        return nil, usage_error(("unknown option --%s (see kfsmtp --help)"):format(name))
      end
    end
    i = i + 1
  end
  return a
end

local function read_file(path)
  local f, why
  if path == "-" then f = io.stdin else f, why = io.open(path, "rb") end
  if not f then return nil, why end
  local s = f:read("*a")
  if f ~= io.stdin then f:close() end
  return s
end

local function password_from(a, env, default_var)
  if a.flags["password-file"] then
    local s, why = read_file(a.flags["password-file"])
    if not s then return nil, "cannot read --password-file: " .. tostring(why) end
    return (s:match("^([^\r\n]*)"))
  end
  local var = a.flags["password-env"]
  if var then
    local v = env(var)
    if not v then return nil, ("environment variable %s is not set"):format(var) end
    return v
  end
  return env(default_var or "KFSMTP_RELAY_PASSWORD")
end

local function user_add(a, env, out, say)
  local file = a.flags["users-file"]
  if not a.user or not file then
    say("kfsmtp: user-add needs a NAME and --users-file FILE\n")
    return EXIT.usage
  end
  local password, why = password_from(a, env, "KFSMTP_USER_PASSWORD")
  if not password then
    say("kfsmtp: " .. (why or "give the password with --password-file, --password-env or KFSMTP_USER_PASSWORD") .. "\n")
    return EXIT.usage
  end
  local perms = {}
  for p in (a.flags.permissions or "read"):gmatch("[^,%s]+") do perms[#perms + 1] = p end
  local users = require "kfsmtp.users"
  local ok, err = users.add(file, a.user, password, perms)
  if not ok then
    say("kfsmtp: " .. err .. "\n")
    return EXIT.usage
  end
  out(json.encode({ user = a.user, permissions = json.array(users.permissions(perms)) }, true) .. "\n")
  return 0
end

local function keygen(a, out, say)
  if not a.path then
    say("kfsmtp: keygen needs the FILE to write the new key to\n")
    return EXIT.usage
  end
  local id, why = sealing.keygen(a.path)
  if not id then
    say("kfsmtp: " .. why .. "\n")
    return EXIT.usage
  end
  out(json.encode({ key_file = a.path, key_id = id }, true) .. "\n")
  say(("kfsmtp: wrote key %s to %s (mode 0600). Keep a copy where the store's backups are not: whoever has both reads the secrets. Use it with KFSMTP_KEY_FILE=%s or --key-file.\n"):format(
    id, a.path, a.path))
  return 0
end

local function exit_code_for(err)
  if err.temporary then return EXIT.temporary end
  if err.stage == "validate" then return EXIT.validate end
  return EXIT[err.stage] or 1
end

local function tls_words(info)
  local t = info.tls
  if t.mode == "none" then return "no TLS" end
  return ("%s %s, certificate %s"):format(t.mode == "implicit" and "implicit TLS" or "STARTTLS",
    t.version, t.verified and "verified" or "NOT verified")
end

-- KFSMTP_SECRET_PROVIDERS: the operator's providers as a JSON object
-- keyed by id. providers | nil | nil, why.
local function providers_from(env)
  local text = env("KFSMTP_SECRET_PROVIDERS")
  if not text or text == "" then return nil end
  local doc = cjson.decode(text)
  if type(doc) ~= "table" then return nil, "KFSMTP_SECRET_PROVIDERS must hold a JSON object keyed by provider id" end
  local providers = {}
  for id, p in pairs(doc) do
    local n = json.whole(id)
    if not n then return nil, ("KFSMTP_SECRET_PROVIDERS: %q is not a provider id"):format(tostring(id)) end
    providers[n] = p
  end
  local why = secrets.check_providers(providers)
  if why then return nil, "KFSMTP_SECRET_PROVIDERS: " .. why end
  return providers
end

-- --password-ref ID:WHERE --> a version 2 reference | nil, why.
local function reference_from(flag, text, providers)
  local id, where = (text or ""):match("^(%d+):(.+)$")
  if not id then return nil, ("--%s takes ID:WHERE (a provider id, then the file's path or the variable's name)"):format(flag) end
  id = json.whole(id)
  local p = providers and providers[id]
  return { Provider = id, Parameters = { [p and secrets.PARAMETER[p.type] or "Path"] = where } }
end

-- main(argv [, io_]) --> exit status. io_ = { out, err, env } for tests.
function _M.main(argv, io_)
  io_ = io_ or {}
  local out = io_.out or function(s) io.stdout:write(s) end
  local say = io_.err or function(s) io.stderr:write(s) end
  local env = io_.env or os.getenv

  local a, perr = parse(argv or {})
  if not a then
    say("kfsmtp: " .. perr.usage .. "\n")
    return EXIT.usage
  end
  if a.flags.help or a.command == "help" then
    out(USAGE)
    return 0
  end
  if a.command == "user-add" then return user_add(a, env, out, say) end
  if a.command == "keygen" then return keygen(a, out, say) end
  if a.command == "store" and a.action ~= "init" then
    say("kfsmtp: say store init\n")
    return EXIT.usage
  end
  if a.command ~= "get" and a.command ~= "update" and a.command ~= "test" and a.command ~= "rekey"
      and a.command ~= "store" then
    say(a.command and ("kfsmtp: unknown command %q\n"):format(a.command) or "kfsmtp: say get, update or test\n")
    say("Run kfsmtp --help for the options.\n")
    return EXIT.usage
  end

  local api_version = ({ ["1"] = 1, ["2"] = 2 })[a.flags["api-version"] or "1"]
  if not api_version then
    say("kfsmtp: --api-version takes 1 or 2\n")
    return EXIT.usage
  end
  local providers, providers_why = providers_from(env)
  if providers_why then
    say("kfsmtp: " .. providers_why .. "\n")
    return EXIT.usage
  end
  local store = kfsmtp.open(a.flags.store or options.store_path())
  local function fail(err)
    out(json.encode(kfsmtp.errors.body(err), true) .. "\n")
    say(("kfsmtp: %s %s%s: %s\n"):format(a.command, err.temporary and "refused for now (temporary)" or "failed",
      err.stage and err.stage ~= "validate" and (" at stage " .. err.stage) or "", err.Message))
    -- The key file's own words name its path: for the operator's shell,
    -- never for an API caller.
    if err.key_file_error then say("kfsmtp: " .. err.key_file_error .. "\n") end
    if err.transcript then
      for _, line in ipairs(err.transcript) do say(line .. "\n") end
    end
    return exit_code_for(err)
  end
  local key_file = a.flags["key-file"] or env("KFSMTP_KEY_FILE")
  if key_file == "" then key_file = nil end

  if a.command == "store" then
    local ok, err = store:init()
    if not ok then return fail(err) end
    say(("kfsmtp: the store %s is ready\n"):format(store.path))
    return 0
  end

  if a.command == "rekey" then
    local new = a.flags["new-key-file"]
    if not new then
      say("kfsmtp: rekey needs --new-key-file NEW (and --key-file OLD, or KFSMTP_KEY_FILE, for the secrets sealed now)\n")
      return EXIT.usage
    end
    local report, err = sealing.rekey(store, key_file, new)
    if not report then return fail(err) end
    for i, r in ipairs(report.resealed) do
      say(("kfsmtp: %s %s key %s\n"):format(r.field,
        r.from and ("re-encrypted from key " .. r.from .. " to") or "(stored unencrypted) sealed with", r.to))
      report.resealed[i] = { field = r.field, from = r.from or cjson.null, to = r.to }
    end
    for _, name in ipairs(report.kept) do say(("kfsmtp: %s was already sealed with the new key\n"):format(name)) end
    if #report.resealed == 0 then say(("kfsmtp: nothing to re-encrypt in %s\n"):format(store.path)) end
    out(json.encode({ store = store.path, resealed = json.array(report.resealed), kept = json.array(report.kept) }, true) .. "\n")
    return 0
  end

  if a.command == "get" then
    local p, err = store:get { api_version = api_version }
    if not p then return fail(err) end
    out(json.encode(p, true) .. "\n")
    return 0
  end

  -- The request: stored profile (unless --replace), then --json, then flags.
  local req = {}
  if not a.flags.replace then
    local p, err = store:get { api_version = api_version }
    if not p then return fail(err) end
    for k, v in pairs(p) do req[k] = v end
  end
  if a.flags.json then
    local text, why = read_file(a.flags.json)
    if not text then
      say("kfsmtp: cannot read --json: " .. tostring(why) .. "\n")
      return EXIT.usage
    end
    local doc = cjson.decode(text)
    if type(doc) ~= "table" then
      say("kfsmtp: --json must hold a JSON object\n")
      return EXIT.usage
    end
    -- Replace by field name, case-insensitively, as the API matches them.
    for k, v in pairs(doc) do
      for existing in pairs(req) do
        if type(k) == "string" and existing:lower() == k:lower() then req[existing] = nil end
      end
      req[k] = v
    end
  end
  for k, v in pairs(a.fields) do
    for existing in pairs(req) do
      if existing:lower() == k:lower() then req[existing] = nil end
    end
    req[k] = v
  end
  local password, why = password_from(a, env)
  if why then
    say("kfsmtp: " .. why .. "\n")
    return EXIT.usage
  end
  if password then req.RelayPassword = password end
  for _, named in ipairs { { "password-ref", "RelayPassword" }, { "client-secret-ref", "ClientSecret" } } do
    local text = a.flags[named[1]]
    if text then
      if api_version ~= 2 then
        say(("kfsmtp: --%s needs --api-version 2 (references are version 2's)\n"):format(named[1]))
        return EXIT.usage
      end
      local reference, ref_why = reference_from(named[1], text, providers)
      if not reference then
        say("kfsmtp: " .. ref_why .. "\n")
        return EXIT.usage
      end
      req[named[2]] = reference
    end
  end
  if a.flags["client-secret-file"] then
    local s, why2 = read_file(a.flags["client-secret-file"])
    if not s then
      say("kfsmtp: cannot read --client-secret-file: " .. tostring(why2) .. "\n")
      return EXIT.usage
    end
    req.ClientSecret = s:match("^([^\r\n]*)")
  elseif env("KFSMTP_CLIENT_SECRET") then
    req.ClientSecret = env("KFSMTP_CLIENT_SECRET")
  end

  if a.command == "update" then
    local p, err = store:update(req, { api_version = api_version, secret_providers = providers, key_file = key_file })
    if not p then return fail(err) end
    out(json.encode(p, true) .. "\n")
    say(("kfsmtp: stored the profile in %s\n"):format(store.path))
    return 0
  end

  local opts = { api_version = api_version, secret_providers = providers, key_file = key_file }
  for k, v in pairs(a.options) do opts[k] = v end
  if a.flags.insecure then opts.tls_verify = false end
  if a.flags.transcript then opts.transcript = true end
  -- Names taken in any letter case, as over HTTP.
  for _, named in ipairs { { "quit_after", "--quit-after", options.quit_stage, options.QUIT_STAGE_WORDS },
      { "auth_mechanism", "--auth-mechanism", options.mechanism, options.MECHANISM_WORDS } } do
    local key, flag, read, words = named[1], named[2], named[3], named[4]
    if opts[key] then
      opts[key] = read(opts[key])
      if not opts[key] then
        say(("kfsmtp: %s takes %s\n"):format(flag, words))
        return EXIT.usage
      end
    end
  end
  local ok, res, info = pcall(store.test, store, req, opts)
  if not ok then
    say("kfsmtp: " .. tostring(res) .. "\n")
    return EXIT.usage
  end
  if not res then return fail(info) end
  out(json.encode(res, true) .. "\n")
  if info.transcript then
    for _, line in ipairs(info.transcript) do say(line .. "\n") end
  end
  for _, w in ipairs(info.warnings) do say("kfsmtp: warning: " .. w .. "\n") end
  if info.quit_after then
    say(("kfsmtp: %s port %d: dialog good up to %s (%s; auth %s) in %.1f ms: %s; nothing was sent\n"):format(
      res.Host, res.Port, info.quit_after, tls_words(info), info.auth_mechanism, info.timings.total, info.reply))
  else
    say(("kfsmtp: %s port %d accepted the test message (%s; auth %s) in %.1f ms: %s\n"):format(
      res.Host, res.Port, tls_words(info), info.auth_mechanism, info.timings.total, info.reply))
  end
  if a.flags.info then
    local shown = {}
    for k, v in pairs(info) do if k ~= "transcript" then shown[k] = v end end
    say(json.encode(shown, true) .. "\n")
  end
  return 0
end

return _M
