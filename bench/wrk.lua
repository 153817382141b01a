-- wrk script of the bench: POSTs a small prompt (or sends BENCH_METHOD without a body), with BENCH_API_KEY as X-API-Key and BENCH_RANGE as Range when set; prints the figures as JSON.
-- With BENCH_PROMPT_BYTES, the prompt also carries that many bytes of editor workflow in extra_data, as ComfyUI's own page sends.

wrk.method = os.getenv("BENCH_METHOD") or "POST"
if wrk.method == "POST" then
  local padding = tonumber(os.getenv("BENCH_PROMPT_BYTES") or "0")
  local extra = ""
  if padding > 0 then
    extra = ',"extra_data":{"extra_pnginfo":{"workflow":"' .. string.rep("x", padding) .. '"}}'
  end
  wrk.body = '{"prompt":{"3":{"class_type":"KSampler","inputs":{"seed":42,"steps":20}}},"client_id":"bench"' .. extra .. '}'
  wrk.headers["Content-Type"] = "application/json"
end
local key = os.getenv("BENCH_API_KEY")
if key and key ~= "" then
  wrk.headers["X-API-Key"] = key
end
local range = os.getenv("BENCH_RANGE")
if range and range ~= "" then
  wrk.headers["Range"] = range
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
