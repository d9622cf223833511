-- Secrets a server echoes back. kfsmtp never puts a secret in what it
-- returns, but a server may: a reply that repeats the AUTH payload, a
-- token endpoint that quotes the client secret in error_description. Every
-- value kfsmtp sent as a secret (password, client secret, token) is found
-- in clear, in base64 at any alignment (it sits inside a SASL payload at
-- some offset) and URL-encoded as libcurl sent it, and replaced by ***
-- in every string of what a call returns.
local core = require "kfsmtp.core"

local type, pairs, ipairs, floor, ceil = type, pairs, ipairs, math.floor, math.ceil

local _M = {}

-- Shorter needles would mask ordinary text; a secret this short is weak
-- anyway, and its longer encodings are still found.
local MIN_NEEDLE = 4
local MASK = "***"

-- The base64 characters that depend on the secret's bytes alone when it
-- starts `offset` bytes (0, 1 or 2) into a base64-encoded payload.
local function base64_core(secret, offset)
  local encoded = core.base64(("\0"):rep(offset) .. secret)
  -- Character j (from 0) carries bits 6j .. 6j+5 of the bytes.
  local first = ceil(8 * offset / 6)
  local last = floor(8 * (offset + #secret) / 6) - 1
  return encoded:sub(first + 1, last + 1)
end

-- needles(secrets) --> the strings to mask, longest first.
function _M.needles(secrets)
  local list, seen = {}, {}
  local function add(s)
    if s and #s >= MIN_NEEDLE and not seen[s] then
      seen[s] = true
      list[#list + 1] = s
    end
  end
  for _, secret in ipairs(secrets) do
    if type(secret) == "string" and secret ~= "" then
      add(secret)
      local escaped = core.url_escape(secret)
      add(escaped)
      add((escaped:gsub("%%20", "+")))
      add((escaped:gsub("%%%x%x", string.lower)))
      for offset = 0, 2 do add(base64_core(secret, offset)) end
    end
  end
  table.sort(list, function(a, b) return #a > #b end)
  return list
end

-- One pass per needle, the pieces joined once: linear in the string's
-- length however often a server repeats the secret.
local function mask_string(s, needles)
  for _, needle in ipairs(needles) do
    if s:find(needle, 1, true) then
      local pieces, from = {}, 1
      while true do
        local i, j = s:find(needle, from, true)
        if not i then break end
        pieces[#pieces + 1] = s:sub(from, i - 1)
        pieces[#pieces + 1] = MASK
        from = j + 1
      end
      pieces[#pieces + 1] = s:sub(from)
      s = table.concat(pieces)
    end
  end
  return s
end

-- mask(value, needles) --> value with every needle in every string value
-- (of nested tables too) replaced; tables are changed in place.
function _M.mask(value, needles, seen)
  if #needles == 0 then return value end
  if type(value) == "string" then return mask_string(value, needles) end
  if type(value) ~= "table" then return value end
  seen = seen or {}
  if seen[value] then return value end
  seen[value] = true
  for k, v in pairs(value) do
    value[k] = _M.mask(v, needles, seen)
  end
  return value
end

return _M
