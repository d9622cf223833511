-- core.read_secret_file: a secret from a file in an operator's folder, as
-- Docker (/run/secrets), Kubernetes (a secret volume, each key a link into
-- ..data/) and systemd ($CREDENTIALS_DIRECTORY) hand them over. What is
-- read must stay inside the folder whatever links say, be a regular file
-- of this user or root, closed to others, and no longer than max; every
-- refusal says why and what to do, and never quotes the file. No servers.
-- The suite runs as root, so "owned by someone else" is uid 65534.
local core = require "kfsmtp.core"
local H = require "helpers"

describe("core.read_secret_file", function()
  local made = {}
  -- A fresh folder, removed after the spec.
  local function folder()
    local d = H.tmpdir()
    made[#made + 1] = d
    return d
  end
  teardown(function()
    for _, d in ipairs(made) do H.exec("rm -rf " .. H.q(d)) end
  end)

  -- A file with content and mode (default 0600), owned by root.
  local function file(path, content, mode)
    H.write(path, content)
    assert(H.exec(("chmod %s %s"):format(mode or "600", H.q(path))))
    return path
  end
  local function sh(cmd)
    local out, ok = H.sh(cmd)
    assert(ok, cmd .. ": " .. out)
  end

  local dir
  before_each(function() dir = folder() end)

  local function read(path, max)
    return core.read_secret_file { dir = dir, path = path, max = max }
  end

  -- Every refused file holds "CONTENT-...": no value returned may quote it.
  local function no_content(...)
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      assert.truthy(v == nil or type(v) == "string", tostring(v))
      assert.falsy(v and v:find("CONTENT", 1, true), v)
    end
  end
  -- The call is refused with kind; its message names the path as given
  -- and holds each of words.
  local function refused(kind, path, words, max)
    local value, message, got = read(path, max)
    no_content(value, message, got)
    assert.is_nil(value)
    assert.are.equal(kind, got, message)
    assert.is_string(message)
    assert.truthy(message:find(("secret file %q in %q "):format(path, dir), 1, true), message)
    assert.falsy(message:find("[\r\n]"), message)
    for _, w in ipairs(words or {}) do
      assert.truthy(message:find(w, 1, true), message)
    end
    return message
  end

  it("reads a good file exactly, without one trailing line end", function()
    local cases = {
      { "s3cret-Value\n", "s3cret-Value" }, { "s3cret-Value", "s3cret-Value" },
      { "crlf\r\n", "crlf" }, { "two\n\n", "two\n" }, { "two crlf\r\n\r\n", "two crlf\r\n" },
      { "lone cr\r", "lone cr\r" }, { "\n", "" }, { "", "" }, { "  spaced \t", "  spaced \t" },
      { "bin\0ary\255\n", "bin\0ary\255" }, { "multi\nline\n", "multi\nline" },
    }
    for i, c in ipairs(cases) do
      file(dir .. "/s" .. i, c[1])
      assert.are.equal(c[2], read("s" .. i))
    end
  end)

  it("takes group bits (0640, 0660, 0400) and a file in a folder below", function()
    for _, mode in ipairs { "640", "660", "400", "440" } do
      file(dir .. "/m" .. mode, "mode-" .. mode .. "\n", mode)
      assert.are.equal("mode-" .. mode, read("m" .. mode))
    end
    sh(("mkdir %s"):format(H.q(dir .. "/sub")))
    file(dir .. "/sub/key", "below\n")
    assert.are.equal("below", read("sub/key"))
    assert.are.equal("below", read("./sub/../sub/key"))
  end)

  it("follows links that stay inside the folder: relative, absolute, and Kubernetes' ..data layout", function()
    file(dir .. "/target", "linked-value\n")
    sh(("ln -s target %s"):format(H.q(dir .. "/rel")))
    sh(("ln -s %s %s"):format(H.q(dir .. "/target"), H.q(dir .. "/abs")))
    assert.are.equal("linked-value", read("rel"))
    assert.are.equal("linked-value", read("abs"))
    -- kubelet: ..2024_01_01_00_00_00.1/key, ..data -> that, key -> ..data/key
    sh(("mkdir %s"):format(H.q(dir .. "/..2024_01_01_00_00_00.1")))
    file(dir .. "/..2024_01_01_00_00_00.1/password", "k8s-value\n", "440")
    sh(("ln -s ..2024_01_01_00_00_00.1 %s"):format(H.q(dir .. "/..data")))
    sh(("ln -s ..data/password %s"):format(H.q(dir .. "/password")))
    assert.are.equal("k8s-value", read("password"))
  end)

  it("resolves a folder given through a link, and reads a path that starts with / under the folder", function()
    file(dir .. "/key", "via-linked-folder\n")
    local link = folder() .. "/secrets"
    sh(("ln -s %s %s"):format(H.q(dir), H.q(link)))
    assert.are.equal("via-linked-folder", core.read_secret_file { dir = link, path = "key" })
    assert.are.equal("via-linked-folder", core.read_secret_file { dir = dir .. "/", path = "key" })
    assert.are.equal("via-linked-folder", read("/key"))
    refused("missing", "/etc/hostname")
  end)

  it("refuses what leads outside the folder: a link out, an absolute link out, ../, a link to the folder's parent", function()
    local outside = folder()
    file(outside .. "/other", "CONTENT-outside-link\n")
    sh(("ln -s %s %s"):format(H.q(outside .. "/other"), H.q(dir .. "/abs-out")))
    local m = refused("outside", "abs-out", { "outside the folder", "inside the folder" })
    -- The message does not say where the link leads.
    assert.falsy(m:find(outside, 1, true), m)
    sh(("ln -s ../%s/other %s"):format(H.q(outside:match("[^/]+$")), H.q(dir .. "/rel-out")))
    refused("outside", "rel-out")
    refused("outside", "../" .. outside:match("[^/]+$") .. "/other")
    -- A secrets folder inside a parent that holds a file beside it.
    local parent = folder()
    sh(("mkdir %s"):format(H.q(parent .. "/secrets")))
    file(parent .. "/x", "CONTENT-dotdot\n")
    local value, message, kind = core.read_secret_file { dir = parent .. "/secrets", path = "../x" }
    no_content(value, message, kind)
    assert.are.same({ nil, "outside" }, { value, kind })
    sh(("ln -s .. %s"):format(H.q(parent .. "/secrets/up")))
    value, message, kind = core.read_secret_file { dir = parent .. "/secrets", path = "up/x" }
    no_content(value, message, kind)
    assert.are.same({ nil, "outside" }, { value, kind })
    -- A sibling whose name starts with the folder's is outside too.
    local sibling = dir .. "-sibling"
    made[#made + 1] = sibling
    sh(("mkdir %s"):format(H.q(sibling)))
    file(sibling .. "/other", "CONTENT-sibling\n")
    sh(("ln -s %s %s"):format(H.q(sibling .. "/other"), H.q(dir .. "/to-sibling")))
    refused("outside", "to-sibling")
    -- A link out to a file that is not even there is missing, not outside:
    -- nothing was opened.
    sh(("ln -s /nonexistent/kfsmtp-secret %s"):format(H.q(dir .. "/dangling")))
    refused("missing", "dangling")
  end)

  it("refuses a FIFO at once, without waiting for a writer", function()
    sh(("mkfifo -m 600 %s"):format(H.q(dir .. "/fifo")))
    -- In a child under `timeout`, so a regression fails instead of hanging.
    local script = dir .. "/.call.lua"
    H.write(script, ([[
package.cpath = %q .. "/?.so;" .. package.cpath
local v, m, k = require("kfsmtp.core").read_secret_file { dir = %q, path = "fifo" }
print(tostring(v) .. "|" .. tostring(k) .. "|" .. tostring(m))
]]):format(H.build, dir))
    local t0 = H.now_ms()
    local out, ok = H.sh(("timeout 5 %s %s"):format(H.lua_run, H.q(script)))
    local ms = H.now_ms() - t0
    assert(ok, "the call did not return within 5 s (or failed): " .. out)
    assert.truthy(out:find("nil|not_regular|", 1, true), out)
    assert.truthy(out:find("is a FIFO, not a regular file", 1, true), out)
    assert.is_true(ms < 2000, ms .. " ms")
    -- And in this process too.
    refused("not_regular", "fifo", { "FIFO" })
  end)

  it("refuses a folder", function()
    sh(("mkdir -m 700 %s"):format(H.q(dir .. "/sub")))
    refused("not_regular", "sub", { "is a folder, not a regular file" })
    refused("not_regular", "", { "is a folder" })
    refused("not_regular", ".", { "is a folder" })
  end)

  it("refuses a file others may read, write or run, naming chmod o-rwx", function()
    for _, mode in ipairs { "644", "604", "602", "601", "666", "777" } do
      file(dir .. "/m" .. mode, "CONTENT-mode-" .. mode .. "\n", mode)
      refused("permissions", "m" .. mode, { ("mode 0%s"):format(mode), "chmod o-rwx" })
    end
  end)

  it("refuses a file owned by another user, naming chown", function()
    file(dir .. "/theirs", "CONTENT-owner\n")
    sh(("chown 65534 %s"):format(H.q(dir .. "/theirs")))
    refused("owner", "theirs", { "owned by uid 65534", "chown root" })
    -- Owner is checked on the file a link leads to, not on the link.
    sh(("ln -s theirs %s"):format(H.q(dir .. "/link-to-theirs")))
    refused("owner", "link-to-theirs")
  end)

  it("as another user: reads its own file and root's through the group; refuses a third user's, and one it may not open", function()
    -- A child under uid and gid 65534, loading a copy of the module any
    -- user can read.
    local mod = folder()
    sh(("mkdir -p %s && cp %s %s && chmod -R a+rX %s && chmod 755 %s"):format(H.q(mod .. "/kfsmtp"),
      H.q(H.build .. "/kfsmtp/core.so"), H.q(mod .. "/kfsmtp/core.so"), H.q(mod), H.q(dir)))
    file(dir .. "/mine", "own-value\n")
    sh(("chown 65534:65534 %s"):format(H.q(dir .. "/mine")))
    file(dir .. "/roots", "root-group-value\n", "640")
    sh(("chown 0:65534 %s"):format(H.q(dir .. "/roots")))
    file(dir .. "/third", "CONTENT-third\n", "640")
    sh(("chown 1:65534 %s"):format(H.q(dir .. "/third")))
    file(dir .. "/closed", "CONTENT-closed\n")
    H.write(mod .. "/call.lua", ([[
package.cpath = %q .. "/?.so;" .. package.cpath
local core = require "kfsmtp.core"
for _, p in ipairs { "mine", "roots", "third", "closed" } do
  local v, m, k = core.read_secret_file { dir = %q, path = p }
  print(p .. "|" .. tostring(v) .. "|" .. tostring(k) .. "|" .. tostring(m))
end
]]):format(mod, dir))
    local out, ok = H.sh(("timeout 5 setpriv --reuid=65534 --regid=65534 --clear-groups %s %s"):format(
      H.lua_run, H.q(mod .. "/call.lua")))
    assert(ok, out)
    local got = {}
    for p, v, k, m in out:gmatch("(%w+)|([^|]*)|([^|]*)|([^\n]*)") do got[p] = { v, k, m } end
    assert.are.same({ "own-value", "nil", "nil" }, got.mine)
    assert.are.same({ "root-group-value", "nil", "nil" }, got.roots)
    assert.are.same({ "nil", "owner" }, { got.third[1], got.third[2] })
    assert.truthy(got.third[3]:find("owned by uid 1, neither this process's user (uid 65534) nor root: run chown 65534 (or chown root) on it.", 1, true), got.third[3])
    assert.are.same({ "nil", "unreadable" }, { got.closed[1], got.closed[2] })
    assert.truthy(got.closed[3]:find("cannot be opened (Permission denied)", 1, true), got.closed[3])
    assert.falsy(out:find("CONTENT", 1, true), out)
  end)

  it("refuses a file longer than max rather than cutting it", function()
    file(dir .. "/nine", "CONTENT-9")
    refused("too_large", "nine", { "longer than 8 bytes", "raise max" }, 8)
    file(dir .. "/eight", "12345678")
    assert.are.equal("12345678", read("eight", 8))
    -- max counts the file's bytes, line end included.
    file(dir .. "/eight-nl", "1234567\n")
    assert.are.equal("1234567", read("eight-nl", 8))
    file(dir .. "/eight-and-nl", "CONTENT8\n")
    refused("too_large", "eight-and-nl", nil, 8)
    -- The default, 16384.
    file(dir .. "/big", ("CONTENT-big "):rep(1366))
    refused("too_large", "big", { "longer than 16384 bytes" })
    file(dir .. "/max", ("x"):rep(16384))
    assert.are.equal(16384, #read("max"))
    file(dir .. "/huge", ("y"):rep(1024 * 1024))
    assert.are.equal(1024 * 1024, #read("huge", 1024 * 1024))
  end)

  it("says missing for a file or folder that is not there", function()
    refused("missing", "absent", { "does not exist", "correct the path" })
    file(dir .. "/plain", "CONTENT-plain\n")
    refused("missing", "plain/below")
    local gone = folder() .. "/no-such-folder"
    local value, message, kind = core.read_secret_file { dir = gone, path = "key" }
    assert.are.same({ nil, "missing" }, { value, kind })
    assert.truthy(message:find("create the folder, or correct dir", 1, true), message)
  end)

  it("says unreadable for a loop of links", function()
    sh(("ln -s b %s && ln -s a %s"):format(H.q(dir .. "/a"), H.q(dir .. "/b")))
    refused("unreadable", "a", { "symbolic links" })
  end)

  it("quotes a path's control bytes, keeping the message on one line", function()
    local value, message, kind = read("bad\r\nname\"\\")
    assert.are.same({ nil, "missing" }, { value, kind })
    assert.truthy(message:find([[secret file "bad\x0d\x0aname\"\\" in ]], 1, true), message)
  end)

  it("raises for a wrong argument, naming the field", function()
    local function err(t)
      local ok, e = pcall(core.read_secret_file, t)
      assert.is_false(ok)
      return e
    end
    assert.are.equal("kfsmtp.core.read_secret_file: field 'dir' must be an absolute path",
      err { dir = "relative/secrets", path = "key" })
    assert.are.equal("kfsmtp.core.read_secret_file: field 'dir' must be a string, not nil",
      err { path = "key" })
    assert.are.equal("kfsmtp.core.read_secret_file: field 'path' must be a string without NUL bytes",
      err { dir = dir, path = "key\0.txt" })
    assert.are.equal("kfsmtp.core.read_secret_file: field 'path' must be a string, not nil",
      err { dir = dir })
    assert.are.equal("kfsmtp.core.read_secret_file: field 'max' must be an integer from 1 to 1048576",
      err { dir = dir, path = "key", max = 0 })
    assert.are.equal("kfsmtp.core.read_secret_file: field 'max' must be an integer from 1 to 1048576",
      err { dir = dir, path = "key", max = 1048577 })
    assert.are.equal("kfsmtp.core.read_secret_file: argument #1 must be a table of fields, not a string",
      err(dir))
  end)
end)
