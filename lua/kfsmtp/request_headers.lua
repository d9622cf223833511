-- RequestHeaders (version 2): extra HTTP headers, a list of {Name, Value},
-- sent with the OAuth token request of RelayAuthenticationType 3 (some
-- identity providers and gateways want a tenant or subscription header).
-- They are data a caller hands to kfsmtp's own HTTP request, so every
-- entry is checked here: a name in the header syntax, a value without line
-- breaks, a bounded count and size, and no header that would change what
-- the request is (its host, length, body type, credentials, framing).
local cjson = require "cjson.safe"
local errors = require "kfsmtp.errors"
local json = require "kfsmtp.json"

local type, pairs, ipairs = type, pairs, ipairs

local _M = {}

local MAX_HEADERS = 20
local MAX_NAME = 128
local MAX_VALUE = 4096
local MAX_TOTAL = 8192
-- RFC 9110 token characters.
local NAME_PATTERN = "^[%w!#$%%&'*+%-.^_`|~]+$"
local RESERVED = {}
for _, n in ipairs { "host", "content-length", "content-type", "transfer-encoding", "connection",
  "keep-alive", "upgrade", "te", "trailer", "expect", "accept", "authorization",
  "proxy-authorization", "proxy-connection" } do
  RESERVED[n] = true
end
_M.MAX_HEADERS = MAX_HEADERS

local function bad(i, what)
  return nil, errors.field("RequestHeaders", ("RequestHeaders[%d]%s."):format(i, what))
end

local ENTRY_KEYS = { name = "Name", value = "Value" }

-- One entry {Name, Value} (keys in any letter case): name, value | nil, err.
local function read_entry(i, entry)
  if type(entry) ~= "table" then
    return bad(i, (" must be an object {\"Name\": ..., \"Value\": ...}, not %s"):format(
      entry == cjson.null and "null" or "a " .. type(entry)))
  end
  local fields = {}
  for k, v in pairs(entry) do
    local key = type(k) == "string" and ENTRY_KEYS[k:lower()]
    if key then
      if fields[key] ~= nil then return bad(i, ("." .. key .. " is given twice: send it once")) end
      fields[key] = v
    end
  end
  local name, value = fields.Name, fields.Value
  if value == nil or value == cjson.null then value = "" end
  if type(name) ~= "string" or name == "" then
    return bad(i, ".Name is required: give the header's name, such as X-Tenant")
  end
  if #name > MAX_NAME or not name:match(NAME_PATTERN) then
    return bad(i, (".Name is not a header name (letters, digits and !#$%%&'*+-.^_`|~, at most %d)"):format(MAX_NAME))
  end
  if RESERVED[name:lower()] then
    return bad(i, (".Name %s is set by kfsmtp itself (it decides where the token request goes and what it carries): choose another header"):format(name))
  end
  if type(value) ~= "string" then
    return bad(i, (".Value must be a string, not a %s"):format(type(value)))
  end
  if #value > MAX_VALUE then
    return bad(i, (".Value is longer than %d bytes"):format(MAX_VALUE))
  end
  -- Control characters other than tab would end or bend the header line.
  if value:find("[%z\1-\8\10-\31\127]") then
    return bad(i, ".Value holds a line break or another control character: give it on one line")
  end
  return name, value
end

-- read(v) --> list of { Name, Value } | nil, err (field RequestHeaders).
-- An empty list is no headers.
function _M.read(v)
  if type(v) ~= "table" then
    return nil, errors.field("RequestHeaders", ("RequestHeaders must be a list of {\"Name\", \"Value\"} objects, not %s."):format(
      type(v) == "string" and "the text given" or "a " .. type(v)))
  end
  local n = 0
  for k in pairs(v) do
    if type(k) ~= "number" then
      return nil, errors.field("RequestHeaders", "RequestHeaders must be a list (a JSON array) of {\"Name\", \"Value\"} objects.")
    end
    n = n + 1
  end
  if n > MAX_HEADERS then
    return nil, errors.field("RequestHeaders", ("RequestHeaders holds %d headers: at most %d are sent."):format(n, MAX_HEADERS))
  end
  local list, seen, total = json.array(), {}, 0
  for i = 1, n do
    local name, value = read_entry(i, v[i])
    if not name then return nil, value end
    if seen[name:lower()] then
      return bad(i, (".Name %s is given twice (also as RequestHeaders[%d]): send it once"):format(name, seen[name:lower()]))
    end
    seen[name:lower()] = i
    total = total + #name + #value + 4
    if total > MAX_TOTAL then
      return nil, errors.field("RequestHeaders", ("RequestHeaders are larger than %d bytes in all."):format(MAX_TOTAL))
    end
    list[i] = { Name = name, Value = value }
  end
  return list
end

-- The header lines for the token request: { "Name: Value", ... }; an
-- empty value as "Name;", which libcurl sends as "Name:" (it drops a
-- "Name:" line, taking it for "remove this header").
function _M.lines(list)
  local lines = {}
  for i, h in ipairs(list or {}) do
    lines[i] = h.Value == "" and h.Name .. ";" or h.Name .. ": " .. h.Value
  end
  return lines
end

-- A copy for output, always a JSON array.
function _M.out(list)
  local copy = json.array()
  for i, h in ipairs(list or {}) do copy[i] = { Name = h.Name, Value = h.Value } end
  return copy
end

return _M
