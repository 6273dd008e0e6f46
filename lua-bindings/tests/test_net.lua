-- Two nets in one Lua state over loopback: messages both ways with lanes and
-- msg_ids, routes and the default route, connection events, user data,
-- need-ack, timers, stats, conn_info, and failures as nil, message, code.
local U = require("tests.util")
local xxnet = require("xxnet")

local LO = "127.0.0.1"

xxnet.set_log_level("off") -- the error cases below would log warnings

-- A server and a client, connected (the client's "hello" delivered); returns
-- them, the server's port and both sides' conn ids. No handler is left set.
local function pair(server_cfg, client_cfg)
  local server = assert(xxnet.new(server_cfg))
  local client = assert(xxnet.new(client_cfg))
  local port = assert(server:listen(LO, 0))
  local s_conn, c_conn, hello
  server:on("connected", function(ev)
    s_conn = ev.conn
  end)
  client:on("connected", function(ev)
    c_conn = ev.conn
  end)
  server:on("message", function(ev)
    hello = ev.data
  end)
  assert(client:send(LO, port, "hello"))
  U.pump({ server, client }, function()
    return s_conn and c_conn and hello
  end, "the connection")
  U.eq(hello, "hello", "first message")
  server:on("connected", nil)
  client:on("connected", nil)
  server:on("message", nil)
  return server, client, port, s_conn, c_conn
end

U.run("lua_net", {
  { "messages_both_ways_with_lanes_routes_and_default_route", function()
    local server = assert(xxnet.new{ max_message_size = 1024 * 1024 })
    local client = assert(xxnet.new())
    local port = assert(server:listen(LO, 0))
    U.ok(port > 0 and port < 65536, "listen returns the bound port")

    local events = {}
    server:on("connected", function(ev)
      events[#events + 1] = { side = "server", kind = ev.kind, conn = ev.conn, ip = ev.peer_ip, initiated = ev.id }
    end)
    client:on("connected", function(ev)
      events[#events + 1] = { side = "client", kind = ev.kind, conn = ev.conn, ip = ev.peer_ip, port = ev.peer_port, initiated = ev.id }
    end)

    -- Server side: msg_id 10 has a route; everything else goes to the default route.
    local routed, defaulted, plain = {}, {}, {}
    server:route(10, function(ev, net)
      U.ok(net == server, "handlers get the net")
      routed[#routed + 1] = { lane = ev.lane, data = ev.data, conn = ev.conn }
      -- Reply on the connection, with another msg_id and lane.
      assert(net:send_conn(ev.conn, "re:" .. ev.data, { msg_id = 20, lane = ev.lane }))
    end)
    server:route_default(function(ev)
      defaulted[#defaulted + 1] = { msg_id = ev.msg_id, lane = ev.lane, data = ev.data }
    end)
    server:on("message", function(ev)
      plain[#plain + 1] = ev.data
    end)

    local replies = {}
    client:route(20, function(ev)
      replies[#replies + 1] = { lane = ev.lane, data = ev.data, msg_id = ev.msg_id }
    end)

    -- Lane 0 and lane 1 interleaved; order must hold per lane.
    for i = 1, 20 do
      assert(client:send(LO, port, "a" .. i, { msg_id = 10, lane = 0 }))
      assert(client:send(LO, port, "b" .. i, { msg_id = 10, lane = xxnet.LANE_BULK }))
    end
    local binary = "\0\1\2\255 zero\0inside"
    assert(client:send(LO, port, binary, { msg_id = 99, lane = 2 }))
    assert(client:send(LO, port, "")) -- no options: lane 0, msg_id 0, default route
    local big = string.rep("x", 200 * 1024) -- travels in fragments
    assert(client:send(LO, port, big, { msg_id = 98, lane = 3 }))

    U.pump({ server, client }, function()
      return #routed == 40 and #defaulted == 3 and #replies == 40
    end, "40 routed messages, 3 defaults and 40 replies")

    local next_a, next_b = 1, 1
    for _, m in ipairs(routed) do
      if m.lane == 0 then
        U.eq(m.data, "a" .. next_a, "lane 0 order")
        next_a = next_a + 1
      else
        U.eq(m.lane, 1, "lane")
        U.eq(m.data, "b" .. next_b, "lane 1 order")
        next_b = next_b + 1
      end
    end
    table.sort(defaulted, function(x, y)
      return x.msg_id < y.msg_id
    end)
    U.eq(defaulted[1].msg_id, 0, "msg_id of the option-less send")
    U.eq(defaulted[1].data, "", "an empty message is an empty string")
    U.eq(defaulted[2].data, big, "a fragmented message arrives whole")
    U.eq(defaulted[2].lane, 3, "lane 3")
    U.eq(defaulted[3].data, binary, "bytes with \\0 survive")
    U.eq(defaulted[3].lane, 2, "lane 2")
    U.eq(#plain, 0, "routes and the default route take precedence over on('message')")
    for _, r in ipairs(replies) do
      U.eq(r.msg_id, 20, "reply msg_id")
      U.eq(r.data:sub(1, 3), "re:", "reply data")
    end

    -- Connection events on both sides, with who initiated.
    U.eq(#events, 2, "one connected event per side")
    for _, e in ipairs(events) do
      U.eq(e.kind, "connected", "kind")
      U.eq(e.ip, LO, "peer_ip")
      U.ok(e.conn > 0, "conn id")
      if e.side == "client" then
        U.eq(e.initiated, 1, "the client initiated")
        U.eq(e.port, port, "the client sees the server's listen port")
      else
        U.eq(e.initiated, 0, "the server accepted")
      end
    end

    -- Without a route or default route, on("message") gets it.
    server:route_default(nil)
    server:route(10, nil)
    assert(client:send(LO, port, "plain", { msg_id = 10 }))
    U.pump({ server, client }, function()
      return #plain == 1
    end, "the message for on('message')")
    U.eq(plain[1], "plain", "on('message') data")

    server:free()
    client:free()
  end },

  { "packed_tables_travel", function()
    local server, client, port = pair()
    local got
    server:route(5, function(ev)
      got = assert(xxnet.unpack(ev.data))
    end)
    local msg = { op = "move", id = 12345, pos = { x = 1.5, y = -2, z = 0 }, path = { 1, 2, 3 }, flags = { [true] = "yes" } }
    assert(client:send(LO, port, xxnet.pack(msg), { msg_id = 5 }))
    U.pump({ server, client }, function()
      return got
    end, "the packed message")
    U.eq(got.op, "move", "op")
    U.eq(got.pos.x, 1.5, "pos.x")
    U.eq(got.pos.y, -2, "pos.y")
    U.eq(got.path[3], 3, "path[3]")
    U.eq(got.flags[true], "yes", "boolean key")
    server:free()
    client:free()
  end },

  { "disconnect_events_and_user_data", function()
    local server, client, port, s_conn, c_conn = pair()
    assert(server:set_user_data(s_conn, 4242))
    assert(client:set_user_data(c_conn, 2 ^ 53))
    local s_msg_ud, s_disc, c_disc
    server:on("message", function(ev)
      s_msg_ud = ev.user_data
    end)
    server:on("disconnected", function(ev)
      s_disc = { conn = ev.conn, code = ev.code, user_data = ev.user_data }
    end)
    client:on("disconnected", function(ev)
      c_disc = { conn = ev.conn, code = ev.code, user_data = ev.user_data }
    end)
    assert(client:send(LO, port, "with user data"))
    U.pump({ server, client }, function()
      return s_msg_ud
    end, "the message")
    U.eq(s_msg_ud, 4242, "user_data on a message event")

    assert(server:close(s_conn))
    U.pump({ server, client }, function()
      return s_disc and c_disc
    end, "both disconnected events")
    U.eq(s_disc.conn, s_conn, "server's disconnected conn")
    U.eq(s_disc.code, xxnet.E_LOCAL_CLOSE, "server's code")
    U.eq(s_disc.user_data, 4242, "user_data on disconnected")
    U.eq(c_disc.conn, c_conn, "client's disconnected conn")
    U.eq(c_disc.user_data, 2 ^ 53, "2^53 survives as user data")
    U.ok(c_disc.code ~= xxnet.OK, "client's disconnect has a reason")

    -- The conn is gone now.
    U.fails(xxnet.E_UNKNOWN_CONN, server:send_conn(s_conn, "late"))
    U.fails(xxnet.E_UNKNOWN_CONN, server:close(s_conn))
    server:free()
    client:free()
  end },

  { "need_ack_delivered_both_ways", function()
    local server, client, port, s_conn = pair()
    local delivered = {}
    local expired = {}
    for _, n in ipairs({ server, client }) do
      n:on("delivered", function(ev)
        delivered[ev.id] = ev.conn
      end)
      n:on("expired", function(ev)
        expired[#expired + 1] = ev.code
      end)
    end
    local got = 0
    server:on("message", function()
      got = got + 1
    end)
    client:on("message", function()
      got = got + 1
    end)
    local id1 = assert(client:send_need_ack(LO, port, "ack me", { msg_id = 30 }))
    local id2 = assert(client:send_need_ack(LO, port, "ack me too"))
    local id3 = assert(server:send_conn_need_ack(s_conn, "ack me back", { ack_timeout_ms = 4000 }))
    U.ok(id1 > 0 and id2 > 0 and id1 ~= id2, "ids are distinct numbers")
    U.eq(type(id3), "number", "id type")
    U.pump({ server, client }, function()
      return delivered[id1] and delivered[id2] and delivered[id3] and got == 3
    end, "three delivered events")
    U.eq(#expired, 0, "nothing expired")
    U.eq(delivered[id3], s_conn, "delivered names the conn")
    server:free()
    client:free()
  end },

  { "stats_and_conn_info", function()
    local server, client, port, s_conn, c_conn = pair()
    local got = 0
    server:on("message", function()
      got = got + 1
    end)
    for i = 1, 10 do
      assert(client:send(LO, port, string.rep("s", i)))
    end
    U.pump({ server, client }, function()
      return got == 10
    end, "10 messages")
    local s = server:stats()
    U.ok(s.msgs_in >= 11, "msgs_in counts the hello and the 10 messages: " .. s.msgs_in)
    U.ok(s.bytes_in >= 55, "bytes_in")
    U.ok(s.open_connections >= 1, "open_connections")
    U.eq(s.accepted_connections, 1, "accepted_connections")
    for _, f in ipairs(xxnet.cdef.structs.xxnet_stats) do
      U.eq(type(s[f[1]]), "number", "stats()." .. f[1])
    end
    U.ok(client:stats().msgs_out >= 11, "client msgs_out")

    local info = assert(client:conn_info(c_conn))
    U.eq(info.state, "connected", "state")
    U.eq(info.peer_ip, LO, "peer_ip")
    U.eq(info.peer_port, port, "peer_port")
    U.eq(type(info.queued_msgs), "number", "queued_msgs")
    U.eq(type(info.oldest_unacked_ms), "number", "oldest_unacked_ms")
    local sinfo = assert(server:conn_info(s_conn))
    U.eq(sinfo.state, "connected", "server's view")
    server:free()
    client:free()
  end },

  { "two_reactors_flush_and_reactor_stats", function()
    local server, client, port = pair({ io_threads = 2 }, { io_threads = 2 })
    local got = {}
    server:on("message", function(ev)
      got[#got + 1] = ev.data
    end)
    for i = 1, 20 do
      assert(client:send(LO, port, "m" .. i, { flags = xxnet.SEND_MORE }))
    end
    assert(client:flush())
    U.pump({ server, client }, function()
      return #got == 20
    end, "20 messages sent with SEND_MORE, then flush")
    for i = 1, 20 do
      U.eq(got[i], "m" .. i, "order")
    end
    local r0, r1 = assert(server:reactor_stats(0)), assert(server:reactor_stats(1))
    U.eq(r0.open_connections + r1.open_connections, 1, "one session on one of the two reactors")
    U.eq(r0.msgs_in + r1.msgs_in, server:stats().msgs_in, "stats() sums the reactors")
    local ok, _, code = server:reactor_stats(2)
    U.eq(ok, nil, "no third reactor")
    U.eq(code, xxnet.E_INVALID_ARG, "invalid index")
    local none, why = xxnet.new({ io_threads = 0 })
    U.eq(none, nil, "io_threads 0 refused")
    U.ok(tostring(why):find("io_threads", 1, true), "the reason names io_threads: " .. tostring(why))
    server:free()
    client:free()
  end },

  { "timers_one_shot_repeating_cancel_and_order", function()
    local net = assert(xxnet.new())
    local order = {}
    local t30 = assert(net:timer(30, function(t, ev)
      order[#order + 1] = 30
      U.eq(ev.kind, "timer", "ev.kind")
      U.eq(ev.id, t.id, "ev.id is the timer id")
    end))
    assert(net:timer(10, function()
      order[#order + 1] = 10
    end))
    assert(net:timer(20, function()
      order[#order + 1] = 20
    end))
    local cancelled = assert(net:timer(15, function()
      order[#order + 1] = "cancelled one fired"
    end))
    assert(cancelled:cancel())
    U.fails(xxnet.E_UNKNOWN_TIMER, cancelled:cancel())

    local ticks = 0
    local rep
    rep = assert(net:timer(5, function(t)
      ticks = ticks + 1
      U.ok(t == rep, "the timer object is passed")
      if ticks == 4 then
        assert(t:cancel())
      end
    end, 5))

    -- A timer without fn goes to on("timer").
    local via_on
    net:on("timer", function(ev)
      via_on = ev.timer
    end)
    local anon = assert(net:timer(5))

    U.pump({ net }, function()
      return #order == 3 and ticks == 4 and via_on
    end, "the timers")
    U.pump_for({ net }, 0.08) -- a cancelled timer stays silent
    U.eq(table.concat(order, ","), "10,20,30", "fire order")
    U.eq(ticks, 4, "the repeating timer stopped after cancel from its own fn")
    U.ok(via_on == anon, "on('timer') got the timer object")
    U.ok(not t30.live, "a fired one-shot is no longer live")
    U.fails(xxnet.E_UNKNOWN_TIMER, t30:cancel())

    -- Cancel after the event was polled but before it was dispatched: the
    -- two zero-delay timers come due together (usually in one batch), the
    -- first cancels the second, which must not run either way.
    local fired = false
    local late
    local first = assert(net:timer(0, function()
      assert(late:cancel())
    end))
    late = assert(net:timer(0, function()
      fired = true
    end))
    U.ok(first.id ~= late.id, "distinct ids")
    U.pump_for({ net }, 0.05)
    U.ok(not late.live, "the cancelled timer is dead")
    U.eq(fired, false, "a timer cancelled after its event was polled does not run")
    net:free()
  end },

  { "failures_return_nil_message_code", function()
    local small = assert(xxnet.new{ max_message_size = 1024 })
    local other = assert(xxnet.new())
    local port = assert(small:listen(LO, 0))

    local msg = U.fails(xxnet.E_INVALID_ARG, small:send("localhost", port, "x"))
    U.eq(msg, xxnet.strerror(xxnet.E_INVALID_ARG), "message from xxnet_strerror")
    U.fails(xxnet.E_TOO_LARGE, small:send(LO, port, string.rep("x", 2000)))
    U.fails(xxnet.E_TOO_LARGE, small:send_need_ack(LO, port, string.rep("x", 2000)))
    U.fails(xxnet.E_UNKNOWN_CONN, small:send_conn(987654, "x"))
    U.fails(xxnet.E_UNKNOWN_CONN, small:send_conn_need_ack(987654, "x"))
    U.fails(xxnet.E_UNKNOWN_CONN, small:close(987654))
    U.fails(xxnet.E_UNKNOWN_CONN, small:conn_info(987654))
    U.fails(xxnet.E_UNKNOWN_CONN, small:set_user_data(987654, 1))
    U.fails(xxnet.E_ALREADY_LISTENING, small:listen(LO, port))
    U.fails(xxnet.E_ADDR_IN_USE, other:listen(LO, port))
    U.fails(xxnet.E_INVALID_ARG, small:listen("localhost", 0))
    U.fails(xxnet.E_INVALID_ARG, small:send(LO, port, "x", { lane = xxnet.LANES }))

    -- xxnet.new refuses a bad config with the library's reason.
    local bad, why = xxnet.new{ fragment_size = 1 }
    U.eq(bad, nil, "xxnet.new with a bad fragment_size")
    U.ok(type(why) == "string" and why:find("xxnet.new: ", 1, true), "reason: " .. tostring(why))

    -- Programming errors raise.
    U.raises("unknown config key 'max_msg_size'", xxnet.new, { max_msg_size = 1 })
    U.raises("config.idle_timeout_ms must be an integer", xxnet.new, { idle_timeout_ms = -1 })
    U.raises("unknown option 'msgid'", small.send, small, LO, port, "x", { msgid = 3 })
    U.raises("option lane must be an integer", small.send, small, LO, port, "x", { lane = 0.5 })
    U.raises("data must be a string", small.send, small, LO, port, 42)
    U.raises("port must be an integer in 0..65535", small.send, small, LO, 70000, "x")
    U.raises("unknown event 'mesage'", small.on, small, "mesage", print)
    U.raises("handler must be a function", small.route, small, 1, "nope")
    U.raises("value must be an integer", small.set_user_data, small, 1, -5)

    small:free()
    small:free() -- idempotent
    U.raises("the net was freed", small.send, small, LO, port, "x")
    U.raises("the net was freed", small.update, small, 0)
    other:free()
  end },

  { "reentrant_update_and_handler_errors", function()
    local server, client, port = pair()
    local inner
    local seen = {}
    server:on("message", function(ev, net)
      if not inner then
        inner = { net:update(0) }
      end
      if ev.data == "boom" then
        error("handler failed on purpose")
      end
      seen[#seen + 1] = ev.data
    end)
    assert(client:send(LO, port, "one"))
    assert(client:send(LO, port, "boom"))
    assert(client:send(LO, port, "two"))
    assert(client:send(LO, port, "three"))
    local raised
    local expired = U.deadline(5)
    while #seen < 3 do
      U.ok(not expired(), "timed out: seen " .. #seen)
      client:update(1)
      local ok, err = pcall(server.update, server, 1)
      if not ok then
        raised = err
      end
    end
    U.eq(inner[1], nil, "update inside a handler fails")
    U.eq(inner[3], xxnet.E_REENTRANT, "with XXNET_E_REENTRANT")
    U.ok(raised and raised:find("handler failed on purpose", 1, true), "the handler's error propagates: " .. tostring(raised))
    U.eq(table.concat(seen, ","), "one,two,three", "no other event was lost")
    server:free()
    client:free()
  end },

  { "free_from_a_handler_and_gc", function()
    local server, client, port = pair()
    local calls = 0
    server:on("message", function(_, net)
      calls = calls + 1
      net:free()
    end)
    for i = 1, 5 do
      assert(client:send(LO, port, "m" .. i))
    end
    local expired = U.deadline(5)
    while server:alive() do
      U.ok(not expired(), "timed out waiting for the message")
      server:update(1)
      client:update(1)
    end
    U.eq(calls, 1, "dispatch stops once the net is freed")
    client:free()
    -- A net nobody frees is freed by the GC (ffi.gc on the context).
    for _ = 1, 3 do
      local n = assert(xxnet.new())
      assert(n:listen(LO, 0))
    end
    collectgarbage()
    collectgarbage()
  end },
})
