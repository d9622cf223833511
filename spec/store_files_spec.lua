-- The store in a folder others can write: what may be planted there (a
-- symbolic link, a FIFO, a device, a folder, an array) must never make
-- kfsmtp write through it, hang, or treat it as a profile. Each call runs
-- in a child under `timeout`, so a regression fails instead of hanging
-- the suite.
local cjson = require "cjson"
local H = require "helpers"

local PROFILE = { Host = "mail.example.com", SenderAccount = "kf@example.com",
  RelayAuthenticationType = 2, RelayUsername = "svc", RelayPassword = "planted-link-pw" }

-- Runs kfsmtp.open(path):<method>(...) in a child; --> the JSON of what it
-- returned ({ ok = bool, err = { kind, stage, Message } }), seconds taken.
local function call(path, method)
  local script = H.tmpdir() .. "/call.lua"
  H.write(script, ([[
package.path = "lua/?.lua;" .. package.path
package.cpath = %q .. "/?.so;" .. package.cpath
local cjson = require "cjson"
local store = require("kfsmtp").open(%q)
local p, err = store:%s(%s)
print(cjson.encode { ok = p ~= nil, err = err and { kind = err.kind, stage = err.stage, Message = err.Message } or nil })
]]):format(H.build, path, method, method == "update" and ("cjson.decode(%q)"):format(cjson.encode(PROFILE)) or ""))
  local t0 = H.now_ms()
  local out, ok = H.sh(("timeout 5 %s %s"):format(H.lua_run, H.q(script)))
  local seconds = (H.now_ms() - t0) / 1000
  assert(ok, "the call did not return within 5 s (or failed): " .. out)
  return cjson.decode(out:match("{.*}")), seconds
end

-- The answer is the store's error, naming what is there.
local function refused(result, words)
  assert.is_false(result.ok)
  assert.are.equal("store", result.err.stage)
  assert.truthy(result.err.Message:find(words, 1, true), result.err.Message)
end

describe("the store's files", function()
  local dir, path
  before_each(function()
    dir = H.tmpdir()
    path = dir .. "/store.json"
  end)

  it("never writes through a symbolic link planted at the lock", function()
    local victim = H.tmpdir() .. "/victim"
    H.write(victim, "precious bytes\n")
    H.exec(("ln -s %s %s"):format(H.q(victim), H.q(path .. ".lock")))
    refused(call(path, "update"), "it is a symbolic link, not a regular file")
    assert.are.equal("precious bytes\n", H.read(victim))
    assert.is_false(H.exists(path), "nothing was stored")
  end)

  it("neither follows nor creates anything through a dangling link at the store or its lock", function()
    local target = H.tmpdir() .. "/created-through-link"
    H.exec(("ln -s %s %s"):format(H.q(target), H.q(path)))
    refused(call(path, "get"), "symbolic link")
    refused(call(path, "update"), "symbolic link")
    assert.is_false(H.exists(target))
    local lock_target = H.tmpdir() .. "/lock-through-link"
    local other = dir .. "/other.json"
    H.exec(("ln -s %s %s"):format(H.q(lock_target), H.q(other .. ".lock")))
    assert.is_true(call(other, "get").ok, "a get needs no lock")
    refused(call(other, "update"), "symbolic link")
    assert.is_false(H.exists(lock_target))
  end)

  it("does not block on a FIFO at the store path", function()
    H.exec("mkfifo " .. H.q(path))
    for _, method in ipairs { "get", "update" } do
      local result, seconds = call(path, method)
      refused(result, "it is a FIFO, not a regular file")
      assert.is_true(seconds < 4, method .. " took " .. seconds .. " s")
    end
  end)

  it("names a device or a folder at the store path by its type", function()
    H.exec("mknod " .. H.q(path) .. " c 1 3")
    refused(call(path, "get"), "it is a character device, not a regular file")
    refused(call(path, "update"), "character device")
    local folder = dir .. "/folder.json"
    H.exec("mkdir " .. H.q(folder))
    refused(call(folder, "get"), "it is a directory, not a regular file")
  end)

  it("treats a store that is not a JSON object as corrupt and never overwrites it", function()
    H.write(path, "[1,2,3]\n")
    local result = call(path, "get")
    assert.is_false(result.ok)
    assert.are.equal("store_corrupt", result.err.kind)
    assert.truthy(result.err.Message:find("not a JSON object (found an array)", 1, true), result.err.Message)
    assert.are.equal("store_corrupt", call(path, "update").err.kind)
    assert.are.equal("[1,2,3]\n", H.read(path))
  end)
end)
