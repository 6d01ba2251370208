-- wrk script: realistic health checks spread over a registered fleet.
-- Device ids and the key come from the environment set by health_load.sh.
local devices = tonumber(os.getenv("BENCH_DEVICES") or "100")
local prefix = os.getenv("BENCH_PREFIX") or "bench-pos"
-- BENCH_STEADY=1: a realistic steady fleet. Each device reports the same values give or take
-- 1 % (counters creep up), so the SmartDataFilter finds most checks unchanged.
local steady = os.getenv("BENCH_STEADY") == "1"
local counter = 0
-- BENCH_DEVICE_KEYS=1: each device sends its own key (a key lookup per request) instead of
-- the admin key, which the server knows without storage.
local keys = {}
if os.getenv("BENCH_DEVICE_KEYS") == "1" then
  for line in io.lines(os.getenv("BENCH_KEYS_FILE")) do keys[#keys + 1] = line end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("BENCH_KEY")

request = function()
  counter = counter + 1
  local index = counter % devices + 1
  local device = string.format("%s-%04d", prefix, index)
  local headers = nil
  if keys[index] then headers = { ["Content-Type"] = "application/json", ["X-API-Key"] = keys[index] } end
  if steady then
    return wrk.format(nil, "/api/v1/devices/" .. device .. "/health", headers, string.format(
      '{"is_healthy":true,"response_time_ms":%d,"status_code":200,"endpoint":"/health",' ..
      '"system":{"cpu_percent":%d.%d,"memory_percent":62.1,"memory_used_mb":1270,"memory_total_mb":2048,' ..
      '"disk_percent":58.2,"disk_used_gb":116,"disk_total_gb":200,"uptime_seconds":%d},' ..
      '"app_metrics":{"app_version":"1.2.3","transactions_count":%d,"errors_count":1,"warnings_count":3,"avg_response_time_ms":325},' ..
      '"network":{"latency_ms":38,"rx_bytes":%d,"tx_bytes":456700}}',
      200 + index % 100, 40 + index % 40, counter % 3, 90000 + math.floor(counter / devices),
      100000 + index * 10 + (math.floor(counter / devices)) % 10, 985600 + math.floor(counter / devices)))
  end
  local cpu = 20 + (counter * 7) % 60
  local body = string.format(
    '{"is_healthy":true,"response_time_ms":%d,"status_code":200,"endpoint":"/health",' ..
    '"system":{"cpu_percent":%d.5,"memory_percent":62.1,"memory_used_mb":1270,"memory_total_mb":2048,' ..
    '"disk_percent":58.2,"disk_used_gb":116,"disk_total_gb":200,"uptime_seconds":%d},' ..
    '"app_metrics":{"app_version":"1.2.3","transactions_count":%d,"errors_count":1,"warnings_count":3,"avg_response_time_ms":325},' ..
    '"network":{"latency_ms":38,"rx_bytes":985600,"tx_bytes":456700}}',
    100 + counter % 100, cpu, 90000 + counter, counter % 300)
  return wrk.format(nil, "/api/v1/devices/" .. device .. "/health", headers, body)
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors_status=%d req_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests, summary.errors.status, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
