-- The store: atomic replacement, mode 0600, many writers, corrupt files,
-- and the get() cache.
local kfsmtp = require "kfsmtp"
local cjson = require "cjson"
local H = require "helpers"

local PROFILE = { Host = "mail.example.com", Port = 587, SenderAccount = "kf@example.com",
  UseSSL = true, RelayAuthenticationType = 2, RelayUsername = "CORP\\svc", RelayPassword = "Pa55-w0rd!" }

local function inode(path)
  return (H.sh("stat -c %i " .. H.q(path)):gsub("%s+$", ""))
end

local function listing(dir)
  local names = {}
  for name in H.sh("ls -A " .. H.q(dir)):gmatch("[^\n]+") do names[#names + 1] = name end
  table.sort(names)
  return names
end

describe("the store", function()
  it("starts as the default empty profile when the file is missing", function()
    local path = H.store_path()
    local p = assert(kfsmtp.open(path):get())
    assert.are.equal("", p.Host)
    assert.is_false(H.exists(path), "reading creates nothing")
  end)

  it("replaces the file atomically: new inode, mode 0600, no temporary file left", function()
    local path = H.store_path()
    local store = kfsmtp.open(path)
    assert(store:update(PROFILE))
    local first = inode(path)
    assert.are.equal("600", (H.sh("stat -c %a " .. H.q(path)):gsub("%s+$", "")))
    assert(store:update(PROFILE))
    assert.are_not.equal(first, inode(path))
    local dir = path:match("^(.*)/")
    assert.are.same({ "store.json", "store.json.lock" }, listing(dir))
    local doc = cjson.decode(H.read(path))
    assert.are.equal("mail.example.com", doc.Host)
  end)

  it("is written 0600 even under umask 000", function()
    local path = H.store_path()
    local out, ok = H.sh(("umask 000 && %s spec/support/writer.lua %s 1 1"):format(H.lua_run, H.q(path)))
    assert(ok, out)
    assert.are.equal("600", (H.sh("stat -c %a " .. H.q(path)):gsub("%s+$", "")))
    assert.are.equal("600", (H.sh("stat -c %a " .. H.q(path .. ".lock")):gsub("%s+$", "")))
  end)

  it("keeps 8 concurrent writer processes × 200 updates from tearing or mixing a profile", function()
    local path = H.store_path()
    local cmds = {}
    for id = 1, 8 do
      cmds[#cmds + 1] = ("%s spec/support/writer.lua %s %d 200 &"):format(H.lua_run, H.q(path), id)
    end
    local out, ok = H.sh(table.concat(cmds, " ") .. " wait")
    assert(ok, out)
    local doc = cjson.decode(H.read(path))
    local id = math.floor(doc.Port) - 1000
    assert.is_true(id >= 1 and id <= 8)
    -- Every field of the final profile comes from the same writer.
    assert.are.equal(("writer%d.example.com"):format(id), doc.Host)
    assert.are.equal(("w%d@example.com"):format(id), doc.SenderAccount)
    assert.are.equal("writer" .. id, doc.RelayUsername)
    assert.are.equal("pw" .. id, doc.RelayPassword)
    assert.truthy(doc.SenderName:match("^writer " .. id .. " #%d+$"))
    assert.are.same({ "store.json", "store.json.lock" }, listing(path:match("^(.*)/")))
  end)

  it("always holds a whole profile when writers are killed with SIGKILL at random points, 200 times", function()
    local path = H.store_path()
    local dir = path:match("^(.*)/")
    math.randomseed(os.time())
    local seen_tmp = 0
    for round = 1, 200 do
      local id = round % 9 + 1
      local pid = H.sh(("%s spec/support/writer.lua %s %d 100000 > /dev/null 2>&1 & echo $!"):format(H.lua_run, H.q(path), id))
      H.sleep(0.005 + math.random() * 0.03)
      H.sh("kill -9 " .. pid:match("%d+"))
      if H.exists(path) then
        local doc = cjson.decode(H.read(path))
        local w = math.floor(doc.Port) - 1000
        assert.are.same({ ("writer%d.example.com"):format(w), ("w%d@example.com"):format(w), "pw" .. w },
          { doc.Host, doc.SenderAccount, doc.RelayPassword })
      end
      for _, name in ipairs(listing(dir)) do
        if name:find(".tmp.", 1, true) then seen_tmp = seen_tmp + 1 end
      end
    end
    -- The next update, under the lock, removes what killed writers left.
    local out, ok = H.sh(("%s spec/support/writer.lua %s 1 1"):format(H.lua_run, H.q(path)))
    assert(ok, out)
    assert.are.same({ "store.json", "store.json.lock" }, listing(dir))
    print(("\n# %d temporary files seen left by killed writers over 200 rounds; all swept"):format(seen_tmp))
  end)

  it("reports a corrupt file clearly and never overwrites it", function()
    local path = H.store_path()
    local junk = '{"Host": "mail.example.com", "Port": '
    H.write(path, junk)
    local store = kfsmtp.open(path)
    local p, err = store:get()
    assert.is_nil(p)
    assert.are.equal(500, err.status)
    assert.are.equal("0xA05300F0", err.ErrorCode)
    assert.are.equal("store", err.stage)
    assert.truthy(err.Message:find(path, 1, true))
    p, err = store:update(PROFILE)
    assert.is_nil(p)
    assert.are.equal("0xA05300F0", err.ErrorCode)
    assert.are.equal(junk, H.read(path), "the corrupt file is left for a person to inspect")
  end)

  it("takes an empty file (as touch makes it) for the empty profile, and a truncated one as corrupt", function()
    local path = H.store_path()
    H.write(path, "")
    local store = kfsmtp.open(path)
    assert.are.equal("", assert(store:get()).Host)
    assert(store:update(PROFILE))
    H.write(path, H.read(path):sub(1, 30))
    local p, err = store:get()
    assert.is_nil(p)
    assert.are.equal("0xA05300F0", err.ErrorCode)
  end)

  it("reports a well-formed file with a bad value as corrupt, naming the field", function()
    local path = H.store_path()
    H.write(path, '{"Host":"mail.example.com","Port":"many"}')
    local p, err = kfsmtp.open(path):get()
    assert.is_nil(p)
    assert.are.equal(500, err.status)
    assert.truthy(err.Message:find("Port", 1, true))
  end)

  it("does not re-read an unchanged file on get(), and sees another process's write", function()
    local path = H.store_path()
    local store = kfsmtp.open(path)
    assert(store:update(PROFILE))
    -- A file changed within the last second or two is read on every call
    -- (file times are only as fine as the kernel's tick).
    H.sleep(2.1)
    assert(store:get())
    local reads = store.reads
    for _ = 1, 200 do assert(store:get()) end
    assert.are.equal(reads, store.reads)
    local out, ok = H.sh(("%s spec/support/writer.lua %s 3 1"):format(H.lua_run, H.q(path)))
    assert(ok, out)
    assert.are.equal("writer3.example.com", store:get().Host)
    assert.are.equal(reads + 1, store.reads)
  end)

  it("sees an edit made by hand (no kfsmtp writer) at the next get()", function()
    local path = H.store_path()
    local store = kfsmtp.open(path)
    assert(store:update(PROFILE))
    assert.are.equal("mail.example.com", store:get().Host)
    -- In place, the same size, at once: only the content differs.
    H.write(path, (H.read(path):gsub("mail%.example%.com", "mail.example.net")))
    assert.are.equal("mail.example.net", store:get().Host)
    H.sleep(2.1)
    assert.are.equal("mail.example.net", store:get().Host)
    H.write(path, '{"Host":"edited.example.com","SenderAccount":"kf@example.com"}')
    assert.are.equal("edited.example.com", store:get().Host)
    -- A corrupt edit is an error at once, never the old profile.
    H.write(path, '{"Host": ')
    local p, err = store:get()
    assert.is_nil(p)
    assert.are.equal("store_corrupt", err.kind)
  end)

  it("comes from KFSMTP_STORE or configure{store=}", function()
    local path = H.store_path()
    local out, ok = H.sh(("KFSMTP_STORE=%s %s -e %s"):format(H.q(path), H.lua_run, H.q(
      [[package.path="lua/?.lua;"..package.path; package.cpath="]] .. H.build ..
      [[/?.so;"..package.cpath; local k=require"kfsmtp"; assert(k.update{Host="env.example.com",SenderAccount="a@example.com"})]])))
    assert(ok, out)
    assert.are.equal("env.example.com", cjson.decode(H.read(path)).Host)
    local other = H.store_path()
    kfsmtp.configure { store = other }
    assert(kfsmtp.update { Host = "conf.example.com", SenderAccount = "a@example.com" })
    assert.are.equal("conf.example.com", kfsmtp.get().Host)
    assert.are.equal("conf.example.com", cjson.decode(H.read(other)).Host)
  end)
end)
