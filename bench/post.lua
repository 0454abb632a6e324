-- wrk script: POST the JSON body in $BODY_FILE with the headers in $HEADERS ("Name: value" lines);
-- prints one line "RESULT_JSON {...}" with throughput, latency percentiles and errors.
local f = assert(io.open(os.getenv("BODY_FILE"), "r"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
for line in (os.getenv("HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format('RESULT_JSON {"requests":%d,"rps":%.1f,"lat_p50_ms":%.3f,"lat_p99_ms":%.3f,' ..
    '"sock_errors":%d,"non2xx":%d}\n', summary.requests, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
