-- The door into the C core: every kfsmtp.core function, called with every
-- kind of wrong value in every field and argument (spec/support/
-- core_misuse.lua), raises an error naming the function and the key, before
-- any I/O; values of the right type are taken. Then correct calls, and the
-- same misuse under valgrind (#memcheck, Lua 5.4 only).
local core = require "kfsmtp.core"
local H = require "helpers"
local misuse = require "core_misuse"

describe("kfsmtp.core refuses wrong values at the door", function()
  local ctx = { dir = H.tmpdir(), closed = H.closed_port() }
  local cases, order = {}, {}
  misuse.each(core, ctx, function(case)
    if not cases[case.fn] then
      cases[case.fn] = {}
      order[#order + 1] = case.fn
    end
    table.insert(cases[case.fn], case)
  end)

  for _, fn in ipairs(order) do
    it(fn .. ": every wrong value raises naming the function and the key", function()
      local wrong, raised = {}, 0
      for _, case in ipairs(cases[fn]) do
        local ok, err = case.run()
        wrong[#wrong + 1] = misuse.verdict(case, ok, err)
        if not ok then raised = raised + 1 end
      end
      assert.are.same({}, wrong)
      assert.is_true(raised > 0)
    end)
  end

  it("names the function and the range in the message", function()
    local ok, err = pcall(core.deliver, { host = "127.0.0.1", port = 1e300, tls_mode = "none" })
    assert.is_false(ok)
    assert.are.equal("kfsmtp.core.deliver: field 'port' must be an integer from 1 to 65535", err)
    err = select(2, pcall(core.compose, { sender_name = 7 }))
    assert.are.equal("kfsmtp.core.compose: field 'sender_name' must be a string, not a number", err)
    err = select(2, pcall(core.store_read, "a\0b"))
    assert.are.equal("kfsmtp.core.store_read: argument #1 'path' must be a string without NUL bytes", err)
    err = select(2, pcall(core.deliver, "host"))
    assert.are.equal("kfsmtp.core.deliver: argument #1 must be a table of fields, not a string", err)
  end)
end)

describe("kfsmtp.core taken correctly", function()
  local function compose(over)
    local t = { sender_name = "Zertifikatsstelle Köln", sender_account = "kf@example.com",
      recipient = "ops@example.com", host = "mail.example.com", port = 587, tls_mode = "starttls",
      now = 1795506760 }
    for k, v in pairs(over or {}) do t[k] = v end
    return core.compose(t)
  end

  it("compose returns the message and its Message-ID", function()
    local message, id = compose()
    local headers, body = H.parse_message(message)
    assert.are.equal(os.date("!%a, %d %b %Y %H:%M:%S +0000", 1795506760), headers.date)
    assert.are.equal(id, headers["message-id"])
    assert.truthy(id:match("^<%d+%.%x+%.kfsmtp@example%.com>$"), id)
    assert.truthy(body:find("Port: 587\r\nTLS: STARTTLS\r\n", 1, true), body)
  end)

  it("compose names each TLS mode and takes a whole-valued float as an integer", function()
    for mode, words in pairs { none = "no TLS", starttls = "STARTTLS", implicit = "implicit TLS" } do
      local message = compose { tls_mode = mode, port = 465.0 }
      assert.truthy(message:find("Port: 465\r\nTLS: " .. words .. "\r\n", 1, true), message)
    end
    assert.truthy(compose { now = 0 }:find("Date: Thu, 01 Jan 1970 00:00:00 +0000", 1, true))
    local message = core.compose { sender_name = "", sender_account = "kf@example.com",
      recipient = "ops@example.com", host = "mail.example.com", tls_mode = "none" }
    assert.truthy(message:find("Date: [^\r]* " .. os.date("!%Y") .. " ", 1), message)
    assert.truthy(message:find("Port: 25\r\n", 1, true), message)
  end)

  it("keeps strings alive that only its own stack holds", function()
    local message, id, r = misuse.proxied(core, { closed = H.closed_port() })
    assert.truthy(message:find("From: " .. ("Zertifikatsstelle "):rep(4), 1, true)
      or message:find("From: \"" .. ("Zertifikatsstelle "):rep(4), 1, true), message)
    assert.truthy(message:find("TLS: implicit TLS", 1, true))
    assert.truthy(message:find(id, 1, true))
    assert.is_false(r.ok)
    assert.are.equal("connect", r.stage)
  end)

  it("deliver to a closed port answers ok = false at stage connect", function()
    local r = core.deliver { host = "127.0.0.1", port = H.closed_port(), tls_mode = "starttls",
      mail_from = "<kf@example.com>", rcpt_to = "<ops@example.com>", message = "x\r\n",
      helo = "localhost", connect_timeout_ms = 2000, transcript = true }
    assert.is_false(r.ok)
    assert.are.equal("connect", r.stage)
    assert.is_string(r.curl_error)
    assert.are.same({}, r.transcript)
  end)

  it("fetch_token from a closed port answers ok = false with no status and no body", function()
    local r = core.fetch_token { endpoint = ("http://127.0.0.1:%d/token"):format(H.closed_port()),
      client_id = "id", client_secret = "secret", connect_timeout_ms = 2000 }
    assert.is_false(r.ok)
    assert.are.equal(0, r.http_status)
    assert.are.equal("", r.body)
    assert.is_string(r.curl_error)
  end)

  it("the store functions and the lock work", function()
    local path = H.store_path()
    assert.is_false((core.store_read(path)))
    assert.are.equal("missing", core.store_stat(path))
    local written, sig = core.store_write(path, "{}\n\0binary")
    assert.is_true(written)
    -- The signature of the file written, as a stat of the path sees it.
    assert.are.equal(core.store_stat(path), sig)
    assert.are.same({ "{}\n\0binary", sig }, { core.store_read(path) })
    -- Another file put there a moment later has another signature.
    H.write(path .. ".other", "{}\n\0binary")
    os.rename(path .. ".other", path)
    assert.are_not.equal(sig, core.store_stat(path))
    local lock = assert(core.store_lock(path))
    lock:release()
    lock:release()
    assert.are.equal(0, core.store_sweep(path))
    local _, why, errno = core.store_read(path .. "/inside-a-file")
    assert.is_string(why)
    assert.is_number(errno)
  end)

  it("password_hash and password_verify agree; a malformed hash is a failure, not an error", function()
    local hash = core.password_hash("correct horse\0battery", 1000)
    assert.truthy(hash:match("^pbkdf2%-sha256%$1000%$"))
    assert.is_true(core.password_verify("correct horse\0battery", hash))
    assert.is_false(core.password_verify("correct horse", hash))
    local ok, why = core.password_verify("x", "not a hash")
    assert.is_nil(ok)
    assert.are.equal("malformed password hash", why)
  end)

  it("the checks answer nil or the reason", function()
    assert.is_nil(core.check_host("mail.example.com"))
    assert.is_string(core.check_host("mail\0example.com"))
    assert.is_nil(core.check_mailbox("kf@example.com"))
    assert.is_string(core.check_text(("x"):rep(1024 * 1024)))
    assert.is_nil(core.check_display_name("Zertifikatsstelle Köln"))
    assert.is_string(core.hostname())
  end)
end)

describe("kfsmtp.core's door under valgrind #memcheck", function()
  it("raises for every misuse with no invalid access and nothing lost", function()
    local out, problem = H.memcheck(("spec/support/core_memcheck.lua %s %d"):format(
      H.q(H.tmpdir()), H.closed_port()))
    assert.truthy(out:find("core misuse done: %d+ calls, 0 wrong"), out)
    assert.is_nil(problem)
  end)
end)
