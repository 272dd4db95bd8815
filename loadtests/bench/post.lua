-- wrk script of the bench: cycles through pre-built POST requests (no Lua work per request).
-- Argument: a file of lines "path<TAB>token<TAB>body" (token may be empty).
-- At the end it prints one line "BENCH_JSON {...}" that loadtests/bench/wrk.py parses.

local requests = {}
local count = 0
local index = 0

function init(args)
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    local path, token, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = { ["Content-Type"] = "application/json" }
    if token ~= "" then
      headers["Authorization"] = "Bearer " .. token
    end
    count = count + 1
    requests[count] = wrk.format("POST", path, headers, body)
  end
  file:close()
  -- threads start at different places, so two threads do not send the same driver in step
  math.randomseed(os.time() + count + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
  index = math.random(count) - 1
end

function request()
  index = index % count + 1
  return requests[index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
