-- Remote calls between named nodes, three nets in one Lua state over
-- loopback: calls both ways, a chained call A->B->C->B->A, casts, the
-- callee's own code, NO_SERVICE, TIMEOUT, failures at once (the callback
-- never runs), cluster files, serve/unserve, and shutdown/free resolving
-- pending calls with E_SHUTDOWN. Every wait is bounded; traffic stays on 127.0.0.1.
local U = require("tests.util")
local xxnet = require("xxnet")

local LO = "127.0.0.1"

xxnet.set_log_level("off") -- the failure cases below would log warnings

-- Nets named after `names`, each listening on 127.0.0.1, each knowing every
-- other (its own entry is where it listens already). cfg adds config fields.
local function cluster(names, cfg)
  local nets, ports = {}, {}
  for i, name in ipairs(names) do
    local c = { node_name = name }
    for k, v in pairs(cfg or {}) do
      c[k] = v
    end
    nets[i] = assert(xxnet.new(c))
    ports[i] = assert(nets[i]:listen(LO, 0))
  end
  for _, net in ipairs(nets) do
    for j, name in ipairs(names) do
      assert(net:cluster_set(name, LO .. ":" .. ports[j]))
    end
  end
  return nets, ports
end

local function free_all(nets)
  for _, n in ipairs(nets) do
    n:free()
  end
end

local function count(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n
end

U.run("lua_rpc", {
  { "calls_both_ways_and_a_chain_through_three_nodes", function()
    local nets = cluster({ "A", "B", "C" })
    local a, b, c = nets[1], nets[2], nets[3]
    for _, n in ipairs(nets) do
      local me = n
      assert(n:serve("echo", function(req, net)
        U.ok(net == me, "handlers get the net")
        U.ok(not req.cast and req.token > 0, "a call carries a reply token")
        assert(req:reply(0, req.data .. " via " .. req.service .. "@" .. (me == a and "A" or me == b and "B" or "C")
          .. " from " .. req.node))
      end))
    end
    -- The chain: B, before answering A, calls C and answers in C's callback.
    assert(b:serve("chain", function(req)
      U.eq(req.node, "A", "the caller's name travels with the request")
      local s = assert(b:call("C", "leaf", req.data .. " > B", function(code, reply)
        U.eq(code, 0, "C's answer to B")
        assert(req:reply(0, reply .. " > B"))
      end))
      U.ok(s > 0, "session")
    end))
    assert(c:serve("leaf", function(req)
      U.eq(req.node, "B", "the leaf is called by B")
      assert(req:reply(0, req.data .. " > C"))
    end))

    local results, runs = {}, {}
    local function expect(name)
      return function(code, reply, ev)
        runs[name] = (runs[name] or 0) + 1
        results[name] = { code = code, reply = reply, node = ev.node, session = ev.session }
      end
    end
    local ab = assert(a:call("B", "echo", "from A", expect("ab")))
    local ba = assert(b:call("A", "echo", "from B", nil, expect("ba")))
    local ca = assert(c:call("A", "echo", "from C", { timeout_ms = 5000 }, expect("ca")))
    local chain = assert(a:call("B", "chain", "hop", expect("chain")))
    U.ok(ab ~= chain and ab > 0, "sessions differ and are positive")
    U.pump(nets, function()
      return count(results) == 4
    end, "four results")
    U.eq(results.ab.code, 0, "A->B code")
    U.eq(results.ab.reply, "from A via echo@B from A", "A->B reply")
    U.eq(results.ab.node, "B", "the result names the node called")
    U.eq(results.ab.session, ab, "ev.session is the call's session")
    U.eq(results.ba.reply, "from B via echo@A from B", "B->A reply")
    U.eq(results.ca.reply, "from C via echo@A from C", "C->A reply")
    U.eq(results.chain.code, 0, "chain code")
    U.eq(results.chain.reply, "hop > B > C > B", "A->B->C->B->A")
    U.eq(results.chain.session, chain, "chain session")
    -- Exactly once, also after more updates.
    U.pump_for(nets, 0.1)
    for name, n in pairs(runs) do
      U.eq(n, 1, name .. " callback runs")
    end
    free_all(nets)
  end },

  { "outcomes_own_code_no_service_timeout_and_casts", function()
    local nets = cluster({ "A", "B" })
    local a, b = nets[1], nets[2]
    local held = {}
    assert(b:serve("echo", function(req)
      local code = req.data == "code 7" and 7 or 0
      assert(req:reply(code, "r:" .. req.data))
    end))
    assert(b:serve("silent", function(req)
      held[#held + 1] = req -- never answered in time
    end))
    local casts = {}
    assert(b:serve("note", function(req)
      casts[#casts + 1] = { data = req.data, cast = req.cast, token = req.token, node = req.node }
    end))
    local failed = {}
    a:on("send_failed", function(ev)
      failed[#failed + 1] = { code = ev.code, service = ev.service }
    end)

    local got = {}
    local function keep(name)
      return function(code, reply)
        U.eq(got[name], nil, name .. " resolves once")
        got[name] = { code = code, reply = reply }
      end
    end
    local t0 = U.now()
    assert(a:call("B", "echo", "x", keep("ok")))
    assert(a:call("B", "echo", "code 7", keep("own")))
    assert(a:call("B", "missing", "x", keep("none")))
    assert(a:call("B", "silent", "x", { timeout_ms = 150 }, keep("slow")))
    assert(a:cast("B", "note", "n1"))
    assert(a:cast("B", "note", "n2", { lane = 2 }))
    assert(a:cast("B", "nowhere", "lost"))
    U.pump(nets, function()
      return count(got) == 4 and #casts == 2 and #failed == 1
    end, "four results, two casts, one failed cast")
    local elapsed = U.now() - t0
    U.eq(got.ok.code, 0, "ok")
    U.eq(got.ok.reply, "r:x", "reply")
    U.eq(got.own.code, 7, "the callee's own code")
    U.eq(got.own.reply, "r:code 7", "reply with the own code")
    U.eq(got.none.code, xxnet.E_NO_SERVICE, "no such service")
    U.eq(got.none.reply, "", "no reply payload")
    U.eq(got.slow.code, xxnet.E_TIMEOUT, "timeout")
    U.ok(elapsed >= 0.14, "the timeout took its time: " .. elapsed)
    U.eq(casts[1].cast, true, "a cast")
    U.eq(casts[1].token, 0, "a cast has no token")
    U.eq(casts[1].node, "A", "the caster's name")
    U.eq(failed[1].code, xxnet.E_NO_SERVICE, "a cast to a missing service")
    U.eq(failed[1].service, "nowhere", "send_failed names the service")
    -- A late answer to a timed-out call is dropped; a token answers once;
    -- a cast cannot be answered.
    U.eq(#held, 1, "silent request held")
    assert(held[1]:reply(0, "late"))
    U.fails(xxnet.E_UNKNOWN_TOKEN, held[1]:reply(0, "again"))
    U.fails(xxnet.E_UNKNOWN_TOKEN, b:reply(123456, 0, "x"))
    U.raises("code must be an integer", held[1].reply, held[1], -1, "")
    U.pump_for(nets, 0.1)
    U.eq(got.slow.code, xxnet.E_TIMEOUT, "no second result after the late reply")
    free_all(nets)
  end },

  { "failures_at_once_never_run_the_callback", function()
    local nets = cluster({ "A", "B" }, { max_message_size = 4096 })
    local a, b = nets[1], nets[2]
    assert(b:serve("echo", function(req)
      assert(req:reply(0, req.data))
    end))
    local runs = 0
    local function never()
      runs = runs + 1
    end
    U.fails(xxnet.E_UNKNOWN_NODE, a:call("nobody", "echo", "x", never))
    U.fails(xxnet.E_TOO_LARGE, a:call("B", "echo", string.rep("x", 8192), never))
    U.fails(xxnet.E_INVALID_ARG, a:call("B", "bad name", "x", never))
    U.fails(xxnet.E_INVALID_ARG, a:call("B", "echo", "x", { lane = 9 }, never))
    U.fails(xxnet.E_UNKNOWN_NODE, a:cast("nobody", "echo", "x"))
    U.fails(xxnet.E_INVALID_ARG, a:serve("bad name", never))
    U.raises("unknown option 'msg_id'", a.call, a, "B", "echo", "x", { msg_id = 1 }, never)
    U.raises("node must be a string", a.call, a, 7, "echo", "x", never)
    U.raises("without NUL", a.call, a, "B\0", "echo", "x", never)
    -- An answered call still works afterwards.
    local code
    assert(a:call("B", "echo", "fine", function(c)
      code = c
    end))
    U.pump(nets, function()
      return code ~= nil
    end, "a good call")
    U.eq(code, 0, "good call")
    U.pump_for(nets, 0.05)
    U.eq(runs, 0, "no callback of a failed call ran")
    free_all(nets)
  end },

  { "serve_replace_unserve_and_reentrancy", function()
    local nets = cluster({ "A", "B" })
    local a, b = nets[1], nets[2]
    assert(b:serve("svc", function(req)
      assert(req:reply(0, "one"))
    end))
    assert(b:serve("svc", function(req) -- replaces the handler
      assert(req:reply(0, "two"))
    end))
    local got, reentrant
    assert(a:call("B", "svc", "", function(code, reply)
      got = reply
      reentrant = select(3, a:update(0))
    end))
    U.pump(nets, function()
      return got ~= nil
    end, "the replaced handler")
    U.eq(got, "two", "the new handler answered")
    U.eq(reentrant, xxnet.E_REENTRANT, "update from a callback")
    -- The library withdraws a service asynchronously: a request already on
    -- its way may still arrive, and then goes to on("call_request").
    local late = 0
    b:on("call_request", function(ev, net)
      late = late + 1
      U.eq(ev.service, "svc", "late request")
      assert(net:reply(ev.id, 404))
    end)
    assert(b:serve("svc", nil))
    U.fails(xxnet.E_NO_SERVICE, b:serve("svc", nil))
    local code
    assert(a:call("B", "svc", "", function(c)
      code = c
    end))
    U.pump(nets, function()
      return code ~= nil
    end, "a call to an unserved service")
    U.eq(code, late == 0 and xxnet.E_NO_SERVICE or 404, "unserved")
    free_all(nets)
  end },

  { "cluster_files_load_and_report_bad_lines", function()
    local nets, ports = cluster({ "A" })
    local a = nets[1]
    local path = os.tmpname()
    local function write(text)
      local f = assert(io.open(path, "w"))
      f:write(text)
      f:close()
    end
    write("-- the cluster\nA = \"127.0.0.1:" .. ports[1] .. "\"\nB = 127.0.0.1:1\n")
    local ok, msg, code = a:cluster_load(path)
    U.fails(xxnet.E_CLUSTER_FILE, ok, msg, code)
    U.ok(msg:find(path .. ":3:", 1, true), "the message names file:line: " .. msg)
    local changes = {}
    a:on("node_changed", function(ev)
      changes[#changes + 1] = ev.node .. " " .. ev.change
    end)
    write("A = \"127.0.0.1:" .. ports[1] .. "\" -- this node\nD = \"127.0.0.1:9\"\n")
    assert(a:cluster_load(path))
    write("A = \"127.0.0.1:" .. ports[1] .. "\"\nE = \"127.0.0.1:10\"\n")
    assert(a:cluster_reload(path))
    U.pump({ a }, function()
      return #changes >= 4
    end, "node_changed events")
    U.pump_for({ a }, 0.05)
    -- cluster_set("A") by cluster(), the load (the bad file changed nothing), the reload.
    U.eq(table.concat(changes, ","), "A added,D added,D removed,E added", "directory changes")
    U.fails(xxnet.E_UNKNOWN_NODE, a:cluster_remove("D"))
    assert(a:cluster_remove("E"))
    U.fails(xxnet.E_INVALID_ARG, a:cluster_set("F", "not an address"))
    os.remove(path)
    free_all(nets)
  end },

  { "shutdown_and_free_resolve_pending_calls", function()
    local nets, ports = cluster({ "A", "B" })
    local a, b = nets[1], nets[2]
    assert(b:serve("hold", function() end)) -- never answers
    local codes = {}
    assert(a:call("B", "hold", "1", { timeout_ms = 10000 }, function(code)
      codes[#codes + 1] = code
    end))
    U.pump_for(nets, 0.05) -- the request reaches B
    local t0 = U.now()
    a:shutdown()
    U.ok(U.now() - t0 < 2, "shutdown does not wait for the deadline")
    U.eq(#codes, 1, "the pending call resolved during shutdown")
    U.eq(codes[1], xxnet.E_SHUTDOWN, "with E_SHUTDOWN")
    U.fails(xxnet.E_SHUTDOWN, a:call("B", "hold", "2", function()
      codes[#codes + 1] = "never"
    end))
    U.eq(a:update(0), 0, "nothing more")
    U.eq(#codes, 1, "once")
    a:free()

    -- free() with calls pending runs their callbacks once, and raises a
    -- callback's error after freeing.
    local c = assert(xxnet.new{ node_name = "C" })
    assert(c:cluster_set("B", LO .. ":" .. ports[2]))
    local got = {}
    assert(c:call("B", "hold", "x", { timeout_ms = 10000 }, function(code)
      got[#got + 1] = code
    end))
    assert(c:call("B", "hold", "y", { timeout_ms = 10000 }, function()
      error("boom in a callback")
    end))
    U.pump_for({ c, b }, 0.05)
    U.raises("boom in a callback", c.free, c)
    U.eq(c:alive(), false, "freed all the same")
    U.eq(#got, 1, "the other callback ran")
    U.eq(got[1], xxnet.E_SHUTDOWN, "with E_SHUTDOWN")
    c:free() -- idempotent
    b:free()
  end },
})
