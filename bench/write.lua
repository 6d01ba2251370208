-- wrk script: InfluxDB /write with batches of BENCH_LINES lines of 5 fields each, spread over
-- 100 hosts, as a Telegraf agent sends them. Each request gets fresh timestamps.
local lines = tonumber(os.getenv("BENCH_LINES") or "5000")
local counter = 0

wrk.method = "POST"
wrk.headers["Content-Type"] = "text/plain"
wrk.headers["Authorization"] = "Token " .. os.getenv("BENCH_KEY")

request = function()
  counter = counter + 1
  local base = 1704067200000000000 + counter * lines * 1000
  local out = {}
  for i = 1, lines do
    out[i] = string.format(
      "cpu,host=edge-%03d,region=eu-west,cpu=cpu%d usage_user=%d.5,usage_system=%d.25,usage_idle=%d.75,context_switches=%di,online=true %d",
      i % 100, i % 4, (i * 7) % 100, (i * 3) % 50, (i * 11) % 100, i * 13, base + i)
  end
  return wrk.format(nil, "/write?precision=ns", nil, table.concat(out, "\n"))
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT batches=%d non2xx=%d batches_per_s=%.1f points_per_s=%.0f field_values_per_s=%.0f p50_ms=%.1f p99_ms=%.1f\n",
    summary.requests, summary.errors.status, summary.requests / seconds, summary.requests * lines / seconds,
    summary.requests * lines * 5 / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
