-- Generates lua-bindings/xxnet_cdef.lua from include/xxnet.h.
--
--   luajit lua-bindings/gen_cdef.lua            rewrite lua-bindings/xxnet_cdef.lua
--   luajit lua-bindings/gen_cdef.lua --check    exit 1 if the committed file is stale
--   luajit lua-bindings/gen_cdef.lua HEADER OUT explicit paths ("-" for OUT: stdout)
--
-- ffi.cdef has no preprocessor, so this is a small one, just big enough for
-- what cbindgen emits: comments are dropped, #ifdef/#ifndef/#else/#endif are
-- evaluated (__cplusplus is not defined, so the extern "C" wrapper goes),
-- #include lines go, and every `#define XXNET_NAME <integer>` becomes an entry
-- of a Lua constants table. Anything else (an #if expression, a macro whose
-- value is not a plain integer or string literal) is an error here, so a header
-- change this cannot translate fails loudly instead of producing a wrong cdef.
--
-- Besides the cdef text, the output lists the exported function names (the
-- symbol test resolves each in the library) and the fields of each struct
-- (xxnet.new validates config keys against them; stats() and conn_info()
-- copy them into tables), so nothing in the binding is hand-copied.
--
-- It is also a module: require("gen_cdef").generate(header_text) -> text.

local M = {}

local function fail(msg)
  error("gen_cdef: " .. msg, 0)
end

-- Parses a #define's value: decimal or hex integers (optional sign, optional
-- parentheses, optional u/l suffixes) or a string literal without escapes.
local function parse_value(name, text)
  local v = text:gsub("^%s+", ""):gsub("%s+$", "")
  while v:match("^%(.*%)$") do
    v = v:sub(2, -2):gsub("^%s+", ""):gsub("%s+$", "")
  end
  local str = v:match('^"([^"\\]*)"$')
  if str then
    return string.format("%q", str)
  end
  local sign, digits = v:match("^([-+]?)%s*(0[xX]%x+)[uUlL]*$")
  if not digits then
    sign, digits = v:match("^([-+]?)%s*(%d+)[uUlL]*$")
  end
  if not digits then
    fail(string.format("cannot translate #define %s %s (only integer or string literals)", name, text))
  end
  local n = tonumber(digits)
  if n == nil or n >= 2 ^ 53 then
    fail(string.format("#define %s %s is not an integer Lua numbers hold exactly", name, text))
  end
  if sign == "-" then
    n = -n
  end
  return string.format("%d", n)
end

-- Runs the mini preprocessor over the header text. Returns the remaining
-- declarations (one string) and the constants as an ordered list of {name, lua_literal}.
local function preprocess(text)
  -- Comments first (the header has no string literal containing "/*" or "//").
  -- Each becomes a \1 marker so that lines holding only comments can be
  -- dropped whole below, while blank lines between declarations stay.
  text = text:gsub("/%*.-%*/", "\1")
  if text:find("/%*") then
    fail("unterminated /* comment")
  end
  text = text:gsub("//[^\n]*", "\1")
  -- Line continuations.
  text = text:gsub("\\\n", " ")

  local defined = {}
  local constants = {}
  local stack = {} -- one entry per open conditional: {active=, parent_active=, seen_else=}
  local active = true
  local out = {}
  local lineno = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    lineno = lineno + 1
    line = line:gsub("^(%s*#.-)\1", "%1 ") -- a comment after a directive
    local directive, rest = line:match("^%s*#%s*(%a+)%s*(.-)[%s\1]*$")
    if directive then
      if directive == "ifdef" or directive == "ifndef" then
        local name = rest:match("^([%a_][%w_]*)$") or fail("bad #" .. directive .. " at line " .. lineno)
        local cond = defined[name] == true
        if directive == "ifndef" then
          cond = not cond
        end
        stack[#stack + 1] = { parent = active, cond = cond, seen_else = false }
        active = active and cond
      elseif directive == "else" then
        local top = stack[#stack] or fail("#else without #if at line " .. lineno)
        if top.seen_else then
          fail("second #else at line " .. lineno)
        end
        top.seen_else = true
        active = top.parent and not top.cond
      elseif directive == "endif" then
        local top = table.remove(stack) or fail("#endif without #if at line " .. lineno)
        active = top.parent
      elseif not active then -- luacheck: ignore 542
        -- Skipped branch: other directives do not matter.
      elseif directive == "define" then
        local name, value = rest:match("^([%a_][%w_]*)%s*(.*)$")
        if not name or rest:match("^[%a_][%w_]*%(") then
          fail("function-like or malformed #define at line " .. lineno .. ": " .. line)
        end
        defined[name] = true
        if value ~= "" then
          constants[#constants + 1] = { name, parse_value(name, value) }
        end
      elseif directive == "include" then -- luacheck: ignore 542
        -- stddef.h/stdint.h: LuaJIT's FFI knows size_t and the intN_t types.
      elseif directive == "undef" then
        defined[rest] = nil
      else
        fail("unsupported directive #" .. directive .. " at line " .. lineno)
      end
    elseif active and not line:match("^[%s\1]*\1[%s\1]*$") then
      out[#out + 1] = (line:gsub("\1", " "):gsub("%s+$", ""))
    end
  end
  if #stack > 0 then
    fail("unterminated #if")
  end
  -- Collapse runs of blank lines; drop leading and trailing ones.
  local decls = table.concat(out, "\n"):gsub("\n\n\n+", "\n\n"):gsub("^\n+", ""):gsub("\n+$", "")
  return decls .. "\n", constants
end

-- Splits the declarations into top-level statements (at ';' outside braces).
local function statements(decls)
  local list, depth, start = {}, 0, 1
  for i = 1, #decls do
    local c = decls:sub(i, i)
    if c == "{" then
      depth = depth + 1
    elseif c == "}" then
      depth = depth - 1
      if depth < 0 then
        fail("unbalanced }")
      end
    elseif c == ";" and depth == 0 then
      list[#list + 1] = decls:sub(start, i - 1):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
      start = i + 1
    end
  end
  if depth ~= 0 or decls:sub(start):match("%S") then
    fail("declarations do not end with a complete statement")
  end
  return list
end

-- Exported function names and struct fields, from the statements.
local function describe(decls)
  local functions, structs, struct_order = {}, {}, {}
  for _, st in ipairs(statements(decls)) do
    local tag, body = st:match("struct ([%a_][%w_]*) {(.*)}")
    if tag then
      local fields = {}
      for f in body:gmatch("[^;]+") do
        f = f:gsub("^%s+", ""):gsub("%s+$", "")
        if f ~= "" then
          local ctype, name, dim = f:match("^(.-)%s*([%a_][%w_]*)%s*%[(%d+)%]$")
          if not ctype then
            ctype, name = f:match("^(.-)%s*([%a_][%w_]*)$")
          end
          if not ctype or ctype == "" then
            fail("cannot read field '" .. f .. "' of struct " .. tag)
          end
          fields[#fields + 1] = { name = name, ctype = ctype:gsub("%s*%*", "*"), dim = dim and tonumber(dim) }
        end
      end
      structs[tag] = fields
      struct_order[#struct_order + 1] = tag
    elseif not st:match("^typedef ") and st:match("%(") then
      local name = st:match("([%a_][%w_]*)%s*%(") or fail("cannot read function name in: " .. st)
      functions[#functions + 1] = name
    end
  end
  return functions, structs, struct_order
end

-- A long bracket level that does not occur in the text.
local function long_bracket(text)
  local eq = "="
  while text:find("]" .. eq .. "]", 1, true) do
    eq = eq .. "="
  end
  return "[" .. eq .. "[\n", "]" .. eq .. "]"
end

function M.generate(header_text, header_name)
  local decls, constants = preprocess(header_text)
  local functions, structs, struct_order = describe(decls)
  local abi
  for _, c in ipairs(constants) do
    if c[1] == "XXNET_ABI_VERSION" then
      abi = c[2]
    end
  end
  if not abi then
    fail("the header defines no XXNET_ABI_VERSION")
  end
  if #functions == 0 then
    fail("no function declarations found")
  end

  local o = {}
  local function w(s)
    o[#o + 1] = s
  end
  w("-- Generated by lua-bindings/gen_cdef.lua from " .. (header_name or "include/xxnet.h") .. "; do not edit.\n")
  w("-- Regenerate with: luajit lua-bindings/gen_cdef.lua (the lua_cdef_current test checks it).\n")
  w("return {\n")
  w("  abi_version = " .. abi .. ",\n")
  w("  -- #define XXNET_* constants, in header order.\n")
  w("  constants = {\n")
  for _, c in ipairs(constants) do
    w("    " .. c[1] .. " = " .. c[2] .. ",\n")
  end
  w("  },\n")
  w("  -- Exported functions, in header order.\n")
  w("  functions = {\n")
  for _, f in ipairs(functions) do
    w('    "' .. f .. '",\n')
  end
  w("  },\n")
  w("  -- Struct fields in declaration order: {name, ctype[, array length]}.\n")
  w("  structs = {\n")
  for _, tag in ipairs(struct_order) do
    w("    " .. tag .. " = {\n")
    for _, f in ipairs(structs[tag]) do
      w('      { "' .. f.name .. '", "' .. f.ctype .. '"' .. (f.dim and (", " .. f.dim) or "") .. " },\n")
    end
    w("    },\n")
  end
  w("  },\n")
  local open, close = long_bracket(decls)
  w("  cdef = " .. open .. decls .. close .. ",\n")
  w("}\n")
  return table.concat(o)
end

local function read_file(path)
  local f, err = io.open(path, "rb")
  if not f then
    return nil, err
  end
  local s = f:read("*a")
  f:close()
  return s
end
M.read_file = read_file

-- The directory of this file (for the default paths).
local function here()
  local src = debug.getinfo(1, "S").source
  return src:match("^@(.*)[/\\][^/\\]*$") or "."
end
M.default_header = here() .. "/../include/xxnet.h"
M.default_output = here() .. "/xxnet_cdef.lua"

-- Script mode.
local function main(argv)
  local check = false
  local paths = {}
  for _, a in ipairs(argv) do
    if a == "--check" then
      check = true
    else
      paths[#paths + 1] = a
    end
  end
  local header = paths[1] or M.default_header
  local output = paths[2] or M.default_output
  local text = assert(read_file(header))
  local generated = M.generate(text, "include/xxnet.h")
  if check then
    local committed = read_file(output)
    if committed ~= generated then
      io.stderr:write(output .. " is stale: regenerate it with `luajit lua-bindings/gen_cdef.lua`\n")
      os.exit(1)
    end
    print(output .. " matches " .. header)
  elseif output == "-" then
    io.write(generated)
  else
    local f = assert(io.open(output, "wb"))
    f:write(generated)
    f:close()
    print("wrote " .. output)
  end
end

-- require() passes the module name as the chunk's argument; a script gets its arguments.
local first = ...
if not (type(first) == "string" and first:match("gen_cdef$")) then
  main({ ... })
end

return M
