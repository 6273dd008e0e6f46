-- Every function the header declares resolves in the library, the library
-- exports no xxnet_* function the header lacks, and loading checks the ABI.
--   XXNET_LIB=target/release/libxxnet.so LUA_PATH='lua-bindings/?.lua' luajit lua-bindings/tests/test_symbols.lua
local ffi = require("ffi")
local U = require("tests.util")
local cdef = require("xxnet_cdef")

local lib_path = os.getenv("XXNET_LIB")

U.run("lua_symbols", {
  { "cdef_functions_resolve", function()
    local xxnet = require("xxnet")
    local lib = lib_path and ffi.load(lib_path) or xxnet.lib
    local missing = {}
    for _, name in ipairs(cdef.functions) do
      local ok, fn = pcall(function()
        return lib[name]
      end)
      if not ok or fn == nil then
        missing[#missing + 1] = name .. (ok and "" or (": " .. tostring(fn)))
      end
    end
    U.ok(#cdef.functions >= 20, "the cdef lists the header's functions")
    if #missing > 0 then
      error("declared in the header but not exported by the library:\n  " .. table.concat(missing, "\n  "))
    end
  end },

  { "library_exports_nothing_undeclared", function()
    -- The other direction needs the dynamic symbol table: nm -D (binutils).
    local path = lib_path or require("xxnet").lib_path
    local p = io.popen("nm -D --defined-only '" .. path .. "' 2>/dev/null")
    local out = p and p:read("*a") or ""
    if p then
      p:close()
    end
    if out == "" then
      print("  (skipped: nm -D gave nothing for " .. path .. ")")
      return
    end
    local declared = {}
    for _, name in ipairs(cdef.functions) do
      declared[name] = true
    end
    local extra = {}
    for name in out:gmatch("%s[TW]%s+(xxnet_[%w_]+)") do
      if not declared[name] then
        extra[#extra + 1] = name
      end
    end
    if #extra > 0 then
      error("exported by the library but missing from include/xxnet.h:\n  " .. table.concat(extra, "\n  "))
    end
  end },

  { "abi_version_matches", function()
    local xxnet = require("xxnet")
    U.eq(xxnet.lib.xxnet_abi_version(), cdef.abi_version, "xxnet_abi_version()")
    U.eq(xxnet.ABI_VERSION, cdef.constants.XXNET_ABI_VERSION, "xxnet.ABI_VERSION")
    U.ok(xxnet.version():match("^%d+%.%d+%.%d+"), "version() looks like x.y.z")
  end },

  { "abi_mismatch_is_refused", function()
    -- Reload the module against a cdef claiming another ABI version.
    local saved_mod, saved_cdef = package.loaded.xxnet, package.loaded.xxnet_cdef
    local fake = {}
    for k, v in pairs(cdef) do
      fake[k] = v
    end
    fake.abi_version = cdef.abi_version + 1000
    package.loaded.xxnet = nil
    package.loaded.xxnet_cdef = fake
    local ok, err = pcall(require, "xxnet")
    package.loaded.xxnet, package.loaded.xxnet_cdef = saved_mod, saved_cdef
    U.ok(not ok, "loading against another ABI version fails")
    U.ok(tostring(err):find("ABI mismatch", 1, true), "the error says ABI mismatch: " .. tostring(err))
  end },

  { "bad_library_path_is_clear", function()
    local saved = package.loaded.xxnet
    package.loaded.xxnet = nil
    -- os.getenv cannot be changed from Lua: swap it for the reload.
    local getenv = os.getenv
    os.getenv = function(k) -- luacheck: ignore 122
      if k == "XXNET_LIB" then
        return "/nonexistent/libxxnet.so"
      end
      return getenv(k)
    end
    local ok, err = pcall(require, "xxnet")
    os.getenv = getenv -- luacheck: ignore 122
    package.loaded.xxnet = saved
    U.ok(not ok, "a wrong XXNET_LIB fails")
    U.ok(tostring(err):find("XXNET_LIB=/nonexistent/libxxnet.so", 1, true), "the error names the path: " .. tostring(err))
  end },

  { "constants_exposed", function()
    local xxnet = require("xxnet")
    U.eq(xxnet.OK, 0, "xxnet.OK")
    U.eq(xxnet.EVENT_MESSAGE, cdef.constants.XXNET_EVENT_MESSAGE, "xxnet.EVENT_MESSAGE")
    U.eq(xxnet.event_kinds.send_failed, cdef.constants.XXNET_EVENT_SEND_FAILED, "event_kinds.send_failed")
    U.eq(xxnet.strerror(xxnet.E_TOO_LARGE), ffi.string(xxnet.lib.xxnet_strerror(cdef.constants.XXNET_E_TOO_LARGE)), "strerror")
  end },
})
