-- Secrets at rest: with a key file configured, the stored RelayPassword
-- and ClientSecret are sealed (AES-256-GCM in the C core) before the
-- record is written, and opened only when a test needs them. Whatever the
-- store is, this works on the record (a Lua table) and on the stored
-- value. A stored sealed value is kept as it is by every update that does
-- not enter the secret again, so a missing or wrong key can fail a test,
-- never lose or replace a stored secret.
--
-- The stored form: { Sealed = "<base64 of nonce | ciphertext | tag>",
-- KeyId = "<the key's id>", Cipher = "AES-256-GCM" }, read back by
-- kfsmtp.secrets. The associated data is "kfsmtp/<profile id>/<field>",
-- so a value copied to another field or profile does not open.
local core = require "kfsmtp.core"
local errors = require "kfsmtp.errors"
local profile = require "kfsmtp.profile"
local secrets = require "kfsmtp.secrets"

local type, pairs, ipairs = type, pairs, ipairs

local _M = {}

-- The secrets that are sealed; a provider reference is not one (it says
-- where the secret is, not what).
local FIELDS = { "RelayPassword", "ClientSecret" }
_M.FIELDS = FIELDS

local function aad(name, profile_id)
  return ("kfsmtp/%d/%s"):format(profile_id or 1, name)
end

-- A key file's problem (core's kind) in words for whoever asked, with its
-- fix. The core's own message names the key file's path, which is the
-- operator's business, not an API caller's: it goes to err.key_file_error,
-- which the CLI shows and the HTTP API does not.
local KEY_PROBLEMS = {
  missing = { "the key file configured does not exist", "Point KFSMTP_KEY_FILE (or key_file) at it." },
  link = { "the key file configured is a symbolic link, which is refused", "Point KFSMTP_KEY_FILE (or key_file) at the file itself." },
  not_regular = { "the key file configured is not a regular file", "Point KFSMTP_KEY_FILE (or key_file) at the key file." },
  owner = { "the key file configured belongs to another user", "Give it to the user the server runs as, or to root (chown)." },
  permissions = { "the key file configured is open to group or others", "Take their permissions away (chmod 600)." },
  malformed = { "the key file configured is not a kfsmtp key file", "Restore it, or point KFSMTP_KEY_FILE (or key_file) at the right one." },
  unreadable = { "the key file configured cannot be read", "Let the user the server runs as read it." },
  internal = { "sealing failed inside OpenSSL", "Try again." },
}

local function secret_error(name, message, fields)
  fields = fields or {}
  fields.stage, fields.field, fields.Message = "secret", name, message
  return errors.new("secret", fields)
end

-- seal(name, plaintext, key_file [, profile_id]) --> the stored form | nil, err.
function _M.seal(name, plaintext, key_file, profile_id)
  local sealed, id_or_why, kind = core.seal { key_file = key_file, plaintext = plaintext, aad = aad(name, profile_id) }
  if sealed then return { Sealed = sealed, KeyId = id_or_why, Cipher = secrets.SEALED_CIPHER } end
  local problem = KEY_PROBLEMS[kind] or KEY_PROBLEMS.internal
  return nil, secret_error(name, ("%s could not be sealed: %s. %s The stored profile was not changed."):format(
    name, problem[1], problem[2]), { key_file_error = id_or_why })
end

-- Opens a sealed value: the secret | nil, why, fix (words for whoever
-- asked), the core's message (naming the key file's path).
local function unseal(name, v, key_file, profile_id, again)
  if not key_file then return nil, "no key file is configured", again end
  local plain, why, kind, file_id = core.unseal { key_file = key_file, sealed = v.Sealed, aad = aad(name, profile_id), key_id = v.KeyId }
  if plain then return plain end
  if kind == "wrong_key" then return nil, ("the key file configured is key %s"):format(file_id), again, why end
  if kind == "not_opened" or kind == "bad_sealed" then
    return nil, "it does not open with that key here (it was sealed for another field or profile, or altered)",
      ("Enter %s again."):format(name), why
  end
  local problem = KEY_PROBLEMS[kind] or KEY_PROBLEMS.internal
  return nil, problem[1], problem[2], why
end

-- open(name, v, key_file [, profile_id]) --> the secret | nil, err (stage
-- "secret"), for a sealed stored value v. The message names the key the
-- value was sealed with and what to do; never a byte of the secret.
function _M.open(name, v, key_file, profile_id)
  local again = ("Set KFSMTP_KEY_FILE (or the key_file option) to the key file with id %s, or enter %s again."):format(
    v.KeyId, name)
  local plain, why, fix, key_file_error = unseal(name, v, key_file, profile_id, again)
  if plain then return plain end
  return nil, secret_error(name, ("%s is sealed with key %s and could not be opened: %s. %s Nothing was sent to the SMTP server."):format(
    name, v.KeyId, why, fix), { key_id = v.KeyId, key_file_error = key_file_error })
end

-- seal_record(record, key_file) --> the record to store, with each secret
-- entered as a value sealed | nil, err. Without a key file, the record as
-- it is. A secret already sealed (kept from the stored record) or a
-- reference is left as it is, so no key is needed to keep one.
function _M.seal_record(record, key_file)
  if not key_file then return record end
  local out
  for _, name in ipairs(FIELDS) do
    local v = record[name]
    if type(v) == "string" and v ~= "" then
      if not out then
        out = {}
        for k, x in pairs(record) do out[k] = x end
      end
      local err
      out[name], err = _M.seal(name, v, key_file, record.Id)
      if not out[name] then return nil, err end
    end
  end
  return out or record
end

-- The first secret record holds in clear (a value, not sealed, not a
-- reference) | nil.
function _M.plain_secret(record)
  for _, name in ipairs(FIELDS) do
    local v = record[name]
    if type(v) == "string" and v ~= "" then return name end
  end
end

-- keygen(path) --> the new key's id | nil, why (naming the path).
function _M.keygen(path)
  local id, why = core.key_generate { path = path }
  return id, why
end

-- rekey(store, old_key_file, new_key_file) --> { resealed = { { field,
-- from (a key id, or false: was stored unencrypted), to } }, kept = {
-- field names already under the new key } } | nil, err. Under the store's
-- lock: every sealed secret opens with the old key, or nothing is
-- written; a plain one is sealed too. old_key_file may be nil when no
-- stored secret needs it.
function _M.rekey(store, old_key_file, new_key_file)
  local new_id, why, kind = core.key_id { key_file = new_key_file }
  if not new_id then
    local problem = KEY_PROBLEMS[kind] or KEY_PROBLEMS.internal
    return nil, secret_error(nil, ("The new key cannot be used: %s."):format(problem[1]), { key_file_error = why })
  end
  return store:with_lock(function()
    local current, err = store:read()
    if not current then return nil, err end
    local record, report = {}, { resealed = {}, kept = {} }
    for k, x in pairs(current) do record[k] = x end
    for _, name in ipairs(FIELDS) do
      local v, plain = current[name], nil
      if secrets.is_sealed(v) and v.KeyId == new_id then
        report.kept[#report.kept + 1] = name
      elseif secrets.is_sealed(v) then
        local reason, fix, key_file_error
        plain, reason, fix, key_file_error = unseal(name, v, old_key_file, record.Id,
          ("Give the key file with id %s as the old key (--key-file, or KFSMTP_KEY_FILE)."):format(v.KeyId))
        if not plain then
          return nil, secret_error(name, ("%s is sealed with key %s and does not open with the old key: %s. %s Nothing was written."):format(
            name, v.KeyId, reason, fix), { key_id = v.KeyId, key_file_error = key_file_error })
        end
        report.resealed[#report.resealed + 1] = { field = name, from = v.KeyId, to = new_id }
      elseif type(v) == "string" and v ~= "" then
        plain = v
        report.resealed[#report.resealed + 1] = { field = name, from = false, to = new_id }
      end
      if plain then
        record[name], err = _M.seal(name, plain, new_key_file, record.Id)
        if not record[name] then return nil, err end
      end
    end
    if #report.resealed == 0 then return report end
    local ok
    ok, err = store:write(profile.stored_text(record), record)
    if not ok then return nil, err end
    return report
  end)
end

return _M
