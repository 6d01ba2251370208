-- wrk script: InfluxDB /write with batches of BENCH_LINES lines of 5 fields each, spread over
-- 100 hosts × 4 CPUs (400 series), as a Telegraf agent sends them. Each request gets fresh
-- timestamps. BENCH_SERIES=N spreads the lines over N series instead (N/4 hosts × 4 CPUs,
-- cycling through the batches); BENCH_NOW=1 starts the timestamps at the current time rather
-- than 2024-01-01 (VictoriaMetrics drops samples older than its retention).
local lines = tonumber(os.getenv("BENCH_LINES") or "5000")
local series = tonumber(os.getenv("BENCH_SERIES") or "400")
local origin = 1704067200000000000
if os.getenv("BENCH_NOW") == "1" then origin = os.time() * 1000000000 end
local counter = 0
local offset = 0
-- BENCH_DB=NAME: InfluxDB wants its database named.
local path = "/write?precision=ns"
if os.getenv("BENCH_DB") then path = path .. "&db=" .. os.getenv("BENCH_DB") end

init = function()
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  offset = math.random(0, 999) * 1000000
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.headers["Authorization"] = "Token " .. os.getenv("BENCH_KEY")

request = function()
  counter = counter + 1
  -- Each thread of wrk has its own counter: offset by a per-thread random start.
  local base = origin + counter * lines * 1000 + offset
  local out = {}
  for i = 1, lines do
    local k = (counter * lines + i) % series
    out[i] = string.format(
      "cpu,host=edge-%03d,region=eu-west,cpu=cpu%d usage_user=%d.5,usage_system=%d.25,usage_idle=%d.75,context_switches=%di,online=true %d",
      math.floor(k / 4), k % 4, (i * 7) % 100, (i * 3) % 50, (i * 11) % 100, i * 13, base + i)
  end
  return wrk.format(nil, path, nil, table.concat(out, "\n"))
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT batches=%d non2xx=%d batches_per_s=%.1f points_per_s=%.0f field_values_per_s=%.0f p50_ms=%.1f p99_ms=%.1f\n",
    summary.requests, summary.errors.status, summary.requests / seconds,
    (summary.requests - summary.errors.status) * lines / seconds,
    (summary.requests - summary.errors.status) * lines * 5 / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
