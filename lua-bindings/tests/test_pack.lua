-- xxnet.pack / xxnet.unpack: round trips of generated values (fixed seed),
-- refusals, and truncated or corrupt input (never a crash or a hang).
-- Needs no libxxnet: it tests xxnet_pack, which xxnet re-exports.
local U = require("tests.util")
local P = require("xxnet_pack")
local ffi = require("ffi")

local pack, unpack = P.pack, P.unpack
local NAN = 0 / 0

-- Deep equality: NaN equals NaN, -0 differs from 0, table keys are matched
-- structurally (an unpacked table key is a new table).
local deep_eq
local function num_eq(a, b)
  if a ~= a then
    return b ~= b
  end
  return a == b and (a ~= 0 or 1 / a == 1 / b)
end
deep_eq = function(a, b, depth)
  depth = depth or 0
  if type(a) ~= type(b) then
    return false
  end
  if type(a) == "number" then
    return num_eq(a, b)
  end
  if type(a) ~= "table" then
    return a == b
  end
  local used = {}
  local na = 0
  for k, v in pairs(a) do
    na = na + 1
    if type(k) == "table" then
      local found = false
      for k2, v2 in pairs(b) do
        if type(k2) == "table" and not used[k2] and deep_eq(k, k2, depth + 1) and deep_eq(v, v2, depth + 1) then
          used[k2] = true
          found = true
          break
        end
      end
      if not found then
        return false
      end
    elseif not deep_eq(v, b[k], depth + 1) then
      return false
    end
  end
  local nb = 0
  for _ in pairs(b) do
    nb = nb + 1
  end
  return na == nb
end

-- Random values (a fixed-seed PRNG, so failures reproduce).
local function generator(seed)
  local r = U.prng(seed)
  local gen
  local specials = { 0, -0.0, 1, -1, 127, 128, -32, -33, 255, 256, 2 ^ 31, -2 ^ 31, 2 ^ 32 + 1, 2 ^ 53, -2 ^ 53,
    2 ^ 53 + 2, -2 ^ 53 - 2, 2 ^ 63, 1e300, -1e-300, 5e-324, 0.1, -2.5, 1 / 0, -1 / 0, NAN }
  local function number()
    local c = r.int(1, 6)
    if c == 1 then
      return specials[r.int(1, #specials)]
    elseif c == 2 then
      return r.int(0, 300) - 100
    elseif c == 3 then
      return (r.u32() * 2097152 + r.int(0, 2097151)) * (r.int(0, 1) == 0 and 1 or -1) -- up to ~2^53
    elseif c == 4 then
      return (r.float() - 0.5) * 10 ^ r.int(-20, 20)
    elseif c == 5 then
      return r.u32()
    end
    return -r.u32() / 7
  end
  local function str()
    local lens = { 0, 1, 5, 31, 32, 33, 127, 128, 300, 5000 }
    return r.bytes(lens[r.int(1, r.int(1, 20) == 1 and #lens or 6)])
  end
  local function scalar()
    local c = r.int(1, 4)
    if c == 1 then
      return r.int(0, 1) == 1
    elseif c == 2 then
      return str()
    end
    return number()
  end
  local function key(depth)
    local c = r.int(1, 10)
    if c <= 5 then
      return str()
    elseif c <= 8 then
      local n = number()
      if n ~= n then
        return 1.5 -- NaN cannot be a key
      end
      return n
    elseif c == 9 then
      return r.int(0, 1) == 1
    end
    return gen(depth + 1)
  end
  gen = function(depth)
    depth = depth or 0
    if depth >= 3 or r.int(1, 3) > 1 then
      return scalar()
    end
    local t = {}
    for i = 1, r.int(0, 8) do
      t[i] = gen(depth + 1)
    end
    for _ = 1, r.int(0, 6) do
      local k = key(depth)
      if k ~= nil and k == k then
        t[k] = gen(depth + 1)
      end
    end
    return t
  end
  return gen
end

local function roundtrip(v, what)
  local s = pack(v)
  local got, err = unpack(s)
  if err then
    error((what or "value") .. ": unpack failed: " .. err)
  end
  if not deep_eq(v, got) then
    error((what or "value") .. ": round trip changed the value")
  end
  return s
end

local function game_message()
  return {
    op = "state", seq = 123456, tick = 987654321, room = "arena-7", ok = true, ratio = 0.75,
    player = { id = 42, name = "Zed\0x", hp = 87, mp = 12.5, pos = { x = 10.25, y = -3.5, z = 0 },
      buffs = { "haste", "shield", "regen" }, inventory = { 1001, 1002, 1003, 2001, 2002 } },
    targets = { { id = 7, dmg = 12 }, { id = 9, dmg = 30, crit = true } },
    [1] = "array part", [2] = false, [10] = "sparse",
  }
end

U.run("lua_pack", {
  { "scalars", function()
    for _, v in ipairs({ true, false, 0, 1, -1, 127, 128, -32, -33, 2 ^ 53, -2 ^ 53, 2 ^ 53 + 2, 1.5, -0.0,
      NAN, 1 / 0, -1 / 0, 5e-324, 1e308, "", "a", string.rep("\0", 100), "\255\254" }) do
      roundtrip(v, tostring(v))
    end
    -- Every varint length, on both sides of each boundary.
    for b = 7, 56, 7 do
      for _, d in ipairs({ -1, 0, 1 }) do
        local x = 2 ^ b + d
        if x <= 2 ^ 53 then
          roundtrip(x, "2^" .. b .. "+" .. d)
          roundtrip(-x, "-2^" .. b .. "+" .. d)
          roundtrip(string.rep("v", b < 20 and x or 1), "string of 2^" .. b .. "+" .. d .. " bytes")
        end
      end
    end
    local s = pack(nil)
    local v, err = unpack(s)
    U.ok(v == nil and err == nil, "nil round-trips as nil with no error")
    -- Integers and floats stay distinct on the wire.
    U.eq(#pack(5), 1, "small integers take one byte")
    U.eq(pack(-7):byte(1), 256 - 7, "small negative integer")
    U.eq(pack(1.5):byte(1), 0xA3, "a fraction is a double")
    U.eq(pack(2 ^ 53):byte(1), 0xA4, "2^53 is still an integer")
    U.eq(pack(2 ^ 53 + 2):byte(1), 0xA3, "beyond 2^53 is a double")
    U.eq(pack(-0.0):byte(1), 0xA3, "-0 is a double (keeps its sign)")
    U.eq(1 / unpack(pack(-0.0)), -1 / 0, "-0 keeps its sign")
  end },

  { "tables", function()
    roundtrip({}, "empty")
    roundtrip({ 1, 2, 3 }, "array")
    roundtrip({ a = 1, b = { c = { d = "e" } } }, "nested")
    roundtrip({ 1, nil, 3 }, "hole")
    roundtrip({ [0] = "zero", [-1] = "neg", [1.5] = "frac", [2 ^ 40] = "big" }, "number keys")
    roundtrip({ [true] = 1, [false] = 0 }, "boolean keys")
    roundtrip({ [{ 1, 2 }] = "table key", [{ k = {} }] = { {} } }, "table keys")
    roundtrip(game_message(), "game message")
    -- Counts of 128 and more need longer varints than the byte pack reserves.
    for _, n in ipairs({ 127, 128, 129, 16383, 16384, 20000 }) do
      local t = { "a", { x = 1 } }
      for i = 1, n do
        t["k" .. i] = i
      end
      roundtrip(t, n .. " pairs")
      roundtrip({ t, { n } }, n .. " pairs, nested")
    end
    local shared = { 1, 2 }
    local t = unpack(pack({ shared, shared, x = shared })) -- shared, not a cycle
    U.ok(deep_eq(t[1], { 1, 2 }) and deep_eq(t.x, { 1, 2 }), "a shared table is packed twice")
    local deep = {}
    local cur = deep
    for _ = 1, P.MAX_DEPTH - 1 do
      cur[1] = {}
      cur = cur[1]
    end
    roundtrip(deep, "nesting at the limit")
    -- Metatables are ignored; __index is not consulted.
    local proxied = setmetatable({ 1 }, { __index = function()
      return "from __index"
    end })
    U.ok(deep_eq(unpack(pack(proxied)), { 1 }), "only raw contents are packed")
  end },

  { "generated_values_round_trip", function()
    local gen = generator(20240521)
    local bytes = 0
    for i = 1, 3000 do
      bytes = bytes + #roundtrip(gen(), "generated value #" .. i)
    end
    U.ok(bytes > 10000, "the generator made non-trivial values")
  end },

  { "refusals", function()
    local c = {}
    c.self = c
    U.raises("xxnet.pack: cycle at root.self", pack, c)
    local a = { b = { c = {} } }
    a.b.c.back = a
    U.raises("xxnet.pack: cycle at root.b.c.back", pack, a)
    local k = {}
    k[k] = 1
    U.raises("xxnet.pack: cycle at root[<table key>]", pack, k)
    U.raises("xxnet.pack: cannot pack a function at root.handlers[2]", pack, { handlers = { 1, print } })
    U.raises("xxnet.pack: cannot pack a function", pack, print)
    U.raises("xxnet.pack: cannot pack a userdata at root.f", pack, { f = io.stdout })
    U.raises("xxnet.pack: cannot pack a cdata at root[\"a key\"]", pack, { ["a key"] = ffi.new("int", 1) })
    U.raises("xxnet.pack: cannot pack a thread", pack, { coroutine.create(print) })
    U.raises("xxnet.pack: cannot pack a function key", pack, { [print] = 1 })
    local deep = {}
    local cur = deep
    for _ = 1, P.MAX_DEPTH do
      cur[1] = {}
      cur = cur[1]
    end
    U.raises("xxnet.pack: nesting too deep", pack, deep)
    -- After a refusal the packer is in a clean state.
    roundtrip({ 1, { 2 } }, "after refusals")
  end },

  { "truncated_input_is_refused", function()
    local gen = generator(7)
    local values = { game_message(), { 1, 2.5, "three", { four = 4 } }, string.rep("s", 300), 2 ^ 50, -1e100, { [true] = { {} } } }
    while #values < 30 do
      local v = gen()
      if #pack(v) <= 3000 then -- every prefix is unpacked: keep it quadratic but small
        values[#values + 1] = v
      end
    end
    local checked = 0
    for vi, v in ipairs(values) do
      local s = pack(v)
      for i = 0, #s - 1 do
        local got, err = unpack(s:sub(1, i))
        if err == nil then
          error(string.format("value %d: a %d-byte prefix of %d bytes unpacked without error", vi, i, #s))
        end
        U.ok(err:find("^xxnet%.unpack: "), "message prefix: " .. err)
        U.eq(got, nil, "no value with an error")
        checked = checked + 1
      end
      local _, err = unpack(s .. "\0")
      U.ok(err and err:find("trailing"), "trailing bytes are refused")
    end
    U.ok(checked > 1000, "checked every prefix")
  end },

  { "corrupt_input_never_crashes", function()
    local r = U.prng(99)
    local gen = generator(1234)
    local expired = U.deadline(20)
    local results = { value = 0, error = 0 }
    local samples = { pack(game_message()) }
    for _ = 1, 40 do
      samples[#samples + 1] = pack(gen())
    end
    for round = 1, 20000 do
      U.ok(not expired(), "time limit")
      local s = samples[r.int(1, #samples)]
      local bad = s
      if #bad == 0 then
        bad = "\0"
      end
      for _ = 1, r.int(1, 3) do
        local i = r.int(1, #bad)
        bad = bad:sub(1, i - 1) .. string.char(r.int(0, 255)) .. bad:sub(i + 1)
      end
      local ok, v, err = pcall(unpack, bad)
      if not ok then
        error("round " .. round .. ": unpack raised instead of returning nil, err: " .. tostring(v))
      end
      if err then
        U.ok(v == nil and err:find("^xxnet%.unpack: "), "failure shape")
        results.error = results.error + 1
      else
        results.value = results.value + 1
      end
    end
    -- Random garbage, and hostile lengths that must be refused before allocating.
    for _ = 1, 2000 do
      local ok = pcall(unpack, r.bytes(r.int(0, 40)))
      U.ok(ok, "garbage never raises")
    end
    local hostile = {
      "\xA6\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x0F", -- string of ~2^56 bytes
      "\xA7\xFF\xFF\xFF\xFF\x0F\x00", -- table with 2^32 array slots
      "\xA7\x00\xFF\xFF\xFF\xFF\x0F", -- table with 2^32 pairs
      "\xA4\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x01", -- varint longer than 8 bytes
      "\xA4\x80\x80\x80\x80\x80\x80\x80\x11", -- integer 17 * 2^49, beyond 2^53
      "\xA5\x00", -- negative zero integer
      "\xA7\x01\x00\xA0", -- nil in the array part
      "\xA7\x00\x01\xA0\x01", -- nil key
      "\xA7\x00\x01\xA3\x00\x00\x00\x00\x00\x00\xF8\x7F\x01", -- NaN key
      "\xA7\x00\x02\x01\x01\x01\x02", -- duplicate key
      "\xA7\x01\x01\x05\x01\x02", -- hash key duplicates the array part
      "\xA7\x00\x01\x01\xA0", -- nil value
      "\xA8", "\xDF", -- reserved tags
      string.rep("\xA7\x01\x00", 1000) .. "\x00", -- nesting 1000 deep
    }
    for i, s in ipairs(hostile) do
      local v, err = unpack(s)
      U.ok(v == nil and err, "hostile input #" .. i .. " is refused")
    end
    U.ok(results.error > 1000 and results.value > 100, string.format("both outcomes occur (%d errors, %d values)", results.error, results.value))
  end },

  { "large_values", function()
    local arr = {}
    for i = 1, 100000 do
      arr[i] = (i % 3 == 0) and i * 0.5 or i
    end
    local s = roundtrip(arr, "100k-element array")
    U.ok(#s < 100000 * 9 + 16, "size bound")
    roundtrip(string.rep("\0\1\2", 400000), "1.2 MB string") -- grows, then shrinks, the buffer
    roundtrip({ 1, 2, 3 }, "after a large value")
  end },
})
