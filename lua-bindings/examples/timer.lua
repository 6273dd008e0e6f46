-- Timers: one-shot and repeating main-thread timers fire from net:update(),
-- in deadline order; a repeating timer cancels itself. Exits 0 when done.
--
--   luajit lua-bindings/examples/timer.lua

local here = debug.getinfo(1, "S").source:match("^@(.*)[/\\][^/\\]*$") or "."
package.path = here .. "/../?.lua;" .. package.path

local xxnet = require("xxnet")

local net = assert(xxnet.new())
local fired = {}
local done = false

local function note(what)
  fired[#fired + 1] = what
  print("timer: " .. what)
end

net:timer(50, function()
  note("one-shot after 50 ms")
end)
net:timer(10, function()
  note("one-shot after 10 ms")
end)
local never = net:timer(30, function()
  note("this one was cancelled and never fires")
end)
never:cancel()

local ticks = 0
net:timer(20, function(t)
  ticks = ticks + 1
  note(("repeating, tick %d"):format(ticks))
  if ticks == 3 then
    t:cancel()
    -- A last one-shot to end the example.
    net:timer(40, function()
      note("finished")
      done = true
    end)
  end
end, 20)

-- The main loop: update waits at most 100 ms, and returns early when a timer is due.
for _ = 1, 100 do
  net:update(100)
  if done then
    break
  end
end
net:free()

local expected = 6 -- 10 ms, three ticks, 50 ms, finished
if #fired ~= expected or fired[1] ~= "one-shot after 10 ms" or fired[#fired] ~= "finished" then
  print(("timer: unexpected sequence (%d events)"):format(#fired))
  os.exit(1)
end
print("timer: done")
