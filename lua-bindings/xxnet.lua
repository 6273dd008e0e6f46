-- xxnet for LuaJIT: an idiomatic binding of libxxnet's C ABI (include/xxnet.h).
--
--   local xxnet = require("xxnet")
--   local net = assert(xxnet.new{ idle_timeout_ms = 5000 })
--   local port = assert(net:listen("127.0.0.1", 0))
--   net:on("connected", function(ev) print("hello", ev.peer_ip, ev.peer_port) end)
--   net:route(7, function(ev) net:send_conn(ev.conn, ev.data, { msg_id = 8 }) end)
--   while running do net:update(10) end   -- polls and dispatches in Lua
--   net:free()
--
-- Remote calls between named nodes (xxnet.new{ node_name = "A" }):
--
--   a:cluster_set("B", "127.0.0.1:7001")          -- or a:cluster_load("clustername.lua")
--   b:serve("echo", function(req) req:reply(0, req.data) end)
--   a:call("B", "echo", "hi", nil, function(code, reply) end)  -- runs once, from update()
--
-- Downloads by content (xxnet.new{ node_name = "C", download_dir = "/var/cache/x" }):
--
--   s:files_serve("/srv/files")                     -- on the source node
--   c:download("S", md5_hex, "maps/world.bin", size, function(r)  -- runs once, from update()
--     if r.code == 0 then use(r.path) end            -- the file is released after this returns
--   end, function(done, total) end)                  -- progress, a few times per second
--
-- The library is found through $XXNET_LIB, else the system's search
-- (ffi.load("xxnet")), else cargo's target/release next to this file's folder.
-- The FFI declarations come from xxnet_cdef.lua, which gen_cdef.lua generates
-- from the header; loading checks that the library's ABI version is the one
-- they were generated from.
--
-- Conventions: a call that fails at run time returns nil, a message (from
-- xxnet_strerror) and the XXNET_E_* code; a programming error (a wrong
-- argument type, an unknown option, a freed net) raises. Ids (connections,
-- timers, need-ack messages) are Lua numbers: the library keeps them below 2^53.
-- Events are pulled with xxnet_poll_recv into one event array per net and
-- dispatched here in Lua; no C callback ever enters Lua (see STYLE.md, LuaJIT FFI).

local ffi = require("ffi")
local cdef = require("xxnet_cdef")
local codec = require("xxnet_pack")

local type, tonumber, pairs, pcall, error, setmetatable = type, tonumber, pairs, pcall, error, setmetatable
local ffi_string = ffi.string
local sformat = string.format

local xxnet = {}

-- ---------------------------------------------------------------------------
-- Declarations and the library
-- ---------------------------------------------------------------------------

-- ffi.cdef can run once per Lua state (a second definition of the structs is
-- an error), e.g. when package.loaded.xxnet is cleared and the module reloaded.
if not pcall(ffi.typeof, "struct xxnet_event") then
  ffi.cdef(cdef.cdef)
end

local function module_dir()
  local src = debug.getinfo(1, "S").source
  return src:match("^@(.*)[/\\][^/\\]*$") or "."
end

local LIB_FILE = (ffi.os == "Windows" and "xxnet.dll") or (ffi.os == "OSX" and "libxxnet.dylib") or "libxxnet.so"

local function load_library()
  local path = os.getenv("XXNET_LIB")
  if path and path ~= "" then
    local ok, lib = pcall(ffi.load, path)
    if not ok then
      error("xxnet: cannot load XXNET_LIB=" .. path .. ": " .. tostring(lib), 0)
    end
    return lib, path
  end
  local tried = {}
  local ok, lib = pcall(ffi.load, "xxnet")
  if ok then
    return lib, "xxnet"
  end
  tried[#tried + 1] = "xxnet (the system's search): " .. tostring(lib)
  local candidates = {}
  local target = os.getenv("CARGO_TARGET_DIR")
  if target and target ~= "" then
    candidates[#candidates + 1] = target .. "/release/" .. LIB_FILE
  end
  candidates[#candidates + 1] = module_dir() .. "/../target/release/" .. LIB_FILE
  for _, c in ipairs(candidates) do
    ok, lib = pcall(ffi.load, c)
    if ok then
      return lib, c
    end
    tried[#tried + 1] = c .. ": " .. tostring(lib)
  end
  error("xxnet: cannot load libxxnet (set XXNET_LIB to its path, or run `cargo build --release`); tried:\n  "
    .. table.concat(tried, "\n  "), 0)
end

local lib, lib_path = load_library()

do
  local ok, abi = pcall(function()
    return lib.xxnet_abi_version()
  end)
  if not ok then
    error("xxnet: " .. lib_path .. " does not export xxnet_abi_version (a library older than this binding?): " .. tostring(abi), 0)
  end
  if abi ~= cdef.abi_version then
    error(sformat("xxnet: ABI mismatch: %s implements ABI %d, this binding was generated for ABI %d "
      .. "(rebuild the library, or regenerate lua-bindings/xxnet_cdef.lua with gen_cdef.lua and update xxnet.lua)",
      lib_path, abi, cdef.abi_version), 0)
  end
end

xxnet.lib = lib -- the raw FFI namespace, for what this module does not wrap
xxnet.lib_path = lib_path
xxnet.cdef = cdef
xxnet.ABI_VERSION = cdef.abi_version

-- Constants without the XXNET_ prefix: xxnet.E_TOO_LARGE, xxnet.EVENT_MESSAGE, xxnet.LANE_BULK...
for name, value in pairs(cdef.constants) do
  xxnet[name:sub(7)] = value
end

-- Event kinds by name ("message", "send_failed", ...) and back; peer states likewise.
local KIND_NAME, KIND_BY_NAME, STATE_NAME = {}, {}, {}
for name, value in pairs(cdef.constants) do
  local ev = name:match("^XXNET_EVENT_(.+)$")
  if ev and ev ~= "NONE" then
    KIND_NAME[value] = ev:lower()
    KIND_BY_NAME[ev:lower()] = value
  end
  local st = name:match("^XXNET_PEER_(.+)$")
  if st then
    STATE_NAME[value] = st:lower()
  end
end
xxnet.event_kinds = KIND_BY_NAME

local C = cdef.constants
local EV_MESSAGE, EV_TIMER = C.XXNET_EVENT_MESSAGE, C.XXNET_EVENT_TIMER
local EV_CALL_REQUEST, EV_CALL_RESULT = C.XXNET_EVENT_CALL_REQUEST, C.XXNET_EVENT_CALL_RESULT
local EV_NODE_CHANGED, EV_SEND_FAILED = C.XXNET_EVENT_NODE_CHANGED, C.XXNET_EVENT_SEND_FAILED
local E_REENTRANT, E_SHUTDOWN, E_CLOSED = C.XXNET_E_REENTRANT, C.XXNET_E_SHUTDOWN, C.XXNET_E_CLOSED
local EV_DL_PROGRESS, EV_DL_DONE = C.XXNET_EVENT_DOWNLOAD_PROGRESS, C.XXNET_EVENT_DOWNLOAD_DONE
local EV_DL_FAILED = C.XXNET_EVENT_DOWNLOAD_FAILED
local E_BAD_PATH = C.XXNET_E_BAD_PATH
local NODE_CHANGE = { [C.XXNET_NODE_ADDED] = "added", [C.XXNET_NODE_MOVED] = "moved", [C.XXNET_NODE_REMOVED] = "removed" }

local function strerror(code)
  return ffi_string(lib.xxnet_strerror(code))
end

-- The Lua failure triple for a non-zero code.
local function fail(code)
  return nil, strerror(code), code
end

--- Text for an XXNET_E_* code.
xxnet.strerror = strerror

--- The library version, e.g. "0.1.0".
function xxnet.version()
  return ffi_string(lib.xxnet_version())
end

--- Routes the library's log lines with level <= `level` (an XXNET_LOG_* value
--- or "off"/"error"/"warn"/"info"/"debug"/"trace") to stderr. Process-wide.
--- (A Lua log handler is not offered: the library logs from its reactor
--- thread, where Lua must not run.)
function xxnet.set_log_level(level)
  if type(level) == "string" then
    level = cdef.constants["XXNET_LOG_" .. level:upper()] or error("xxnet.set_log_level: unknown level '" .. level .. "'", 2)
  end
  local rc = lib.xxnet_set_log_handler(nil, nil, level)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

xxnet.pack = codec.pack
xxnet.unpack = codec.unpack

-- ---------------------------------------------------------------------------
-- Argument checks (programming errors raise, pointing at the caller)
-- ---------------------------------------------------------------------------

local INT_MAX = { uint8_t = 255, uint16_t = 65535, uint32_t = 4294967295, uint64_t = 2 ^ 53, int = 2147483647, int32_t = 2147483647 }
local INT_MIN = { int = -2147483648, int32_t = -2147483648 }

local function check_int(v, lo, hi, what, fname)
  if type(v) ~= "number" or v % 1 ~= 0 or v < lo or v > hi then
    error(sformat("%s: %s must be an integer in %d..%.0f, got %s", fname, what, lo, hi, tostring(v)), 3)
  end
end

local function check_string(v, what, fname)
  if type(v) ~= "string" then
    error(sformat("%s: %s must be a string, got %s", fname, what, type(v)), 3)
  end
end

local function check_conn(v, fname)
  if type(v) ~= "number" then
    error(sformat("%s: conn must be a number, got %s", fname, type(v)), 3)
  end
end

-- Node, service and cluster file names: strings without NUL bytes (C strings).
local function check_name(v, what, fname)
  if type(v) ~= "string" or v:find("\0", 1, true) then
    error(sformat("%s: %s must be a string without NUL bytes, got %s", fname, what, type(v) == "string" and "one with a NUL" or type(v)), 3)
  end
end

local function check_fn(v, fname)
  if v ~= nil and type(v) ~= "function" then
    error(sformat("%s: handler must be a function or nil, got %s", fname, type(v)), 3)
  end
end

-- Field name -> ctype, from the generated struct descriptions.
local function field_types(struct)
  local map, list = {}, {}
  for _, f in ipairs(cdef.structs[struct]) do
    map[f[1]] = f[2]
    list[#list + 1] = f[1]
  end
  return map, list
end

local CONFIG_FIELDS, CONFIG_LIST = field_types("xxnet_config")
local OPT_FIELDS, OPT_LIST = field_types("xxnet_send_opts")
local CALL_OPT_FIELDS, CALL_OPT_LIST = field_types("xxnet_call_opts")
local STATS_FIELDS = cdef.structs.xxnet_stats
local INFO_FIELDS = cdef.structs.xxnet_peer_info
local FILE_STATS_FIELDS = cdef.structs.xxnet_file_stats

-- Copies a struct into a new Lua table: integers as numbers, char arrays as strings.
local function struct_to_table(s, fields)
  local t = {}
  for i = 1, #fields do
    local f = fields[i]
    local name = f[1]
    if f[3] then
      t[name] = ffi_string(s[name])
    elseif f[2]:find("%*$") then
      t[name] = s[name] ~= nil and ffi_string(s[name]) or nil
    else
      t[name] = tonumber(s[name])
    end
  end
  return t
end

-- ---------------------------------------------------------------------------
-- Nets
-- ---------------------------------------------------------------------------

local BATCH = 256 -- events per xxnet_poll_recv
local event_array_t = ffi.typeof("xxnet_event[?]")
local config_t = ffi.typeof("xxnet_config")
local opts_t = ffi.typeof("xxnet_send_opts")
local call_opts_t = ffi.typeof("xxnet_call_opts")
local stats_t = ffi.typeof("struct xxnet_stats")
local info_t = ffi.typeof("xxnet_peer_info")
local file_stats_t = ffi.typeof("xxnet_file_stats")
local u16_t = ffi.typeof("uint16_t[1]")
local u64_t = ffi.typeof("uint64_t[1]")

local Net = {}
Net.__index = Net
xxnet.Net = Net

local Timer = {}
Timer.__index = Timer
xxnet.Timer = Timer

local Request = {}
Request.__index = Request
xxnet.Request = Request

-- Bound on the drain loops of shutdown() and free() (after xxnet_shutdown
-- nothing is added to the queue but due timers).
local DRAIN_ROUNDS = 65536

--- Creates a net (an xxnet context and its reactor thread). `config` is a
--- table of xxnet_config fields by name (see include/xxnet.h); omitted
--- fields keep the library's defaults; an unknown key raises. Returns the net,
--- or nil and the library's reason.
function xxnet.new(config)
  if config ~= nil and type(config) ~= "table" then
    error("xxnet.new: config must be a table or nil, got " .. type(config), 2)
  end
  local cfg = config_t()
  lib.xxnet_config_default(cfg)
  for k, v in pairs(config or {}) do
    local ctype = CONFIG_FIELDS[k]
    if not ctype then
      error(sformat("xxnet.new: unknown config key '%s' (known: %s)", tostring(k), table.concat(CONFIG_LIST, ", ")), 2)
    end
    if k == "auth_secret_len" then
      error("xxnet.new: auth_secret_len is #auth_secret (give auth_secret only)", 2)
    elseif k == "auth_secret" then
      -- Any bytes; the length goes with them.
      check_string(v, "config.auth_secret", "xxnet.new")
      cfg.auth_secret_len = #v
    elseif INT_MAX[ctype] then
      check_int(v, INT_MIN[ctype] or 0, INT_MAX[ctype], "config." .. k, "xxnet.new")
    elseif ctype == "const char*" then
      check_string(v, "config." .. k, "xxnet.new")
    end
    cfg[k] = v -- strings stay referenced by `config` until xxnet_new has read them
  end
  local ctx = lib.xxnet_new(cfg)
  if ctx == nil then
    return nil, "xxnet.new: " .. ffi_string(lib.xxnet_last_error())
  end
  ctx = ffi.gc(ctx, lib.xxnet_free) -- a net that is never freed is freed by the GC
  local self = setmetatable({
    _ctx = ctx,
    _evs = event_array_t(BATCH), -- the one reusable event array
    _pos = 0, -- next event of the current batch to dispatch
    _n = 0, -- events in the current batch
    _dispatching = false,
    _opts = opts_t(),
    _call_opts = call_opts_t(),
    _calls = {}, -- session -> callback of a pending call
    _services = {}, -- service name -> handler
    _downloads = {}, -- task -> { done = on_done, progress = on_progress, size =, node = } of a running download
    _freeing = false,
    _u16 = u16_t(),
    _u64 = u64_t(),
    _stats = stats_t(),
    _info = info_t(),
    _file_stats = file_stats_t(),
    _on = {}, -- kind number -> handler
    _routes = {}, -- msg_id -> handler
    _default_route = nil,
    _timers = {}, -- timer id -> live Timer
    -- The event table handed to handlers, reused for every event: copy what you keep.
    _event = {
      kind = "", conn = 0, peer_ip = "", peer_port = 0, lane = 0, msg_id = 0, data = nil,
      code = 0, id = 0, count = 0, total = 0, user_data = 0, timer = nil,
      node = "", service = "", change = nil, task = nil, path = nil,
    },
  }, Net)
  return self
end

local function live(self, fname)
  local ctx = self._ctx
  if ctx == nil then
    error(fname .. ": the net was freed", 3)
  end
  return ctx
end

function Net:__tostring()
  return sformat("xxnet.net(%s)", self._ctx ~= nil and tostring(self._ctx):match("0x%x+") or "freed")
end

local dispatch_one -- defined with the dispatch below

-- free()'s last rites: stops the network and runs the callback of every
-- call and every download still pending (and nothing else), with the
-- results still queued (XXNET_E_SHUTDOWN for those the shutdown resolved).
-- Returns the first error a callback raised, after running all of them.
local function resolve_pending(self, ctx)
  local first_err
  local calls, downloads = self._calls, self._downloads
  local function run(e)
    local k = e.kind
    if (k == EV_CALL_RESULT and calls[tonumber(e.id)])
      or ((k == EV_DL_DONE or k == EV_DL_FAILED) and downloads[tonumber(e.id)]) then
      local ok, err = pcall(dispatch_one, self, e)
      if not ok and first_err == nil then
        first_err = err
      end
    end
  end
  local function pending()
    return next(calls) ~= nil or next(downloads) ~= nil
  end
  -- Downloads without on_done have nobody to tell.
  for task, d in pairs(downloads) do
    if not d.done then
      downloads[task] = nil
    end
  end
  lib.xxnet_shutdown(ctx)
  local was = self._dispatching
  self._dispatching = true -- a callback's update() returns XXNET_E_REENTRANT
  local evs = self._evs
  while self._pos < self._n and pending() do -- the rest of the batch being dispatched
    local i = self._pos
    self._pos = i + 1
    run(evs[i])
  end
  for _ = 1, DRAIN_ROUNDS do
    if not pending() then
      break
    end
    local n = tonumber(lib.xxnet_poll_recv(ctx, evs, BATCH, 0))
    self._pos, self._n = n, n
    if n == 0 then
      break
    end
    for i = 0, n - 1 do
      run(evs[i])
    end
  end
  -- None should be left; if one is, it still runs once.
  local function sorted_keys(t)
    local list = {}
    for k in pairs(t) do
      list[#list + 1] = k
    end
    table.sort(list)
    return list
  end
  local ev = self._event
  for _, session in ipairs(sorted_keys(calls)) do
    local fn = calls[session]
    calls[session] = nil
    ev.kind, ev.code, ev.id, ev.session, ev.data, ev.node, ev.service = "call_result", E_SHUTDOWN, session, session, "", "", ""
    local ok, err = pcall(fn, E_SHUTDOWN, "", ev)
    if not ok and first_err == nil then
      first_err = err
    end
  end
  for _, task in ipairs(sorted_keys(downloads)) do
    local d = downloads[task]
    downloads[task] = nil
    local ok, err = pcall(d.done, { task = task, code = E_SHUTDOWN, path = nil, size = d.size, count = 0, node = d.node })
    if not ok and first_err == nil then
      first_err = err
    end
  end
  self._dispatching = was
  return first_err
end

--- Stops the reactor and closes every socket. Idempotent. Timers die with
--- it. Calls and downloads still pending run their callback first, once,
--- with xxnet.E_SHUTDOWN (or a result already queued); an error one of them
--- raises is raised again once the net is freed. (A net left to the GC
--- runs no callback.)
function Net:free()
  local ctx = self._ctx
  if ctx == nil or self._freeing then
    return
  end
  self._freeing = true
  local err
  if next(self._calls) ~= nil or next(self._downloads) ~= nil then
    err = resolve_pending(self, ctx)
  end
  self._ctx = nil
  self._n, self._pos = 0, 0 -- the rest of a batch borrowed payloads that die here
  ffi.gc(ctx, nil)
  lib.xxnet_free(ctx)
  for _, t in pairs(self._timers) do
    t.live = false
  end
  self._timers = {}
  self._services = {}
  self._downloads = {}
  self._freeing = false
  if err ~= nil then
    error(err, 0)
  end
end

--- True until free().
function Net:alive()
  return self._ctx ~= nil
end

--- Listens on a numeric IPv4/IPv6 address; port 0 (the default) picks a free
--- one. Returns the bound port, or nil, message, code.
function Net:listen(ip, port)
  local ctx = live(self, "net:listen")
  check_string(ip, "ip", "net:listen")
  port = port or 0
  check_int(port, 0, 65535, "port", "net:listen")
  local rc = lib.xxnet_listen(ctx, ip, port, self._u16)
  if rc ~= 0 then
    return fail(rc)
  end
  return self._u16[0]
end

-- Fills the net's reusable xxnet_send_opts (or xxnet_call_opts) from an options table.
local function fill_opts(self, opts, fname, o, fields, list)
  if type(opts) ~= "table" then
    error(sformat("%s: options must be a table or nil, got %s", fname, type(opts)), 3)
  end
  o, fields, list = o or self._opts, fields or OPT_FIELDS, list or OPT_LIST
  ffi.fill(o, ffi.sizeof(o))
  for k, v in pairs(opts) do
    if not fields[k] then
      error(sformat("%s: unknown option '%s' (known: %s)", fname, tostring(k), table.concat(list, ", ")), 3)
    end
    if type(v) ~= "number" or v % 1 ~= 0 or v < 0 or v > 4294967295 then
      error(sformat("%s: option %s must be an integer in 0..4294967295, got %s", fname, k, tostring(v)), 3)
    end
    o[k] = v
  end
  return o
end

--- Queues `data` to the peer listening at ip:port (connecting on first use).
--- opts: { lane = 0..LANES-1, msg_id = n }. Returns true, or nil, message, code.
function Net:send(ip, port, data, opts)
  local ctx = live(self, "net:send")
  check_string(ip, "ip", "net:send")
  check_int(port, 0, 65535, "port", "net:send")
  check_string(data, "data", "net:send")
  local rc
  if opts == nil then
    rc = lib.xxnet_send(ctx, ip, port, data, #data)
  else
    rc = lib.xxnet_send_ex(ctx, ip, port, data, #data, fill_opts(self, opts, "net:send"))
  end
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- Queues `data` on a known connection (e.g. a client that listens nowhere).
--- Returns true, or nil, message, code.
function Net:send_conn(conn, data, opts)
  local ctx = live(self, "net:send_conn")
  check_conn(conn, "net:send_conn")
  check_string(data, "data", "net:send_conn")
  local rc
  if opts == nil then
    rc = lib.xxnet_send_conn(ctx, conn, data, #data)
  else
    rc = lib.xxnet_send_conn_ex(ctx, conn, data, #data, fill_opts(self, opts, "net:send_conn"))
  end
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- Like send, and exactly one "delivered" or "expired" event will carry the
--- returned id. opts may add ack_timeout_ms. Returns the id, or nil, message, code.
function Net:send_need_ack(ip, port, data, opts)
  local ctx = live(self, "net:send_need_ack")
  check_string(ip, "ip", "net:send_need_ack")
  check_int(port, 0, 65535, "port", "net:send_need_ack")
  check_string(data, "data", "net:send_need_ack")
  local o = opts ~= nil and fill_opts(self, opts, "net:send_need_ack") or nil
  local rc = lib.xxnet_send_need_ack(ctx, ip, port, data, #data, o, self._u64)
  if rc ~= 0 then
    return fail(rc)
  end
  return tonumber(self._u64[0])
end

--- send_need_ack over a known connection.
function Net:send_conn_need_ack(conn, data, opts)
  local ctx = live(self, "net:send_conn_need_ack")
  check_conn(conn, "net:send_conn_need_ack")
  check_string(data, "data", "net:send_conn_need_ack")
  local o = opts ~= nil and fill_opts(self, opts, "net:send_conn_need_ack") or nil
  local rc = lib.xxnet_send_conn_need_ack(ctx, conn, data, #data, o, self._u64)
  if rc ~= 0 then
    return fail(rc)
  end
  return tonumber(self._u64[0])
end

--- Closes a connection ("send_failed" for what it still held, then
--- "disconnected"). Returns true, or nil, message, code.
function Net:close(conn)
  local ctx = live(self, "net:close")
  check_conn(conn, "net:close")
  local rc = lib.xxnet_close(ctx, conn)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- Attaches a number (an integer 0..2^53) to a connection: it comes back as
--- ev.user_data in every later event of that connection.
function Net:set_user_data(conn, value)
  local ctx = live(self, "net:set_user_data")
  check_conn(conn, "net:set_user_data")
  check_int(value, 0, 2 ^ 53, "value", "net:set_user_data")
  local rc = lib.xxnet_conn_set_user_data(ctx, conn, value)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- The library's counters as a table of numbers (fields of struct xxnet_stats).
function Net:stats()
  local ctx = live(self, "net:stats")
  local rc = lib.xxnet_stats(ctx, self._stats)
  if rc ~= 0 then
    return fail(rc)
  end
  return struct_to_table(self._stats, STATS_FIELDS)
end

--- The counters of reactor `index` alone (0 <= index < io_threads), as a table
--- like net:stats(); net:stats() gives their sums. Or nil, message, code.
function Net:reactor_stats(index)
  local ctx = live(self, "net:reactor_stats")
  check_int(index, 0, 4294967295, "index", "net:reactor_stats")
  local rc = lib.xxnet_reactor_stats(ctx, index, self._stats)
  if rc ~= 0 then
    return fail(rc)
  end
  return struct_to_table(self._stats, STATS_FIELDS)
end

--- Hands over the sends made with opts.flags = xxnet.SEND_MORE (xxnet_flush).
--- Returns true, or nil, message, code.
function Net:flush()
  local ctx = live(self, "net:flush")
  local rc = lib.xxnet_flush(ctx)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- A session's state as a table (fields of xxnet_peer_info; `state` is
--- "connecting", "connected" or "reconnecting"). Or nil, message, code.
function Net:conn_info(conn)
  local ctx = live(self, "net:conn_info")
  check_conn(conn, "net:conn_info")
  local rc = lib.xxnet_conn_info(ctx, conn, self._info)
  if rc ~= 0 then
    return fail(rc)
  end
  local t = struct_to_table(self._info, INFO_FIELDS)
  t.state = STATE_NAME[t.state] or t.state
  return t
end

-- ---------------------------------------------------------------------------
-- Remote calls between named nodes
-- ---------------------------------------------------------------------------

-- The failure triple of a cluster call: the message adds xxnet_last_error()'s
-- explanation (for E_CLUSTER_FILE, one "file:line: what" line per bad line).
local function cluster_fail(ctx, rc)
  local why = ctx ~= nil and ffi_string(lib.xxnet_last_error()) or ""
  return nil, why ~= "" and (strerror(rc) .. ": " .. why) or strerror(rc), rc
end

local function cluster_call(self, fname, fn, a, b)
  local ctx = live(self, fname)
  local rc
  if b == nil then
    rc = fn(ctx, a)
  else
    rc = fn(ctx, a, b)
  end
  if rc ~= 0 then
    return cluster_fail(ctx, rc)
  end
  return true
end

--- Loads the cluster directory from a clustername.lua file (`name =
--- "ip:port"` lines); the net listens on its own node_name's entry. A
--- malformed file changes nothing: nil, message listing "file:line: what",
--- xxnet.E_CLUSTER_FILE. Returns true.
function Net:cluster_load(path)
  check_name(path, "path", "net:cluster_load")
  return cluster_call(self, "net:cluster_load", lib.xxnet_cluster_load, path)
end

--- Hot reload: removed nodes lose their session (pending calls get
--- E_NODE_REMOVED), moved ones their old one (E_NODE_MOVED), unchanged ones
--- keep theirs; a "node_changed" event per change. Errors as cluster_load.
function Net:cluster_reload(path)
  check_name(path, "path", "net:cluster_reload")
  return cluster_call(self, "net:cluster_reload", lib.xxnet_cluster_reload, path)
end

--- Adds node `name` at `addr` ("ip:port", "[v6]:port"), or moves it there.
function Net:cluster_set(name, addr)
  check_name(name, "name", "net:cluster_set")
  check_name(addr, "addr", "net:cluster_set")
  return cluster_call(self, "net:cluster_set", lib.xxnet_cluster_set, name, addr)
end

--- Removes node `name` from the directory (nil, msg, E_UNKNOWN_NODE if absent).
function Net:cluster_remove(name)
  check_name(name, "name", "net:cluster_remove")
  return cluster_call(self, "net:cluster_remove", lib.xxnet_cluster_remove, name)
end

--- Calls `service` on node `node` with `data` (a string; nil: empty).
--- opts: { lane =, timeout_ms = } (timeout 0: the config's call_timeout_ms);
--- may be left out: net:call(node, service, data, fn). Returns the call's
--- session; then fn(code, reply, ev) runs exactly once, from update(): code
--- 0 with the reply, the callee's own positive code, or an xxnet.E_*
--- outcome (E_TIMEOUT, E_NO_SERVICE, E_NODE_DOWN, ..., E_SHUTDOWN when the
--- net shuts down first); ev is the "call_result" event (ev.node, ev.session).
--- Without fn the result goes to on("call_result"). A failure at once (nil,
--- message, E_UNKNOWN_NODE / E_TOO_LARGE / E_INVALID_ARG / E_WOULD_BLOCK /
--- E_SHUTDOWN) never runs fn.
function Net:call(node, service, data, opts, fn)
  local ctx = live(self, "net:call")
  if fn == nil and type(opts) == "function" then
    opts, fn = nil, opts
  end
  check_name(node, "node", "net:call")
  check_name(service, "service", "net:call")
  data = data or ""
  check_string(data, "data", "net:call")
  check_fn(fn, "net:call")
  local o = opts ~= nil and fill_opts(self, opts, "net:call", self._call_opts, CALL_OPT_FIELDS, CALL_OPT_LIST) or nil
  local rc = lib.xxnet_call_ex(ctx, node, service, data, #data, o, self._u64)
  if rc ~= 0 then
    return fail(rc)
  end
  local session = tonumber(self._u64[0])
  if fn then
    self._calls[session] = fn
  end
  return session
end

--- Sends `data` to `service` on `node`, no reply expected. opts: { lane = }.
--- Its loss is a "send_failed" event (code E_NO_SERVICE, ev.service, for a
--- missing service). Returns true, or nil, message, code as call.
function Net:cast(node, service, data, opts)
  local ctx = live(self, "net:cast")
  check_name(node, "node", "net:cast")
  check_name(service, "service", "net:cast")
  data = data or ""
  check_string(data, "data", "net:cast")
  local o = opts ~= nil and fill_opts(self, opts, "net:cast", self._call_opts, CALL_OPT_FIELDS, CALL_OPT_LIST) or nil
  local rc = lib.xxnet_cast_ex(ctx, node, service, data, #data, o)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- Serves `service`: each request for it (call or cast) runs fn(req, net)
--- from update(). req has node (the caller), service, data, lane, conn,
--- token (0 for a cast), cast (true for a cast) and req:reply(code, data),
--- which may be called later (after calls of your own); a request is answered
--- once. Serving a served name again replaces its handler; fn nil stops
--- serving (later requests get E_NO_SERVICE; queued ones go to
--- on("call_request")). Returns true, or nil, message, code (E_INVALID_ARG:
--- not an identifier of at most 128 bytes).
function Net:serve(service, fn)
  local ctx = live(self, "net:serve")
  check_name(service, "service", "net:serve")
  check_fn(fn, "net:serve")
  local services = self._services
  if fn == nil then
    local rc = lib.xxnet_service_unregister(ctx, service)
    services[service] = nil
    if rc ~= 0 then
      return fail(rc)
    end
    return true
  end
  if services[service] then
    services[service] = fn
    return true
  end
  local rc = lib.xxnet_service_register(ctx, service)
  if rc ~= 0 then
    return fail(rc)
  end
  services[service] = fn
  return true
end

--- Answers a request by its token (req.token, or ev.id of a "call_request"
--- event): code 0 or a positive code of your own, data a string (nil:
--- empty). Returns true, or nil, message, code: E_UNKNOWN_TOKEN (answered
--- already, or a cast), E_UNKNOWN_CONN (the caller's session ended),
--- E_TOO_LARGE (still unanswered), E_SHUTDOWN.
function Net:reply(token, code, data)
  local ctx = live(self, "net:reply")
  check_int(token, 0, 2 ^ 53, "token", "net:reply")
  check_int(code, 0, 2147483647, "code", "net:reply")
  data = data or ""
  check_string(data, "data", "net:reply")
  local rc = lib.xxnet_reply(ctx, token, code, data, #data)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- req:reply(code, data): see net:reply. After the net is freed: nil, message, E_CLOSED.
function Request:reply(code, data)
  local net = self.net
  if net._ctx == nil then
    return fail(E_CLOSED)
  end
  check_int(code, 0, 2147483647, "code", "req:reply")
  data = data or ""
  check_string(data, "data", "req:reply")
  local rc = lib.xxnet_reply(net._ctx, self.token, code, data, #data)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- Stops the network (sockets closed, peers told) and drains: dispatches
--- the events still queued, then every pending call's result (E_SHUTDOWN).
--- The net stays usable for that; later sends, calls and listens fail with
--- E_SHUTDOWN. Idempotent. From inside a handler it only stops the network
--- (the next update() delivers the rest). Returns the events dispatched.
function Net:shutdown()
  local ctx = live(self, "net:shutdown")
  lib.xxnet_shutdown(ctx)
  if self._dispatching then
    return 0
  end
  local n = 0
  for _ = 1, DRAIN_ROUNDS do
    local got = self:update(0)
    n = n + got
    if got == 0 or self._ctx == nil then
      break
    end
  end
  return n
end

-- ---------------------------------------------------------------------------
-- Files: serving by content and downloads into the cache
-- ---------------------------------------------------------------------------

--- Serves the files under directory `dir` (and its subdirectories) to other
--- nodes by content (md5 + size; a requester's file name is only a hint).
--- Hashed in the background; may be called for several directories.
--- Returns true, or nil, message, code (E_BAD_PATH: not an existing
--- directory; E_SHUTDOWN).
function Net:files_serve(dir)
  local ctx = live(self, "net:files_serve")
  check_name(dir, "dir", "net:files_serve")
  local rc = lib.xxnet_files_serve(ctx, dir)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

-- A string argument of a download that C would cut at a NUL byte: the
-- library refuses such names and md5s (E_BAD_PATH), so does this.
local function has_nul(v, what, fname)
  check_string(v, what, fname)
  return v:find("\0", 1, true) ~= nil
end

--- Downloads the content with md5 `md5_hex` (32 hex digits) and `size`
--- bytes from node `node` into the download cache (config download_dir);
--- `name` is the file's name under the source's served directory (a hint).
--- Returns the task id; then on_done(result) runs exactly once, from
--- update(), with result = { task =, code =, path =, size =, count =, node = }:
--- code 0 and path the local file (inside download_dir), or an xxnet.E_*
--- reason and path nil (E_NO_CONTENT, E_TIMEOUT, E_NODE_DOWN, E_CHECKSUM,
--- E_SIZE_MISMATCH, E_NO_SPACE, E_DISK, E_CANCELLED, E_SHUTDOWN when the
--- net shuts down or is freed first, ...); count is the bytes in the cache.
--- on_progress(done_bytes, total, ev), if given, runs a few times per second
--- while it runs (ev is the "download_progress" event; ev.task, ev.node).
--- After a successful on_done returns, the file is released (the cache may
--- evict it from then on; an open file survives that): return true from
--- on_done to keep it, then net:download_release(task) when done with it.
--- Content already cached is DONE at once; content already downloading is
--- joined (each task gets its own on_done). Without on_done the result goes
--- to on("download_done") / on("download_failed") and nothing is released
--- for you; without on_progress progress goes to on("download_progress").
--- A failure at once (nil, message, code: E_BAD_PATH for a bad md5 or name,
--- E_NO_SPACE for a size above download_quota, E_UNKNOWN_NODE,
--- E_INVALID_ARG without download_dir, E_SHUTDOWN) never runs a callback.
function Net:download(node, md5_hex, name, size, on_done, on_progress)
  local ctx = live(self, "net:download")
  check_name(node, "node", "net:download")
  local bad = has_nul(md5_hex, "md5_hex", "net:download")
  bad = has_nul(name, "name", "net:download") or bad
  check_int(size, 0, 2 ^ 53, "size", "net:download")
  check_fn(on_done, "net:download")
  check_fn(on_progress, "net:download")
  if bad then
    return fail(E_BAD_PATH)
  end
  local rc = lib.xxnet_download(ctx, node, md5_hex, name, size, self._u64)
  if rc ~= 0 then
    return fail(rc)
  end
  local task = tonumber(self._u64[0])
  if on_done or on_progress then
    self._downloads[task] = { done = on_done, progress = on_progress, size = size, node = node }
  end
  return task
end

--- Cancels a running download: its on_done runs with xxnet.E_CANCELLED from
--- the next update(), and nothing else for it. Other tasks of the same
--- content go on. Returns true, or nil, message, E_UNKNOWN_TASK (finished,
--- cancelled already, or never started).
function Net:download_cancel(task)
  local ctx = live(self, "net:download_cancel")
  check_int(task, 0, 2 ^ 53, "task", "net:download_cancel")
  local rc = lib.xxnet_download_cancel(ctx, task)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- Releases the file of a download that ended with code 0 and whose on_done
--- returned true (or that had no on_done): the cache may evict it from now
--- on. Returns true, or nil, message, E_UNKNOWN_TASK (not DONE, or released
--- already).
function Net:download_release(task)
  local ctx = live(self, "net:download_release")
  check_int(task, 0, 2 ^ 53, "task", "net:download_release")
  local rc = lib.xxnet_download_release(ctx, task)
  if rc ~= 0 then
    return fail(rc)
  end
  return true
end

--- The download counters as a table of numbers (fields of xxnet_file_stats:
--- blocks_fetched, bytes_fetched, downloads_done, cache_bytes, served_files...).
function Net:files_stats()
  local ctx = live(self, "net:files_stats")
  local rc = lib.xxnet_files_stats(ctx, self._file_stats)
  if rc ~= 0 then
    return fail(rc)
  end
  return struct_to_table(self._file_stats, FILE_STATS_FIELDS)
end

-- ---------------------------------------------------------------------------
-- Handlers, routes, timers
-- ---------------------------------------------------------------------------

--- Sets the handler of an event kind: "message", "connected", "disconnected",
--- "send_failed", "connect_failed", "error", "delivered", "expired",
--- "writable", "link_down", "link_up", "timer", "call_request",
--- "call_result", "node_changed", "download_progress", "download_done" or
--- "download_failed". nil removes it. Messages go
--- to their msg_id's route first, then the default route, then "message";
--- call results to their call's callback first, requests to their service's
--- handler first, download events to their download's callbacks first.
--- Handlers are called as fn(ev, net); ev is reused for the next event.
function Net:on(kind, fn)
  live(self, "net:on")
  local k = KIND_BY_NAME[kind]
  if not k then
    local names = {}
    for name in pairs(KIND_BY_NAME) do
      names[#names + 1] = name
    end
    table.sort(names)
    error(sformat("net:on: unknown event '%s' (known: %s)", tostring(kind), table.concat(names, ", ")), 2)
  end
  check_fn(fn, "net:on")
  self._on[k] = fn
  return self
end

--- Routes messages with this msg_id to fn(ev, net); nil removes the route.
function Net:route(msg_id, fn)
  live(self, "net:route")
  check_int(msg_id, 0, 4294967295, "msg_id", "net:route")
  check_fn(fn, "net:route")
  self._routes[msg_id] = fn
  return self
end

--- The handler of messages whose msg_id has no route; nil removes it.
function Net:route_default(fn)
  live(self, "net:route_default")
  check_fn(fn, "net:route_default")
  self._default_route = fn
  return self
end

--- Starts a timer that calls fn(timer, ev) from update() after `ms`, then
--- every `repeat_ms` if given (> 0). Without fn, its events go to the "timer"
--- handler. Returns the timer ({id = n, :cancel()}), or nil, message, code.
function Net:timer(ms, fn, repeat_ms)
  local ctx = live(self, "net:timer")
  check_int(ms, 0, 4294967295, "ms", "net:timer")
  check_fn(fn, "net:timer")
  repeat_ms = repeat_ms or 0
  check_int(repeat_ms, 0, 4294967295, "repeat_ms", "net:timer")
  local rc = lib.xxnet_timer_start(ctx, ms, repeat_ms, 0, self._u64)
  if rc ~= 0 then
    return fail(rc)
  end
  local id = tonumber(self._u64[0])
  local t = setmetatable({ id = id, net = self, fn = fn, repeating = repeat_ms > 0, live = true }, Timer)
  self._timers[id] = t
  return t
end

--- Stops the timer; its fn is never called after this, even for an event
--- already polled. Returns true, or nil, message, code if it was not live.
function Timer:cancel()
  local net = self.net
  local was_live = self.live
  self.live = false
  if net._timers[self.id] == self then
    net._timers[self.id] = nil
  end
  if net._ctx == nil then
    return fail(cdef.constants.XXNET_E_CLOSED)
  end
  if not was_live then
    return fail(cdef.constants.XXNET_E_UNKNOWN_TIMER)
  end
  local rc = lib.xxnet_timer_stop(net._ctx, self.id)
  -- XXNET_E_UNKNOWN_TIMER for a timer that was live here: a one-shot whose
  -- event the library already produced (possibly sitting in the batch being
  -- dispatched). It is dropped when it comes, so the cancel did succeed.
  if rc ~= 0 and rc ~= cdef.constants.XXNET_E_UNKNOWN_TIMER then
    return fail(rc)
  end
  return true
end

--- net:cancel(timer) is timer:cancel().
function Net:cancel(timer)
  live(self, "net:cancel")
  if getmetatable(timer) ~= Timer then
    error("net:cancel: expected a timer from net:timer", 2)
  end
  return timer:cancel()
end

-- ---------------------------------------------------------------------------
-- Polling and dispatch
-- ---------------------------------------------------------------------------

-- Fills the reused event table from one xxnet_event and calls its handler.
function dispatch_one(self, e)
  local kind = e.kind
  local ev = self._event
  ev.kind = KIND_NAME[kind] or kind
  ev.code = e.code
  ev.conn = tonumber(e.conn)
  ev.id = tonumber(e.id)
  ev.count = tonumber(e.count)
  ev.total = tonumber(e.total)
  ev.msg_id = e.msg_id
  ev.lane = e.lane
  ev.peer_port = e.peer_port
  ev.peer_ip = ffi_string(e.peer_ip)
  ev.user_data = tonumber(e.user_data)
  ev.data = nil
  ev.timer = nil
  ev.node, ev.service, ev.session, ev.change, ev.task, ev.path = "", "", nil, nil, nil, nil
  if kind == EV_MESSAGE then
    local len = tonumber(e.len)
    ev.data = len > 0 and ffi_string(e.data, len) or ""
    local fn = self._routes[ev.msg_id] or self._default_route or self._on[kind]
    if fn then
      fn(ev, self)
    end
  elseif kind == EV_TIMER then
    -- Only live timers fire: one cancelled after its event was polled does not.
    local t = self._timers[ev.id]
    if t then
      if not t.repeating then
        self._timers[ev.id] = nil
        t.live = false
      end
      ev.timer = t
      if t.fn then
        t.fn(t, ev)
      else
        local fn = self._on[kind]
        if fn then
          fn(ev, self)
        end
      end
    end
  elseif kind == EV_CALL_RESULT then
    local len = tonumber(e.len)
    ev.data = len > 0 and ffi_string(e.data, len) or ""
    ev.node = ffi_string(e.node)
    ev.session = ev.id
    local fn = self._calls[ev.id]
    if fn then
      self._calls[ev.id] = nil -- first: the callback may call again
      fn(ev.code, ev.data, ev)
    else
      fn = self._on[kind]
      if fn then
        fn(ev, self)
      end
    end
  elseif kind == EV_CALL_REQUEST then
    local len = tonumber(e.len)
    ev.data = len > 0 and ffi_string(e.data, len) or ""
    ev.node = ffi_string(e.node)
    ev.service = ffi_string(e.service)
    local fn = self._services[ev.service]
    if fn then
      -- A table of its own: it may be kept to answer later.
      fn(setmetatable({
        net = self, node = ev.node, service = ev.service, data = ev.data, lane = ev.lane,
        conn = ev.conn, token = ev.id, cast = ev.id == 0,
      }, Request), self)
    else
      fn = self._on[kind]
      if fn then
        fn(ev, self)
      end
    end
  elseif kind == EV_DL_PROGRESS or kind == EV_DL_DONE or kind == EV_DL_FAILED then
    ev.node = ffi_string(e.node)
    local task = ev.id
    ev.task = task
    if kind == EV_DL_DONE then
      local len = tonumber(e.len)
      ev.path = len > 0 and ffi_string(e.data, len) or ""
      ev.data = ev.path
    end
    local d = self._downloads[task]
    if kind == EV_DL_PROGRESS then
      local fn = d and d.progress
      if fn then
        fn(ev.count, ev.total, ev)
      else
        fn = self._on[kind]
        if fn then
          fn(ev, self)
        end
      end
    elseif d and d.done then
      self._downloads[task] = nil -- first: the callback may download again
      local result = { task = task, code = ev.code, path = ev.path, size = ev.total, count = ev.count, node = ev.node }
      if kind ~= EV_DL_DONE then
        d.done(result)
      else
        -- The file is released once on_done returns, unless it returns true
        -- (also when it raises: the error propagates after the release).
        local ok, keep = pcall(d.done, result)
        if not (ok and keep == true) and self._ctx ~= nil then
          lib.xxnet_download_release(self._ctx, task) -- E_UNKNOWN_TASK if on_done released it
        end
        if not ok then
          error(keep, 0)
        end
      end
    else
      self._downloads[task] = nil
      local fn = self._on[kind]
      if fn then
        fn(ev, self)
      end
    end
  else
    if kind == EV_NODE_CHANGED then
      ev.node = ffi_string(e.node)
      ev.change = NODE_CHANGE[ev.id]
    elseif kind == EV_SEND_FAILED then
      ev.service = ffi_string(e.service)
    end
    local fn = self._on[kind]
    if fn then
      fn(ev, self)
    end
  end
end

-- Dispatches what is left of the current batch. The position advances before
-- each handler runs, so an error raised by a handler loses no other event:
-- the next update() carries on with the rest of the batch before polling.
local function run_batch(self)
  local evs = self._evs
  while self._pos < self._n do
    local i = self._pos
    self._pos = i + 1
    dispatch_one(self, evs[i])
    if self._ctx == nil then
      return -- freed by a handler
    end
  end
end

-- The body of update(), run under pcall.
local function poll_and_dispatch(self, ctx, timeout_ms, max_events)
  local handled = 0
  if self._pos < self._n then
    handled = self._n - self._pos
    run_batch(self)
    timeout_ms = 0 -- there was work: do not wait for more
  end
  local evs = self._evs
  while self._ctx ~= nil and handled < max_events do
    local n = tonumber(lib.xxnet_poll_recv(ctx, evs, BATCH, timeout_ms))
    self._pos, self._n = 0, n
    handled = handled + n
    run_batch(self)
    if n < BATCH then
      break
    end
    timeout_ms = 0
  end
  return handled
end

--- Polls events (waiting at most timeout_ms for the first: 0, the default,
--- never waits; -1 waits until one arrives) and dispatches them to the
--- handlers, in Lua. Drains batch after batch while they come full, up to
--- max_events (default 65536). Returns the number of events polled, or
--- nil, message, code when called from inside a handler. An error raised by
--- a handler propagates; the events after it are dispatched by the next update().
function Net:update(timeout_ms, max_events)
  local ctx = live(self, "net:update")
  if self._dispatching then
    return fail(E_REENTRANT)
  end
  timeout_ms = timeout_ms or 0
  check_int(timeout_ms, -1, 2147483647, "timeout_ms", "net:update")
  max_events = max_events or 65536
  self._dispatching = true
  local ok, res = pcall(poll_and_dispatch, self, ctx, timeout_ms, max_events)
  self._dispatching = false
  if not ok then
    error(res, 0)
  end
  return res
end

return xxnet
