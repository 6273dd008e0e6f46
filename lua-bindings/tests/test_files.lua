-- Downloads between two named nets in one Lua state over loopback: a file of
-- a few MiB arrives whole (with progress), is DONE at once the second time,
-- joined requests each get their on_done, cancel, failures at once (bad md5,
-- bad name, unknown node, size above the quota), NO_CONTENT, and shutdown /
-- free resolving a pending download with E_SHUTDOWN. Every wait is bounded;
-- traffic stays on 127.0.0.1; the temp directories are removed at the end.
local U = require("tests.util")
local xxnet = require("xxnet")

local LO = "127.0.0.1"
local MIB = 1024 * 1024
local WAIT = 10 -- seconds, the bound of every wait

xxnet.set_log_level("off") -- the failure cases below would log warnings

-- A fresh directory: os.tmpname() reserves a unique name, the directory takes it.
local root = os.tmpname()
os.remove(root)
root = root .. "-xxnet-lua-files"
assert(os.execute("mkdir -p '" .. root .. "/served/sub'"))
local served = root .. "/served"

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then
    return nil
  end
  local s = f:read("*a")
  f:close()
  return s
end

local function md5_of(path)
  local p = assert(io.popen("md5sum '" .. path .. "'"))
  local out = p:read("*a")
  p:close()
  return assert(out:match("^(%x+)"), "md5sum output: " .. out)
end

-- Deterministic contents of `n` bytes (1 KiB of PRNG bytes, varied per KiB).
local function contents(n, seed)
  local r = U.prng(seed)
  local chunk = r.bytes(1024)
  local parts = {}
  for i = 1, math.ceil(n / 1024) do
    parts[i] = string.char(i % 256) .. chunk:sub(2)
  end
  return table.concat(parts):sub(1, n)
end

-- A served file: returns { name =, md5 =, size =, data = }.
local function make(name, size, seed)
  local data = contents(size, seed)
  local path = served .. "/" .. name
  write_file(path, data)
  return { name = name, md5 = md5_of(path), size = size, data = data }
end

local big = make("sub/big.bin", 3 * MIB + 4321, 1)
local small = make("small.bin", 200 * 1024, 2)
local slow = make("slow.bin", 4 * MIB, 3)
local parked = make("parked.bin", 1 * MIB, 4)

local cache_n = 0
local function new_cache()
  cache_n = cache_n + 1
  return root .. "/cache" .. cache_n
end

-- Server S (serving `served`) and client C (with a cache), each knowing the other.
local function pair(ccfg)
  local s = assert(xxnet.new{ node_name = "S" })
  local cfg = { node_name = "C", download_dir = new_cache() }
  for k, v in pairs(ccfg or {}) do
    cfg[k] = v
  end
  local c = assert(xxnet.new(cfg))
  local sp = assert(s:listen(LO, 0))
  local cp = assert(c:listen(LO, 0))
  for _, n in ipairs({ s, c }) do
    assert(n:cluster_set("S", LO .. ":" .. sp))
    assert(n:cluster_set("C", LO .. ":" .. cp))
  end
  assert(s:files_serve(served))
  return s, c, cfg.download_dir
end

-- on_done that records its results (and checks it runs once per task).
local function recorder()
  local results, runs = {}, {}
  local function on_done(r)
    runs[r.task] = (runs[r.task] or 0) + 1
    results[r.task] = r
  end
  return results, runs, on_done
end

local function count(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n
end

U.run("lua_files", {
  { "download_arrives_whole_with_progress_and_is_cached", function()
    local s, c, cache = pair({ download_block_size = 256 * 1024, download_rate_limit = 8 * MIB })
    local results, runs, on_done = recorder()
    local progress = {}
    local t1 = assert(c:download("S", big.md5, big.name, big.size, function(r)
      on_done(r)
      -- The file is there while on_done runs (released after it returns).
      r.data = read_file(r.path)
    end, function(done, total, ev)
      U.eq(total, big.size, "progress total")
      U.eq(ev.task, ev.id, "ev.task")
      U.eq(ev.node, "S", "progress names the source")
      progress[#progress + 1] = done
    end))
    U.ok(t1 > 0, "a task id")
    U.pump({ s, c }, function()
      return results[t1] ~= nil
    end, "the download", WAIT)
    local r = results[t1]
    U.eq(r.code, 0, "DONE: " .. xxnet.strerror(r.code))
    U.eq(r.task, t1, "task")
    U.eq(r.size, big.size, "size")
    U.eq(r.node, "S", "source node")
    U.eq(type(r.path), "string", "path")
    U.eq(r.path:sub(1, #cache + 1), cache .. "/", "the path is inside the cache dir: " .. r.path)
    U.ok(r.data == big.data, "the bytes arrived whole")
    U.ok(#progress >= 1, "progress reached on_progress")
    for i = 2, #progress do
      U.ok(progress[i] >= progress[i - 1], "progress never goes back")
    end
    U.ok(progress[#progress] <= big.size, "progress within the size")
    local st = c:files_stats()
    U.eq(st.downloads_done, 1, "downloads_done")
    U.eq(st.bytes_fetched, big.size, "bytes_fetched")
    U.ok(st.cache_bytes >= big.size, "cache_bytes")
    U.ok(s:files_stats().blocks_served >= st.blocks_fetched, "blocks served by S")
    U.ok(s:files_stats().served_files >= 4, "S serves the files")
    -- Released after on_done: releasing again is refused.
    U.fails(xxnet.E_UNKNOWN_TASK, c:download_release(t1))

    -- Again: DONE at once from the cache, nothing travels.
    local fetched = st.blocks_fetched
    local t2 = assert(c:download("S", big.md5, "another/name", big.size, function(res)
      on_done(res)
      return true -- keep the file
    end))
    U.pump({ c }, function()
      return results[t2] ~= nil
    end, "the cached download", WAIT)
    U.eq(results[t2].code, 0, "cached DONE")
    U.eq(results[t2].path, r.path, "the same file")
    U.eq(c:files_stats().blocks_fetched, fetched, "nothing fetched the second time")
    assert(c:download_release(t2)) -- kept by on_done returning true
    U.fails(xxnet.E_UNKNOWN_TASK, c:download_release(t2))
    U.pump_for({ s, c }, 0.05)
    U.eq(runs[t1], 1, "on_done ran once")
    U.eq(runs[t2], 1, "on_done ran once (cached)")
    s:free()
    c:free()
  end },

  { "joined_requests_each_get_on_done", function()
    local s, c = pair({ download_block_size = 256 * 1024, download_rate_limit = 4 * MIB })
    local results, runs, on_done = recorder()
    local moving = false
    local t1 = assert(c:download("S", slow.md5, slow.name, slow.size, on_done, function(done)
      moving = moving or done > 0
    end))
    U.pump({ s, c }, function()
      return moving
    end, "the first download moving", WAIT)
    local t2 = assert(c:download("S", slow.md5, slow.name, slow.size, on_done))
    local t3 = assert(c:download("S", slow.md5, "other-name", slow.size, on_done))
    U.pump({ s, c }, function()
      return count(results) == 3
    end, "three results", WAIT)
    for _, t in ipairs({ t1, t2, t3 }) do
      U.eq(results[t].code, 0, "task " .. t .. " DONE")
      U.eq(results[t].path, results[t1].path, "one file")
    end
    U.ok(read_file(results[t1].path) == slow.data, "the bytes arrived whole")
    local blocks = math.ceil(slow.size / (256 * 1024))
    U.eq(c:files_stats().blocks_fetched, blocks, "the bytes travelled once")
    U.eq(c:files_stats().downloads_done, 1, "one download")
    U.pump_for({ s, c }, 0.05)
    for _, t in ipairs({ t1, t2, t3 }) do
      U.eq(runs[t], 1, "on_done of task " .. t .. " ran once")
    end
    s:free()
    c:free()
  end },

  { "cancel_runs_on_done_with_cancelled_once", function()
    local s, c = pair({ download_block_size = 256 * 1024, download_rate_limit = 1 * MIB })
    local results, runs, on_done = recorder()
    local moving = false
    local t = assert(c:download("S", slow.md5, slow.name, slow.size, on_done, function(done)
      moving = moving or done > 0
    end))
    U.pump({ s, c }, function()
      return moving
    end, "the download moving", WAIT)
    assert(c:download_cancel(t))
    U.fails(xxnet.E_UNKNOWN_TASK, c:download_cancel(t))
    c:update(0)
    U.ok(results[t] ~= nil, "on_done ran from the next update")
    U.eq(results[t].code, xxnet.E_CANCELLED, "CANCELLED")
    U.eq(results[t].path, nil, "no path")
    U.ok(results[t].count < slow.size, "partial")
    U.pump_for({ s, c }, 0.3)
    U.eq(runs[t], 1, "on_done ran once")
    U.fails(xxnet.E_UNKNOWN_TASK, c:download_release(t))
    U.fails(xxnet.E_UNKNOWN_TASK, c:download_cancel(987654))
    s:free()
    c:free()
  end },

  { "failures_at_once_never_run_a_callback", function()
    local s, c = pair({ download_quota = 2 * MIB })
    local plain = assert(xxnet.new{ node_name = "P" }) -- no download_dir
    assert(plain:cluster_set("S", "127.0.0.1:9"))
    local runs = 0
    local function never()
      runs = runs + 1
    end
    U.fails(xxnet.E_BAD_PATH, c:download("S", "0123", small.name, small.size, never))
    U.fails(xxnet.E_BAD_PATH, c:download("S", string.rep("g", 32), small.name, small.size, never))
    U.fails(xxnet.E_BAD_PATH, c:download("S", small.md5, "../x", small.size, never))
    U.fails(xxnet.E_BAD_PATH, c:download("S", small.md5, "/etc/passwd", small.size, never))
    U.fails(xxnet.E_BAD_PATH, c:download("S", small.md5, "a\0b", small.size, never))
    U.fails(xxnet.E_UNKNOWN_NODE, c:download("Nobody", small.md5, small.name, small.size, never))
    U.fails(xxnet.E_NO_SPACE, c:download("S", big.md5, big.name, big.size, never))
    U.fails(xxnet.E_INVALID_ARG, plain:download("S", small.md5, small.name, small.size, never))
    U.fails(xxnet.E_BAD_PATH, s:files_serve(root .. "/does-not-exist"))
    U.raises("size must be an integer", c.download, c, "S", small.md5, small.name, -1, never)
    U.raises("name must be a string", c.download, c, "S", small.md5, nil, small.size, never)
    U.raises("handler must be a function", c.download, c, "S", small.md5, small.name, small.size, 7)
    U.raises("unknown config key 'download_dirr'", xxnet.new, { download_dirr = root })
    -- Within the quota it works.
    local results, _, on_done = recorder()
    local t = assert(c:download("S", small.md5, small.name, small.size, on_done))
    U.pump({ s, c }, function()
      return results[t] ~= nil
    end, "a good download", WAIT)
    U.eq(results[t].code, 0, "good download")
    U.pump_for({ s, c }, 0.05)
    U.eq(runs, 0, "no callback of a failed download ran")
    plain:free()
    s:free()
    c:free()
  end },

  { "unknown_content_is_no_content", function()
    local s, c = pair()
    local results, runs, on_done = recorder()
    local t = assert(c:download("S", string.rep("0", 32), "missing.bin", 1234, on_done))
    U.pump({ s, c }, function()
      return results[t] ~= nil
    end, "the failed download", WAIT)
    U.eq(results[t].code, xxnet.E_NO_CONTENT, "NO_CONTENT: " .. xxnet.strerror(results[t].code))
    U.eq(results[t].path, nil, "no path")
    U.eq(results[t].node, "S", "source node")
    U.pump_for({ s, c }, 0.05)
    U.eq(runs[t], 1, "once")
    s:free()
    c:free()
  end },

  { "events_without_callbacks_go_to_on_handlers", function()
    local s, c = pair()
    local done, failed = {}, {}
    c:on("download_done", function(ev)
      done[#done + 1] = { task = ev.task, path = ev.path, data = ev.data, node = ev.node, count = ev.count }
    end)
    c:on("download_failed", function(ev)
      failed[#failed + 1] = { task = ev.task, code = ev.code }
    end)
    local t1 = assert(c:download("S", small.md5, small.name, small.size))
    local t2 = assert(c:download("S", string.rep("1", 32), "nope", 10))
    U.pump({ s, c }, function()
      return #done == 1 and #failed == 1
    end, "both ends", WAIT)
    U.eq(done[1].task, t1, "done task")
    U.eq(done[1].node, "S", "done node")
    U.eq(done[1].data, done[1].path, "ev.data is the path")
    U.ok(read_file(done[1].path) == small.data, "the bytes")
    U.eq(failed[1].task, t2, "failed task")
    U.eq(failed[1].code, xxnet.E_NO_CONTENT, "failed code")
    assert(c:download_release(t1)) -- not released for us without on_done
    s:free()
    c:free()
  end },

  { "shutdown_and_free_resolve_a_pending_download", function()
    -- "S" is a port where nothing listens: the download waits for it.
    local dead = assert(xxnet.new{ node_name = "D" })
    local port = assert(dead:listen(LO, 0))
    dead:free()
    local c = assert(xxnet.new{ node_name = "C", download_dir = new_cache() })
    assert(c:cluster_set("S", LO .. ":" .. port))
    local results, runs, on_done = recorder()
    local t = assert(c:download("S", parked.md5, parked.name, parked.size, on_done))
    U.pump_for({ c }, 0.1)
    U.eq(results[t], nil, "still pending")
    local t0 = U.now()
    c:shutdown()
    U.ok(U.now() - t0 < 2, "shutdown does not wait")
    U.ok(results[t] ~= nil, "on_done ran during shutdown")
    U.eq(results[t].code, xxnet.E_SHUTDOWN, "SHUTDOWN")
    U.eq(results[t].path, nil, "no path")
    U.fails(xxnet.E_SHUTDOWN, c:download("S", parked.md5, parked.name, parked.size, on_done))
    U.eq(c:update(0), 0, "nothing more")
    c:free()
    U.eq(runs[t], 1, "once")

    -- free() with a download pending runs its on_done once, then raises a
    -- callback's error after freeing.
    local c2 = assert(xxnet.new{ node_name = "C2", download_dir = new_cache() })
    assert(c2:cluster_set("S", LO .. ":" .. port))
    local got = {}
    local ta = assert(c2:download("S", parked.md5, parked.name, parked.size, function(r)
      got[#got + 1] = r
    end))
    assert(c2:download("S", small.md5, small.name, small.size, function()
      error("boom in on_done")
    end))
    U.pump_for({ c2 }, 0.05)
    U.raises("boom in on_done", c2.free, c2)
    U.eq(c2:alive(), false, "freed all the same")
    U.eq(#got, 1, "the other on_done ran once")
    U.eq(got[1].task, ta, "its task")
    U.eq(got[1].code, xxnet.E_SHUTDOWN, "with E_SHUTDOWN")
    c2:free() -- idempotent
  end },

  { "cleanup", function()
    assert(root:match("%-xxnet%-lua%-files$"))
    os.execute("rm -rf '" .. root .. "'")
    U.eq(read_file(root .. "/served/small.bin"), nil, "the temp dir is gone")
  end },
})
