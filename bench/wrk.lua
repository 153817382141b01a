-- wrk script of the bench: POSTs a small prompt (or sends BENCH_METHOD without a body), with BENCH_API_KEY as X-API-Key and BENCH_RANGE as Range when set; prints the figures as JSON.
-- With BENCH_PROMPT_BYTES, the prompt also carries about that many bytes of editor workflow in extra_data, as ComfyUI's own page
-- sends: a graph of nodes (JSON objects with their quotes), each about 400 bytes.

wrk.method = os.getenv("BENCH_METHOD") or "POST"
if wrk.method == "POST" then
  local padding = tonumber(os.getenv("BENCH_PROMPT_BYTES") or "0")
  local extra = ""
  if padding > 0 then
    local node = '{"id":7,"type":"CLIPTextEncode","pos":[413,389],"size":[425.3,180.6],"flags":{},"order":3,"mode":0,'
      .. '"inputs":[{"name":"clip","type":"CLIP","link":5}],"outputs":[{"name":"CONDITIONING","type":"CONDITIONING","links":[6],"slot_index":0}],'
      .. '"properties":{"Node name for S&R":"CLIPTextEncode"},"widgets_values":["text, watermark"]}'
    local nodes = math.max(1, math.floor(padding / (#node + 1)))
    extra = ',"extra_data":{"extra_pnginfo":{"workflow":{"nodes":[' .. string.rep(node .. ",", nodes - 1) .. node .. ']}}}'
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
