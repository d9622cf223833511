-- Hostile input: every value is either refused with a 400 (404 for Id)
-- naming its field, or accepted and sent safely. "Safely" is checked on the
-- wire: the server saw exactly one MAIL, one RCPT and one DATA, and the
-- message has exactly the headers kfsmtp writes, with CRLF line ends only.
local kfsmtp = require "kfsmtp"
local H = require "helpers"

local LONG = ("a"):rep(300)
local HOSTILE = {
  { "Host", "mail.example.com\r\nRCPT TO:<evil@example.net>" },
  { "Host", "mail\n.example.com" },
  { "Host", "mail\0.example.com" },
  { "Host", "smtp://mail.example.com" },
  { "Host", "mail.example.com:25" },
  { "Host", "mail.example.com/relay" },
  { "Host", "user@mail.example.com" },
  { "Host", " mail.example.com" },
  { "Host", "." },
  { "Host", "-a.example.com" },
  { "Host", ("a"):rep(64) .. ".example.com" },
  { "Host", ("a."):rep(130) .. "com" },
  { "Host", "256.256.256.256" },
  { "Host", "[::1" },
  { "Host", "[fe80::1%eth0]" },
  { "Host", "\255\254.example.com" },
  { "Port", "25\r\n" },
  { "Port", "1e3" },
  { "Port", "0x19" },
  { "Port", 1e20 },
  { "Port", -1 },
  { "Port", "" },
  { "Port", {} },
  { "SenderAccount", "kf@example.com\r\nRCPT TO:<evil@example.net>" },
  { "SenderAccount", "kf@example.com>\r\nDATA" },
  { "SenderAccount", "<kf@example.com>" },
  { "SenderAccount", "kf@example.com, ceo@example.com" },
  { "SenderAccount", "kf@@example.com" },
  { "SenderAccount", ".kf@example.com" },
  { "SenderAccount", '"kf\r\nx"@example.com' },
  { "SenderAccount", "kf@ex ample.com" },
  { "SenderAccount", "kä@example.com" },
  { "SenderAccount", ("a"):rep(65) .. "@example.com" },
  { "SenderAccount", "kf@[300.1.1.1]" },
  { "SenderAccount", '"kf<x>"@example.com' },
  { "SenderAccount", '"kf\\"q"@example.com', safe = true },
  { "SenderName", "Evil\r\nBcc: victim@example.net" },
  { "SenderName", "Evil\nSubject: pwned" },
  { "SenderName", "\r\n.\r\nMAIL FROM:<x@example.net>" },
  { "SenderName", "bare\rCR" },
  { "SenderName", "Evil\0" },
  { "SenderName", "\255\254" },
  { "SenderName", LONG },
  { "SenderName", 'Ops "Night" \\ Shift', safe = true },
  { "SenderName", ("é"):rep(120), safe = true },
  { "SenderName", "=?UTF-8?Q?fake?=", safe = true },
  { "SenderName", ".\r\n", },
  { "TestRecipient", "ops@example.com\r\nRCPT TO:<evil@example.net>" },
  { "TestRecipient", "ops@example.com\r\n.\r\nMAIL FROM:<x@example.net>" },
  { "TestRecipient", "ops@example.com,evil@example.net" },
  { "TestRecipient", "ops@example.com evil@example.net" },
  { "RelayUsername", "svc\r\nAUTH PLAIN" },
  { "RelayPassword", "pw\r\nQUIT" },
  { "UseSSL", "yes" },
  { "UseSSL", 1 },
  { "Id", 2, status = 404 },
  { "Id", "1; DROP TABLE", },
  { "RelayAuthenticationType", 1 },
  { "RelayAuthenticationType", "2\n" },
}

local HEADERS = { "content-transfer-encoding", "content-type", "date", "from", "message-id",
  "mime-version", "subject", "to" }

local function count(text, pattern)
  local n = 0
  for line in text:gmatch("[^\n]+") do if line:match(pattern) then n = n + 1 end end
  return n
end

describe("hostile input", function()
  local srv
  setup(function() srv = H.start_smtp { mode = "plain" } end)
  teardown(function() srv:stop() end)

  it("has at least 40 entries", function()
    assert.is_true(#HOSTILE >= 40)
  end)

  for i, case in ipairs(HOSTILE) do
    local field, value = case[1], case[2]
    local shown = type(value) == "string"
      and ('"' .. value:sub(1, 40):gsub("[%c\128-\255\\\"]", function(c) return ("\\%d"):format(c:byte()) end) .. '"')
      or tostring(value)
    it(("#%d %s = %s is refused naming the field, or sent safely"):format(i, field, shown), function()
      local function request()
        local t = { Host = "127.0.0.1", Port = srv.port, SenderAccount = "kf@example.com",
          TestRecipient = "ops@example.com", SenderName = "KF",
          RelayAuthenticationType = 0 }
        if field == "RelayUsername" or field == "RelayPassword" then
          t.RelayAuthenticationType = 2
          t.RelayUsername, t.RelayPassword = "svc", "pw"
        end
        t[field] = value
        return t
      end
      local store = kfsmtp.open(H.store_path())
      local p, uerr = store:update(request())
      local before_cmds = srv:commands()
      local before_msgs = #srv:messages()
      local res, err = store:test(request())
      if case.safe then
        assert.is_nil(uerr, uerr and uerr.Message)
        assert.truthy(res or (err and err.stage ~= "validate"), err and err.Message)
      end
      for _, e in ipairs { uerr, err } do
        if e and e.stage == "validate" then
          assert.are.equal(case.status or 400, e.status)
          assert.are.equal(field, e.field)
          if type(value) == "string" and #value > 3 then
            assert.falsy(e.Message:find(value, 1, true), "the hostile value is not echoed")
          end
        end
      end
      if p then assert.is_table(p) end
      -- Whatever happened, the wire stayed well-formed.
      H.sleep(0.05)
      local session = srv:commands():sub(#before_cmds + 1)
      if res or (err and err.stage ~= "validate") then
        assert.are.equal(1, count(session, "^MAIL FROM:"), session)
        assert.is_true(count(session, "^RCPT TO:") == 1, session)
        assert.falsy(session:find("evil@example.net", 1, true), session)
      else
        assert.are.equal("", session, "a refused value never reaches the server")
      end
      local msgs = srv:messages()
      if #msgs > before_msgs then
        local raw = msgs[#msgs].raw
        assert.falsy(raw:gsub("\r\n", ""):find("[\r\n]"), "CRLF line ends only")
        local headers = H.parse_message(raw)
        local names = {}
        for k in pairs(headers) do names[#names + 1] = k end
        table.sort(names)
        assert.are.same(HEADERS, names)
      end
    end)
  end
end)
