-- xxnet.pack / xxnet.unpack: a compact binary serialization of Lua values for
-- messages between Lua hosts. The format is specified in FORMAT.md.
--
-- Pure LuaJIT (FFI for the byte buffer); needs no libxxnet, so it can be
-- required on its own: local codec = require("xxnet_pack").
--
--   pack(value) -> string          raises "xxnet.pack: ..." for what it refuses
--   unpack(string) -> value        or nil, "xxnet.unpack: ..." for bad input
--
-- pack writes into one growable uint8_t buffer reused across calls; unpack
-- reads through a uint8_t pointer into the string. Both recurse once per
-- nested table (depth bounded by MAX_DEPTH). The varint helpers have no
-- loops, so they never become inner loops of the traces of array loops.
--
-- Neither direction runs user code (metatables are ignored: rawget and next
-- only). An allocation may run a __gc finalizer that itself calls pack: such
-- a nested call gets a fresh encoder instead of sharing the buffer (the
-- decoder keeps its state in arguments and is re-entrant as it is).

local ffi = require("ffi")
local bit = require("bit")

local type, next, rawget, error, pcall, tostring = type, next, rawget, error, pcall, tostring
local band, bor, rshift = bit.band, bit.bor, bit.rshift
local ffi_string, ffi_copy, ffi_cast = ffi.string, ffi.copy, ffi.cast
local sformat = string.format

local ok_table_new, table_new = pcall(require, "table.new")
if not ok_table_new then
  table_new = function()
    return {}
  end
end

local M = {}

M.MAX_DEPTH = 200 -- tables nested deeper than this are refused (both ways)
local MAX_DEPTH = M.MAX_DEPTH
local MAX_INT = 2 ^ 53 -- integers with |v| <= 2^53 are encoded as integers

-- Tags (FORMAT.md).
local FIXSTR = 0x80 -- 0x80..0x9F: string of 0..31 bytes
local T_NIL, T_FALSE, T_TRUE = 0xA0, 0xA1, 0xA2
local T_DOUBLE = 0xA3
local T_POSINT, T_NEGINT = 0xA4, 0xA5
local T_STR, T_TABLE = 0xA6, 0xA7
local NEGFIX = 0xE0 -- 0xE0..0xFF: integers -32..-1; 0x00..0x7F: integers 0..127

local LITTLE_ENDIAN = ffi.abi("le")
pcall(ffi.cdef, "void *memmove(void *dest, const void *src, size_t n);") -- may be declared already
local C = ffi.C
local u8arr = ffi.typeof("uint8_t[?]")
local u8ptr = ffi.typeof("const uint8_t *")
local dbl_t = ffi.typeof("union { double d; uint8_t b[8]; }")

local P28 = 0x10000000 -- 2^28: the unrolled varint code works in 28-bit halves

-- Bytes of the LEB128 varint of 0 <= v <= 2^53.
local function varint_len(v)
  if v < 0x80 then
    return 1
  elseif v < 0x4000 then
    return 2
  elseif v < 0x200000 then
    return 3
  elseif v < P28 then
    return 4
  end
  local hi = (v - v % P28) / P28
  return 4 + varint_len(hi)
end

-- ---------------------------------------------------------------------------
-- Encoder
-- ---------------------------------------------------------------------------

local IDENT = "^[%a_][%w_]*$"

-- "root.a[2]" from the keys leading to depth `depth`.
local function format_path(keys, depth)
  local parts = { "root" }
  for d = 1, depth - 1 do
    local k = keys[d]
    local tk = type(k)
    if tk == "string" and k:match(IDENT) then
      parts[#parts + 1] = "." .. k
    elseif tk == "string" then
      parts[#parts + 1] = "[" .. sformat("%q", k) .. "]"
    elseif tk == "number" or tk == "boolean" then
      parts[#parts + 1] = "[" .. tostring(k) .. "]"
    else
      parts[#parts + 1] = "[<" .. tk .. " key>]"
    end
  end
  return table.concat(parts)
end

local function new_encoder()
  local INITIAL = 4096
  local buf, cap, pos = u8arr(INITIAL), INITIAL, 0
  local stack = {} -- stack[d]: the table being encoded at depth d (cycle check)
  local keys = {} -- keys[d]: the key under which depth d+1 sits (error paths)
  local dbl = dbl_t()
  local busy = false

  -- "xxnet.pack: <what> at root.a[2] (<why>)"
  local function refuse(what, depth, why)
    error("xxnet.pack: " .. what .. " at " .. format_path(keys, depth) .. (why and (" (" .. why .. ")") or ""), 0)
  end

  local function reserve(need)
    local want = pos + need
    if want > cap then
      local newcap = cap * 2
      while newcap < want do
        newcap = newcap * 2
      end
      local nb = u8arr(newcap)
      ffi_copy(nb, buf, pos)
      buf, cap = nb, newcap
    end
  end

  -- Writes the varint of 0 <= v < 2^28 at `at`; returns the offset after it.
  local function write_varint28(at, v)
    if v < 0x80 then
      buf[at] = v
      return at + 1
    elseif v < 0x4000 then
      buf[at] = bor(band(v, 0x7F), 0x80)
      buf[at + 1] = rshift(v, 7)
      return at + 2
    elseif v < 0x200000 then
      buf[at] = bor(band(v, 0x7F), 0x80)
      buf[at + 1] = bor(band(rshift(v, 7), 0x7F), 0x80)
      buf[at + 2] = rshift(v, 14)
      return at + 3
    end
    buf[at] = bor(band(v, 0x7F), 0x80)
    buf[at + 1] = bor(band(rshift(v, 7), 0x7F), 0x80)
    buf[at + 2] = bor(band(rshift(v, 14), 0x7F), 0x80)
    buf[at + 3] = rshift(v, 21)
    return at + 4
  end

  -- Writes the varint of 0 <= v <= 2^53 (at most 8 bytes) at `at`, which has room.
  local function write_varint(at, v)
    if v < P28 then
      return write_varint28(at, v)
    end
    -- The low 28 bits as four continued bytes, then the rest (< 2^25).
    local lo = v % P28
    buf[at] = bor(band(lo, 0x7F), 0x80)
    buf[at + 1] = bor(band(rshift(lo, 7), 0x7F), 0x80)
    buf[at + 2] = bor(band(rshift(lo, 14), 0x7F), 0x80)
    buf[at + 3] = bor(rshift(lo, 21), 0x80)
    return write_varint28(at + 4, (v - lo) / P28)
  end

  local function put_varint(v)
    if pos + 8 > cap then
      reserve(8)
    end
    pos = write_varint(pos, v)
  end

  local function put_number(v)
    -- -0 is integral but must stay -0: it goes as a double.
    if v % 1 == 0 and v >= -MAX_INT and v <= MAX_INT and (v ~= 0 or 1 / v > 0) then
      if v >= 0 then
        if v < 128 then
          if pos >= cap then
            reserve(1)
          end
          buf[pos] = v
          pos = pos + 1
        else
          if pos >= cap then
            reserve(1)
          end
          buf[pos] = T_POSINT
          pos = pos + 1
          put_varint(v)
        end
      elseif v >= -32 then
        if pos >= cap then
          reserve(1)
        end
        buf[pos] = 256 + v
        pos = pos + 1
      else
        if pos >= cap then
          reserve(1)
        end
        buf[pos] = T_NEGINT
        pos = pos + 1
        put_varint(-v)
      end
    else
      -- NaN, infinities, fractions and integers beyond 2^53: IEEE 754 binary64, little-endian.
      if pos + 9 > cap then
        reserve(9)
      end
      buf[pos] = T_DOUBLE
      dbl.d = v
      local b = dbl.b
      if LITTLE_ENDIAN then
        buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4] = b[0], b[1], b[2], b[3]
        buf[pos + 5], buf[pos + 6], buf[pos + 7], buf[pos + 8] = b[4], b[5], b[6], b[7]
      else
        buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4] = b[7], b[6], b[5], b[4]
        buf[pos + 5], buf[pos + 6], buf[pos + 7], buf[pos + 8] = b[3], b[2], b[1], b[0]
      end
      pos = pos + 9
    end
  end

  local function put_string(s)
    local len = #s
    if len < 32 then
      if pos + 1 + len > cap then
        reserve(1 + len)
      end
      buf[pos] = FIXSTR + len
      pos = pos + 1
    else
      if pos + 9 > cap then
        reserve(9)
      end
      buf[pos] = T_STR
      pos = pos + 1
      put_varint(len)
      if pos + len > cap then
        reserve(len)
      end
    end
    ffi_copy(buf + pos, s, len)
    pos = pos + len
  end

  local put_value

  local function put_table(t, depth)
    if depth > MAX_DEPTH then
      refuse("nesting too deep", depth, "more than " .. MAX_DEPTH .. " tables")
    end
    for d = 1, depth - 1 do
      if stack[d] == t then
        refuse("cycle", depth, "a table that contains itself")
      end
    end
    stack[depth] = t
    -- Array part: the values at 1..n up to the first nil.
    local n = 0
    while rawget(t, n + 1) ~= nil do
      n = n + 1
    end
    if pos + 10 > cap then
      reserve(10)
    end
    buf[pos] = T_TABLE
    pos = write_varint(pos + 1, n)
    -- The number of pairs is known only after the hash part is written: one
    -- byte is reserved for it, and the rare table with 128 pairs or more
    -- moves its contents to make room for a longer varint.
    local count_at = pos
    pos = pos + 1
    local child = depth + 1
    for i = 1, n do
      keys[depth] = i
      put_value(rawget(t, i), child)
    end
    local nhash = 0
    for k, v in next, t do
      if not (type(k) == "number" and k >= 1 and k <= n and k % 1 == 0) then
        nhash = nhash + 1
        keys[depth] = k
        local tk = type(k)
        if tk == "string" then
          put_string(k)
        elseif tk == "number" then
          put_number(k)
        elseif tk == "table" or tk == "boolean" then
          put_value(k, child)
        else
          refuse("cannot pack a " .. tk .. " key", child)
        end
        put_value(v, child)
      end
    end
    if nhash < 128 then
      buf[count_at] = nhash
    else
      local extra = varint_len(nhash) - 1
      reserve(extra)
      C.memmove(buf + count_at + 1 + extra, buf + count_at + 1, pos - count_at - 1)
      pos = pos + extra
      write_varint(count_at, nhash)
    end
    stack[depth] = nil
  end

  put_value = function(v, depth)
    local tv = type(v)
    if tv == "string" then
      put_string(v)
    elseif tv == "number" then
      put_number(v)
    elseif tv == "table" then
      put_table(v, depth)
    elseif tv == "boolean" then
      if pos >= cap then
        reserve(1)
      end
      buf[pos] = v and T_TRUE or T_FALSE
      pos = pos + 1
    elseif tv == "nil" then
      if pos >= cap then
        reserve(1)
      end
      buf[pos] = T_NIL
      pos = pos + 1
    else
      refuse("cannot pack a " .. tv, depth)
    end
  end

  local SHRINK_ABOVE = 1024 * 1024

  local function pack(v)
    busy = true
    pos = 0
    local ok, err = pcall(put_value, v, 1)
    busy = false
    if not ok then
      for d = #stack, 1, -1 do
        stack[d] = nil -- the tables the refused value had open
      end
      error(err, 2)
    end
    local s = ffi_string(buf, pos)
    if cap > SHRINK_ABOVE then
      -- Do not hold on to the memory of one huge message.
      buf, cap = u8arr(INITIAL), INITIAL
    end
    return s
  end

  local function is_busy()
    return busy
  end

  return pack, is_busy
end

local main_pack, main_busy = new_encoder()

--- Serializes a value (nil, boolean, number, string, or a table of those)
--- into a string. Raises "xxnet.pack: ..." for functions, userdata, cdata,
--- threads, cycles and nesting deeper than MAX_DEPTH.
function M.pack(v)
  if main_busy() then
    -- Re-entered from a __gc finalizer run by an allocation inside pack.
    local pack = new_encoder()
    return pack(v)
  end
  return main_pack(v)
end

-- ---------------------------------------------------------------------------
-- Decoder. State travels in arguments and results (p, n, pos), so it is
-- re-entrant without any instance state.
-- ---------------------------------------------------------------------------

local function corrupt(what, pos)
  error(sformat("xxnet.unpack: %s at byte %d", what, pos), 0)
end

-- Reads a varint of at most 4 bytes (< 2^28) at pos; returns value, new pos,
-- or nil, pos when its fourth byte says more follows. No loop (see the top).
local function get_varint28(p, n, pos)
  if pos >= n then
    corrupt("truncated input", pos)
  end
  local b0 = p[pos]
  if b0 < 128 then
    return b0, pos + 1
  end
  if pos + 1 >= n then
    corrupt("truncated input", pos + 1)
  end
  local b1 = p[pos + 1]
  if b1 < 128 then
    return b0 - 128 + b1 * 128, pos + 2
  end
  if pos + 2 >= n then
    corrupt("truncated input", pos + 2)
  end
  local b2 = p[pos + 2]
  if b2 < 128 then
    return b0 - 128 + (b1 - 128) * 128 + b2 * 16384, pos + 3
  end
  if pos + 3 >= n then
    corrupt("truncated input", pos + 3)
  end
  local b3 = p[pos + 3]
  local v = b0 - 128 + (b1 - 128) * 128 + (b2 - 128) * 16384
  if b3 < 128 then
    return v + b3 * 2097152, pos + 4
  end
  return nil, v + (b3 - 128) * 2097152 -- 28 bits so far, more to come
end

-- A varint of at most 8 bytes (the encoder never writes more): value, new pos.
local function get_varint(p, n, pos)
  local v, after = get_varint28(p, n, pos)
  if v then
    return v, after
  end
  local lo = after
  local hi, hpos = get_varint28(p, n, pos + 4)
  if not hi then
    corrupt("varint longer than 8 bytes", pos)
  end
  return lo + hi * P28, hpos
end

local dec_dbl = dbl_t()

local get_value

-- Returns the table, new pos.
local function get_table(p, n, pos, depth)
  if depth > MAX_DEPTH then
    corrupt("tables nested deeper than " .. MAX_DEPTH, pos)
  end
  local at = pos
  local narr, nhash
  narr, pos = get_varint(p, n, pos)
  nhash, pos = get_varint(p, n, pos)
  -- Each element takes at least one byte, each pair two: check before allocating.
  if narr > n - pos or nhash > (n - pos - narr) / 2 then
    corrupt("table sizes exceed the input", at)
  end
  local t = table_new(narr, nhash)
  local child = depth + 1
  local v
  for i = 1, narr do
    v, pos = get_value(p, n, pos, child)
    if v == nil then
      corrupt("nil in the array part", pos)
    end
    t[i] = v
  end
  local k
  for _ = 1, nhash do
    local kat = pos
    k, pos = get_value(p, n, pos, child)
    if k == nil or k ~= k then
      corrupt("nil or NaN table key", kat)
    end
    if t[k] ~= nil then
      corrupt("duplicate table key", kat)
    end
    v, pos = get_value(p, n, pos, child)
    if v == nil then
      corrupt("nil table value", kat)
    end
    t[k] = v
  end
  return t, pos
end

-- Returns the value, new pos.
get_value = function(p, n, pos, depth)
  if pos >= n then
    corrupt("truncated input", pos)
  end
  local tag = p[pos]
  pos = pos + 1
  if tag < 0x80 then
    return tag, pos
  elseif tag < 0xA0 then
    local len = tag - FIXSTR
    if len > n - pos then
      corrupt("truncated string", pos - 1)
    end
    return ffi_string(p + pos, len), pos + len
  elseif tag >= NEGFIX then
    return tag - 256, pos
  elseif tag == T_TABLE then
    return get_table(p, n, pos, depth)
  elseif tag == T_STR then
    local len
    len, pos = get_varint(p, n, pos)
    if len > n - pos then
      corrupt("string longer than the input", pos)
    end
    return ffi_string(p + pos, len), pos + len
  elseif tag == T_POSINT or tag == T_NEGINT then
    local v
    v, pos = get_varint(p, n, pos)
    if v > MAX_INT then
      corrupt("integer beyond 2^53", pos)
    end
    if tag == T_NEGINT then
      if v == 0 then
        corrupt("negative zero integer", pos)
      end
      v = -v
    end
    return v, pos
  elseif tag == T_DOUBLE then
    if 8 > n - pos then
      corrupt("truncated double", pos - 1)
    end
    local b = dec_dbl.b
    if LITTLE_ENDIAN then
      b[0], b[1], b[2], b[3] = p[pos], p[pos + 1], p[pos + 2], p[pos + 3]
      b[4], b[5], b[6], b[7] = p[pos + 4], p[pos + 5], p[pos + 6], p[pos + 7]
    else
      b[7], b[6], b[5], b[4] = p[pos], p[pos + 1], p[pos + 2], p[pos + 3]
      b[3], b[2], b[1], b[0] = p[pos + 4], p[pos + 5], p[pos + 6], p[pos + 7]
    end
    return dec_dbl.d, pos + 8
  elseif tag == T_TRUE then
    return true, pos
  elseif tag == T_FALSE then
    return false, pos
  elseif tag == T_NIL then
    return nil, pos
  end
  corrupt(sformat("unknown tag 0x%02X", tag), pos - 1)
end

local function decode(s)
  local n = #s
  local v, pos = get_value(ffi_cast(u8ptr, s), n, 0, 1)
  if pos ~= n then
    corrupt(sformat("%d trailing bytes", n - pos), pos)
  end
  return v
end

--- Deserializes a string made by pack. Returns the value (which may be nil:
--- check the second result), or nil and "xxnet.unpack: ..." for truncated or
--- corrupt input. Never raises for bad bytes; raises only if `s` is not a string.
function M.unpack(s)
  if type(s) ~= "string" then
    error("xxnet.unpack: expected a string, got " .. type(s), 2)
  end
  local ok, v = pcall(decode, s)
  if ok then
    return v
  end
  if type(v) ~= "string" or not v:find("^xxnet%.unpack: ") then
    -- Not one of ours (e.g. out of memory): still report it as a failure.
    v = "xxnet.unpack: " .. tostring(v)
  end
  return nil, v
end

return M
