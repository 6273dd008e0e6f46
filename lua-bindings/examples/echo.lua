-- Echo: a server and a client, two nets in one process over loopback.
-- The client sends a few messages (plain text, and a packed Lua table on its
-- own route) and a need-ack message; the server echoes each back on the
-- connection it came from. Exits 0 when every echo and the ack arrived.
--
--   luajit lua-bindings/examples/echo.lua
--   (XXNET_LIB=/path/to/libxxnet.so if the library is not in target/release)

-- Find xxnet.lua in the folder above this file.
local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
package.path = here .. "/../?.lua;" .. package.path

local xxnet = require("xxnet")

local MSG_TEXT, MSG_TABLE = 1, 2

-- The server: listens on a free port, echoes what it gets.
local server = assert(xxnet.new{ idle_timeout_ms = 5000 })
local port = assert(server:listen("127.0.0.1", 0))
print(("server: listening on 127.0.0.1:%d (libxxnet %s)"):format(port, xxnet.version()))

server:on("connected", function(ev)
  print(("server: %s:%d connected (conn %d)"):format(ev.peer_ip, ev.peer_port, ev.conn))
end)
server:on("disconnected", function(ev)
  print(("server: conn %d gone: %s"):format(ev.conn, xxnet.strerror(ev.code)))
end)
server:route(MSG_TEXT, function(ev)
  print(("server: text %q on lane %d"):format(ev.data, ev.lane))
  assert(server:send_conn(ev.conn, ev.data:upper(), { msg_id = ev.msg_id, lane = ev.lane }))
end)
server:route(MSG_TABLE, function(ev)
  local t = assert(xxnet.unpack(ev.data))
  print(("server: table from %s: %d items, score %s"):format(t.from, #t.items, t.score))
  t.score = t.score * 2
  assert(server:send_conn(ev.conn, xxnet.pack(t), { msg_id = MSG_TABLE }))
end)
server:route_default(function(ev)
  print(("server: msg_id %d without a route: %q"):format(ev.msg_id, ev.data))
end)

-- The client: sends by address (connects on first send).
local client = assert(xxnet.new())
local pending = 0
local acked = false

client:on("connected", function(ev)
  print(("client: connected to %s:%d"):format(ev.peer_ip, ev.peer_port))
end)
client:route(MSG_TEXT, function(ev)
  print(("client: echo %q"):format(ev.data))
  pending = pending - 1
end)
client:route(MSG_TABLE, function(ev)
  local t = assert(xxnet.unpack(ev.data))
  print(("client: table echo, score now %s"):format(t.score))
  pending = pending - 1
end)
client:on("delivered", function(ev)
  print(("client: need-ack message %d delivered"):format(ev.id))
  acked = true
end)
client:on("expired", function(ev)
  print(("client: need-ack message %d expired: %s"):format(ev.id, xxnet.strerror(ev.code)))
  os.exit(1)
end)
client:on("send_failed", function(ev)
  print(("client: %d messages failed: %s"):format(ev.count, xxnet.strerror(ev.code)))
  os.exit(1)
end)

for i, text in ipairs({ "hello", "from", "lua" }) do
  assert(client:send("127.0.0.1", port, text, { msg_id = MSG_TEXT, lane = i % 2 }))
  pending = pending + 1
end
assert(client:send("127.0.0.1", port, xxnet.pack({ from = "client", items = { 1, 2, 3 }, score = 21.5 }), { msg_id = MSG_TABLE }))
pending = pending + 1
assert(client:send("127.0.0.1", port, "nobody routes 9", { msg_id = 9 }))
local ack_id = assert(client:send_need_ack("127.0.0.1", port, "please ack", { msg_id = 9 }))
print(("client: sent need-ack message %d"):format(ack_id))

-- What a failed call looks like: nil, message, code.
print("client: send to 'localhost' ->", client:send("localhost", port, "x"))

-- The main loop: 10 ms per tick, at most 500 ticks.
for _ = 1, 500 do
  server:update(0)
  client:update(10)
  if pending == 0 and acked then
    break
  end
end

local s = server:stats()
print(("server: %d messages in, %d bytes in, %d connections open"):format(s.msgs_in, s.bytes_in, s.open_connections))
client:free()
server:free()
if pending ~= 0 or not acked then
  print("echo: did not finish")
  os.exit(1)
end
print("echo: done")
