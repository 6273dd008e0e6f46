-- lua-bindings/xxnet_cdef.lua is what gen_cdef.lua makes of include/xxnet.h
-- today (like tests/header.rs for the header itself), and the generator
-- refuses what it cannot translate.
local U = require("tests.util")
local gen = require("gen_cdef")

local function generate(text)
  return gen.generate(text, "include/xxnet.h")
end

U.run("lua_cdef", {
  { "committed_cdef_is_current", function()
    local header = assert(gen.read_file(gen.default_header))
    local committed = assert(gen.read_file(gen.default_output))
    local fresh = generate(header)
    if fresh ~= committed then
      -- Point at the first difference.
      local line = 1
      for i = 1, math.max(#fresh, #committed) do
        if fresh:sub(i, i) ~= committed:sub(i, i) then
          break
        end
        if fresh:sub(i, i) == "\n" then
          line = line + 1
        end
      end
      error("lua-bindings/xxnet_cdef.lua is stale (first difference at line " .. line
        .. "): regenerate it with `luajit lua-bindings/gen_cdef.lua`")
    end
  end },

  { "cdef_compiles_and_matches_header_constants", function()
    local cdef = require("xxnet_cdef")
    local header = assert(gen.read_file(gen.default_header))
    local n = 0
    for name, value in header:gmatch("#define (XXNET_[%w_]+) (%-?%d+)") do
      U.eq(cdef.constants[name], tonumber(value), name)
      n = n + 1
    end
    U.ok(n > 40, "the header's constants were found")
    U.eq(cdef.abi_version, cdef.constants.XXNET_ABI_VERSION, "abi_version")
    -- The declarations parse (the module runs ffi.cdef on them once).
    require("xxnet")
    local ffi = require("ffi")
    U.ok(ffi.sizeof("xxnet_event") > 0, "xxnet_event is declared")
  end },

  { "strips_preprocessor_and_comments", function()
    local out = generate([[
/* header */
#ifndef X_H
#define X_H
#include <stdint.h>
// line comment
#define XXNET_A 5 /* trailing */
#define XXNET_B -7
#define XXNET_C 0x10u
#define XXNET_ABI_VERSION 3
#ifdef __cplusplus
extern "C" {
#endif
/**
 * doc
 */
int xxnet_f(int a /* inline */, uint8_t b);
#ifdef __cplusplus
}
#endif
#endif /* X_H */
]])
    local mod = assert(loadstring(out))()
    U.eq(mod.abi_version, 3, "abi_version")
    U.eq(mod.constants.XXNET_A, 5, "XXNET_A")
    U.eq(mod.constants.XXNET_B, -7, "XXNET_B")
    U.eq(mod.constants.XXNET_C, 16, "XXNET_C")
    U.eq(mod.constants.X_H, nil, "the include guard is not a constant")
    U.eq(mod.functions[1], "xxnet_f", "function name")
    U.ok(not mod.cdef:find("#", 1, true), "no preprocessor left")
    U.ok(not mod.cdef:find("extern", 1, true), "no extern \"C\" left")
    U.ok(not mod.cdef:find("/*", 1, true) and not mod.cdef:find("//", 1, true), "no comments left")
  end },

  { "refuses_what_it_cannot_translate", function()
    U.raises("unsupported directive #if", generate, "#if FOO > 1\n#endif\n#define XXNET_ABI_VERSION 1\nint f(void);\n")
    U.raises("cannot translate #define XXNET_X (1 << 2)", generate, "#define XXNET_X (1 << 2)\n")
    U.raises("function-like", generate, "#define XXNET_M(x) (x)\n")
    U.raises("no XXNET_ABI_VERSION", generate, "int f(void);\n")
    U.raises("unterminated #if", generate, "#ifdef A\n#define XXNET_ABI_VERSION 1\nint f(void);\n")
  end },
})
