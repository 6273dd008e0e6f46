-- Shared helpers of the Lua tests: a monotonic clock, deadlines, pumping nets
-- until a condition holds, assertions, and a small runner that prints
-- "N passed, N failed" and exits non-zero on failure.

local ffi = require("ffi")

local U = {}

-- CLOCK_MONOTONIC through the FFI (os.clock is CPU time: it stands still
-- while a poll waits). A type name of our own, so no clash with other cdefs.
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } xxnet_test_timespec;
int clock_gettime(int clk_id, xxnet_test_timespec *tp);
]])
local ts = ffi.new("xxnet_test_timespec")
local CLOCK_MONOTONIC = 1 -- Linux

--- Seconds on a monotonic clock.
function U.now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

--- A deadline `seconds` from now: returns a function that is true once it passed.
function U.deadline(seconds)
  local limit = U.now() + seconds
  return function()
    return U.now() > limit
  end
end

--- Updates every net (1 ms waits) until cond() is true; raises after
--- `seconds` (default 5) naming `what`.
function U.pump(nets, cond, what, seconds)
  local expired = U.deadline(seconds or 5)
  while not cond() do
    if expired() then
      error("timed out waiting for " .. (what or "a condition"), 2)
    end
    for i = 1, #nets do
      nets[i]:update(1)
    end
  end
end

--- Updates every net for `seconds`, whatever happens.
function U.pump_for(nets, seconds)
  local expired = U.deadline(seconds)
  while not expired() do
    for i = 1, #nets do
      nets[i]:update(1)
    end
  end
end

local function show(v)
  if type(v) == "string" then
    return string.format("%q", #v > 80 and (v:sub(1, 80) .. "...") or v)
  end
  return tostring(v)
end

function U.eq(got, want, what)
  if got ~= want then
    error(string.format("%s: got %s, want %s", what or "value", show(got), show(want)), 2)
  end
end

function U.ok(cond, what)
  if not cond then
    error((what or "assertion") .. " failed", 2)
  end
  return cond
end

--- Calls fn(...) and expects it to raise an error whose message contains `pattern` (plain).
function U.raises(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then
    error("expected an error matching '" .. pattern .. "', got none", 2)
  end
  if not tostring(err):find(pattern, 1, true) then
    error("expected an error matching '" .. pattern .. "', got: " .. tostring(err), 2)
  end
  return err
end

--- Expects a failure triple nil, message, code with the given code.
function U.fails(code, v, msg, got_code)
  if v ~= nil then
    error("expected nil, message, code " .. tostring(code) .. "; got " .. show(v), 2)
  end
  if type(msg) ~= "string" or msg == "" then
    error("expected a message, got " .. show(msg), 2)
  end
  if got_code ~= code then
    error(string.format("expected code %s, got %s (%s)", tostring(code), tostring(got_code), msg), 2)
  end
  return msg
end

--- A small deterministic PRNG (xorshift32 on 32-bit ops) so that generated
--- cases do not depend on LuaJIT's math.random.
function U.prng(seed)
  local bit = require("bit")
  local s = bit.tobit(seed ~= 0 and seed or 1)
  local r = {}
  function r.u32()
    s = bit.bxor(s, bit.lshift(s, 13))
    s = bit.bxor(s, bit.rshift(s, 17))
    s = bit.bxor(s, bit.lshift(s, 5))
    return s % 4294967296
  end
  --- An integer in lo..hi (inclusive, hi - lo < 2^32).
  function r.int(lo, hi)
    return lo + r.u32() % (hi - lo + 1)
  end
  function r.float()
    return r.u32() / 4294967296
  end
  function r.bytes(n)
    local t = {}
    for i = 1, n do
      t[i] = string.char(r.int(0, 255))
    end
    return table.concat(t)
  end
  return r
end

--- Runs the named tests in order, each under pcall and a time limit of its
--- own making; prints one line per test and the closing "N passed, N failed".
function U.run(suite, tests)
  local passed, failed = 0, 0
  for _, t in ipairs(tests) do
    local name, fn = t[1], t[2]
    local t0 = U.now()
    local ok, err = xpcall(fn, debug.traceback)
    local ms = (U.now() - t0) * 1000
    if ok then
      passed = passed + 1
      print(string.format("ok   %s.%s (%.0f ms)", suite, name, ms))
    else
      failed = failed + 1
      print(string.format("FAIL %s.%s (%.0f ms): %s", suite, name, ms, tostring(err)))
    end
    io.stdout:flush()
  end
  print(string.format("%s: %d passed, %d failed", suite, passed, failed))
  collectgarbage()
  os.exit(failed == 0 and 0 or 1)
end

return U
