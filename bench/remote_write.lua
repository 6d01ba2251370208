-- wrk script: Prometheus remote write with one fixed body (BENCH_BODY, made by the
-- remote_write_body example), as Prometheus and vmagent send it. BENCH_SAMPLES is the number
-- of samples in the body; BENCH_KEY, when set, goes as a bearer token.
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local samples = tonumber(os.getenv("BENCH_SAMPLES"))

wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/x-protobuf"
wrk.headers["Content-Encoding"] = "snappy"
wrk.headers["X-Prometheus-Remote-Write-Version"] = "0.1.0"
if os.getenv("BENCH_KEY") and os.getenv("BENCH_KEY") ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d non2xx=%d samples_per_s=%.0f p50_ms=%.1f p99_ms=%.1f\n",
    summary.requests, summary.errors.status, summary.requests * samples / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
