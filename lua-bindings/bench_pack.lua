-- Benchmark: xxnet.pack/unpack (binary, FFI buffer) against the common
-- plain-Lua approach, a "serpent-like" serializer to Lua source read back
-- with loadstring. Prints bytes and ops/s per workload.
--
--   luajit lua-bindings/bench_pack.lua           (1.5 s per measurement, about 20 s)
--   luajit lua-bindings/bench_pack.lua --quick   (a smoke run, as ctest does)
--
-- Needs no libxxnet (it uses xxnet_pack, which xxnet re-exports).

local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
package.path = here .. "/?.lua;" .. package.path

local ffi = require("ffi")
local P = require("xxnet_pack")

local QUICK = arg and arg[1] == "--quick"
local BUDGET = QUICK and 0.03 or 1.5 -- seconds per measurement

pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } xxnet_bench_timespec;
int clock_gettime(int clk_id, xxnet_bench_timespec *tp);
]])
local ts = ffi.new("xxnet_bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- ---------------------------------------------------------------------------
-- The plain-Lua alternative: Lua source out, loadstring in.
-- ---------------------------------------------------------------------------

local sformat, concat = string.format, table.concat

local function ser_value(v, out)
  local tv = type(v)
  if tv == "number" then
    if v % 1 == 0 and v >= -2 ^ 53 and v <= 2 ^ 53 then
      out[#out + 1] = sformat("%d", v)
    elseif v ~= v then
      out[#out + 1] = "0/0"
    elseif v == 1 / 0 or v == -1 / 0 then
      out[#out + 1] = v > 0 and "1/0" or "-1/0"
    else
      out[#out + 1] = sformat("%.17g", v)
    end
  elseif tv == "string" then
    out[#out + 1] = sformat("%q", v)
  elseif tv == "boolean" or tv == "nil" then
    out[#out + 1] = tostring(v)
  elseif tv == "table" then
    out[#out + 1] = "{"
    local n = #v
    for i = 1, n do
      ser_value(v[i], out)
      out[#out + 1] = ","
    end
    for k, val in pairs(v) do
      if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
        if type(k) == "string" and k:match("^[%a_][%w_]*$") then
          out[#out + 1] = k
          out[#out + 1] = "="
        else
          out[#out + 1] = "["
          ser_value(k, out)
          out[#out + 1] = "]="
        end
        ser_value(val, out)
        out[#out + 1] = ","
      end
    end
    out[#out + 1] = "}"
  else
    error("cannot serialize a " .. tv)
  end
end

local function lua_pack(v)
  local out = { "return " }
  ser_value(v, out)
  return concat(out)
end

local empty_env = {}
local function lua_unpack(s)
  local f = assert(loadstring(s, "=data"))
  setfenv(f, empty_env)
  return f()
end

-- ---------------------------------------------------------------------------
-- Workloads
-- ---------------------------------------------------------------------------

local function game_message(seq)
  return {
    op = "state", seq = seq, tick = 987654321, room = "arena-7", ok = true, ratio = 0.75,
    player = {
      id = 42, name = "Zed", level = 31, hp = 87, mp = 12.5, guild = "Night Owls",
      pos = { x = 10.25, y = -3.5, z = 0 }, vel = { x = 0.5, y = 0, z = -1.25 },
      buffs = { "haste", "shield", "regen" }, inventory = { 1001, 1002, 1003, 2001, 2002 },
    },
    targets = { { id = 7, dmg = 12, crit = false }, { id = 9, dmg = 30, crit = true } },
    chat = "gg, wp", ping_ms = 38,
  }
end

local numbers = {}
for i = 1, 10000 do
  numbers[i] = (i % 4 == 0) and (i * 0.37) or (i * 7919 % 100003) - 50000
end

local records = {}
for i = 1, 1000 do
  records[i] = { id = i, name = "unit" .. i, x = i * 0.5, y = -i, alive = i % 3 ~= 0 }
end

local workloads = {
  { "game message (~30 fields, nested)", game_message(1) },
  { "array of 10000 numbers", numbers },
  { "array of 1000 records", records },
}

-- ---------------------------------------------------------------------------

-- Calls per second of fn(arg): the best of three windows of BUDGET/3 s each
-- (the best, because other processes on the machine only ever slow it down).
local function rate(fn, arg)
  for _ = 1, 20 do
    fn(arg) -- warm up, let the JIT compile
  end
  local best = 0
  for _ = 1, 3 do
    local n, batch = 0, 1
    local t0 = now()
    local elapsed
    repeat
      for _ = 1, batch do
        fn(arg)
      end
      n = n + batch
      batch = batch * 2
      elapsed = now() - t0
    until elapsed >= BUDGET / 3
    if n / elapsed > best then
      best = n / elapsed
    end
  end
  return best
end

local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then
    return a == b or (a ~= a and b ~= b)
  end
  for k, v in pairs(a) do
    if not same(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end

local codecs = {
  { "xxnet.pack", P.pack, P.unpack },
  { "lua source", lua_pack, lua_unpack },
}

print(string.format("%s, %s; %.2f s per measurement%s", jit and jit.version or "?", jit and jit.arch or "?",
  BUDGET, QUICK and " (quick smoke run)" or ""))
print(string.format("%-36s %-11s %9s %14s %14s", "workload", "codec", "bytes", "pack ops/s", "unpack ops/s"))
for _, w in ipairs(workloads) do
  local name, value = w[1], w[2]
  local first
  for _, c in ipairs(codecs) do
    local cname, enc, dec = c[1], c[2], c[3]
    local s = enc(value)
    assert(same(value, (dec(s))), cname .. " does not round-trip " .. name)
    local p = rate(enc, value)
    local u = rate(dec, s)
    local line = string.format("%-36s %-11s %9d %14.0f %14.0f", name, cname, #s, p, u)
    if first then
      line = line .. string.format("   (xxnet.pack: %.1fx pack, %.1fx unpack, %.0f%% of the bytes)",
        first.p / p, first.u / u, 100 * first.bytes / #s)
    else
      first = { p = p, u = u, bytes = #s }
    end
    print(line)
  end
end
