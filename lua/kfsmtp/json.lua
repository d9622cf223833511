-- JSON output with a stable key order. lua-cjson encodes every value; this
-- only decides the order of object keys (sorted, which is also the order
-- of the documented field tables) and tells arrays from objects, so that
-- an empty `warnings` is [] and not {}.
local cjson = require "cjson"

local _M = {}

-- lua-cjson decodes every JSON number as a float on Lua 5.4, and LuaJIT
-- has doubles only: a whole number as the integer Lua has for it.
local tointeger = math.tointeger or function(x)
  if type(x) == "number" and x == math.floor(x) and x > -2 ^ 53 and x < 2 ^ 53 then return x end
  return nil
end

-- whole(v) --> v as a whole number (from a number, or a decimal string of
-- at most 15 digits) | nil.
function _M.whole(v)
  if type(v) == "number" then return tointeger(v) end
  if type(v) == "string" and v:match("^[+-]?%d+$") and #v <= 15 then
    return tointeger(tonumber(v))
  end
  return nil
end

local array_mt = { __name = "kfsmtp.array" }
_M.array_mt = array_mt

function _M.array(t)
  return setmetatable(t or {}, array_mt)
end

local function is_array(t)
  if getmetatable(t) == array_mt then return true end
  local n = #t
  if n == 0 then return false end
  for k in pairs(t) do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return false end
  end
  return true
end

local encode

-- lua-cjson escapes "/" as "\/"; both are valid JSON, the bare one is
-- what people expect to read in paths such as /system_settings/read/.
-- A "\/" pair in cjson's output is always an escaped slash.
local function scalar(v)
  if type(v) == "string" then return (cjson.encode(v):gsub("\\/", "/")) end
  return cjson.encode(v)
end

local function encode_table(t, indent, depth, out)
  local pad_in = indent and ("\n" .. indent:rep(depth + 1)) or ""
  local pad_out = indent and ("\n" .. indent:rep(depth)) or ""
  local colon = indent and ": " or ":"
  if is_array(t) then
    if #t == 0 then out[#out + 1] = "[]"; return end
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = pad_in
      encode(t[i], indent, depth + 1, out)
    end
    out[#out + 1] = pad_out .. "]"
    return
  end
  local keys = {}
  for k in pairs(t) do
    if type(k) ~= "string" then
      error("kfsmtp.json: object keys must be strings, got " .. type(k), 0)
    end
    keys[#keys + 1] = k
  end
  if #keys == 0 then out[#out + 1] = "{}"; return end
  table.sort(keys)
  out[#out + 1] = "{"
  for i, k in ipairs(keys) do
    if i > 1 then out[#out + 1] = "," end
    out[#out + 1] = pad_in .. scalar(k) .. colon
    encode(t[k], indent, depth + 1, out)
  end
  out[#out + 1] = pad_out .. "}"
end

encode = function(v, indent, depth, out)
  if type(v) == "table" then
    encode_table(v, indent, depth, out)
  else
    out[#out + 1] = scalar(v)
  end
end

-- encode(value [, pretty]) --> string
function _M.encode(v, pretty)
  local out = {}
  encode(v, pretty and "  " or nil, 0, out)
  return table.concat(out)
end

return _M
