-- The fault matrix: a server that misbehaves in one way per run, and the
-- network failing. Each failure names its stage and status, carries the
-- server's code where it sent one, says what to do, and comes back within
-- the configured timeout plus a small margin.
local kfsmtp = require "kfsmtp"
local H = require "helpers"

local CONNECT_MS, TOTAL_MS, MARGIN_MS = 1500, 3000, 1500
local USER, SECRET = "svc", "Fault-Secret-551"

local function attempt(srv_or_port, over, opts)
  local req = { Host = "127.0.0.1", Port = type(srv_or_port) == "table" and srv_or_port.port or srv_or_port,
    SenderAccount = "kf@example.com", TestRecipient = "ops@example.com" }
  for k, v in pairs(over or {}) do req[k] = v end
  opts = opts or {}
  opts.connect_timeout_ms = opts.connect_timeout_ms or CONNECT_MS
  opts.timeout_ms = opts.timeout_ms or TOTAL_MS
  opts.transcript = true
  local t0 = H.now_ms()
  local res, err = kfsmtp.open(H.store_path()):test(req, opts)
  local took = H.now_ms() - t0
  assert.is_nil(res, "the test should have failed")
  assert.is_true(took < TOTAL_MS + MARGIN_MS, ("returned after %d ms"):format(math.floor(took)))
  assert.is_string(err.Message)
  assert.is_true(#err.Message > 40)
  assert.is_false(H.mentions(err, SECRET))
  return err, took
end

local function expect(err, stage, status, code)
  assert.are.equal(stage, err.stage, err.Message)
  assert.are.equal(status, err.status, err.Message)
  if code then assert.are.equal(code, err.smtp_code, err.Message) end
end

local function with_server(opts, fn)
  local srv = H.start_smtp(opts)
  finally(function() srv:stop() end)
  return fn(srv)
end

describe("a server that", function()
  it("never greets: greeting, 504", function()
    with_server({ behaviour = "silent" }, function(srv)
      local err, took = attempt(srv)
      expect(err, "greeting", 504)
      assert.is_true(took >= CONNECT_MS - 100)
    end)
  end)

  it("greets 421: greeting, 502, with the reply", function()
    with_server({ behaviour = "greet421" }, function(srv)
      local err = attempt(srv)
      expect(err, "greeting", 502, 421)
      assert.truthy(err.smtp_reply:find("Service not available", 1, true))
    end)
  end)

  it("closes after the greeting: ehlo, 502", function()
    with_server({ behaviour = "close_after_greeting" }, function(srv)
      expect(attempt(srv), "ehlo", 502)
    end)
  end)

  it("offers no STARTTLS while UseSSL is on: tls, 502, nothing sent in clear", function()
    with_server({ behaviour = "no_starttls_auth" }, function(srv)
      local err = attempt(srv, { UseSSL = true, RelayAuthenticationType = 2, RelayUsername = USER, RelayPassword = SECRET })
      expect(err, "tls", 502)
      assert.truthy(err.Message:find("STARTTLS", 1, true))
      assert.falsy(srv:commands():find("AUTH", 1, true))
      assert.falsy(srv:commands():find("MAIL", 1, true))
    end)
  end)

  it("refuses AUTH with 535: auth, 502", function()
    local certs = H.certs()
    with_server({ mode = "starttls", auth = USER .. ":right-password" }, function(srv)
      local err = attempt(srv, { Host = "localhost", UseSSL = true, RelayAuthenticationType = 2,
        RelayUsername = USER, RelayPassword = SECRET }, { ca_file = certs.ca })
      expect(err, "auth", 502, 535)
    end)
  end)

  it("refuses RCPT with 550: rcpt, 502", function()
    with_server({}, function(srv)
      expect(attempt(srv, { TestRecipient = "nobody@example.com" }), "rcpt", 502, 550)
    end)
  end)

  it("refuses DATA with 554: data, 502", function()
    with_server({ behaviour = "data554" }, function(srv)
      local err = attempt(srv)
      expect(err, "data", 502, 554)
      assert.are.equal("5.6.0", err.enhanced_code)
    end)
  end)

  it("refuses the message after its content with 554: data, 502", function()
    with_server({ behaviour = "reject_after_data" }, function(srv)
      local err = attempt(srv)
      expect(err, "data", 502, 554)
      assert.are.equal("5.7.1", err.enhanced_code)
      assert.are.equal(0, #srv:messages())
    end)
  end)

  it("drops the connection in the middle of DATA: data, 502", function()
    with_server({ behaviour = "drop_mid_data" }, function(srv)
      expect(attempt(srv), "data", 502)
      assert.are.equal(0, #srv:messages())
    end)
  end)

  it("answers one byte every two seconds: greeting, 504, within the timeout", function()
    with_server({ behaviour = "drip" }, function(srv)
      local err, took = attempt(srv)
      expect(err, "greeting", 504)
      assert.is_true(took < CONNECT_MS + MARGIN_MS)
    end)
  end)

  it("shows a certificate from an unknown CA: tls, 502", function()
    with_server({ mode = "starttls" }, function(srv)
      local err = attempt(srv, { Host = "localhost", UseSSL = true })
      expect(err, "tls", 502)
      assert.are.equal("0xA0530031", err.ErrorCode)
    end)
  end)

  it("shows a certificate for another host name: tls, 502", function()
    local certs = H.certs()
    with_server({ mode = "implicit", cert = certs.wronghost_cert, key = certs.wronghost_key }, function(srv)
      local err = attempt(srv, { Host = "localhost", UseSSL = true }, { tls_mode = "implicit", ca_file = certs.ca })
      expect(err, "tls", 502)
      assert.truthy(err.Message:find("localhost", 1, true))
    end)
  end)

  it("stalls the implicit TLS handshake: tls, 504", function()
    with_server({ behaviour = "tls_stall" }, function(srv)
      local err = attempt(srv, { UseSSL = true }, { tls_mode = "implicit" })
      expect(err, "tls", 504)
    end)
  end)

  it("stalls the handshake after STARTTLS: tls, 504", function()
    with_server({ mode = "starttls", behaviour = "starttls_stall" }, function(srv)
      local err = attempt(srv, { UseSSL = true })
      expect(err, "tls", 504)
    end)
  end)
end)

describe("the network", function()
  it("a closed port: connect, 502, at once", function()
    local err, took = attempt(H.closed_port())
    expect(err, "connect", 502)
    assert.is_true(took < 1000)
  end)

  it("a host name that does not resolve: resolve, 502", function()
    expect(attempt(25, { Host = "no-such-host.invalid" }), "resolve", 502)
  end)

  it("an address that drops packets: connect, 504, within connect_timeout_ms", function()
    -- A loopback port whose SYNs an nftables rule drops: nothing answers,
    -- not even a reset. Needs root and nft (scripts/deps.sh installs it).
    local port = H.closed_port()
    local table_name = "kfsmtp_blackhole_" .. port
    local out, ok = H.sh(("nft add table inet %s && nft add chain inet %s input '{ type filter hook input priority 0; }' && nft add rule inet %s input ip daddr 127.0.0.1 tcp dport %d drop"):format(
      table_name, table_name, table_name, port))
    assert(ok, "nft: " .. out)
    finally(function() H.sh("nft delete table inet " .. table_name) end)
    local err, took = attempt(port)
    expect(err, "connect", 504)
    assert.are.equal("0xA0530012", err.ErrorCode)
    assert.is_true(took >= CONNECT_MS - 100 and took < CONNECT_MS + MARGIN_MS)
  end)
end)
