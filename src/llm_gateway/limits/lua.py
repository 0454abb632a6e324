"""The Redis Lua scripts: reserve (check every limit, then charge all or none) and settle.

Each check is one hash: fields `r<bucket>` (requests) and `t<bucket>` (tokens), bucket = clock_ms // width.
The clock is Redis's own (TIME), so replicas with skewed clocks still share one window. The arithmetic is
`limits.memory`'s, line for line.
"""

RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local failed, retry = -1, 0
local state = {}

local function measure(b, oldest, frac)
  local used, newest = 0, -1
  for idx, v in pairs(b) do
    if idx == oldest then used = used + v * (1 - frac) else used = used + v end
    if v > 0 and idx > newest then newest = idx end
  end
  return used, newest
end

local function wait(b, oldest, frac, need, nb, bw)
  local idxs = {}
  for idx in pairs(b) do idxs[#idxs + 1] = idx end
  table.sort(idxs)
  local freed = 0
  for _, idx in ipairs(idxs) do
    local v = b[idx]
    if idx == oldest then freed = freed + v * (1 - frac) else freed = freed + v end
    if freed >= need then return (idx + nb + 1) * bw - now end
  end
  return -1
end

local function worse(i, w, window)
  if w < 0 then w = window end
  if failed < 0 or w > retry then failed = i; retry = w end
end

for i = 1, n do
  local base = (i - 1) * 5
  local bw = tonumber(ARGV[base + 1])
  local nb = tonumber(ARGV[base + 2])
  local rl = tonumber(ARGV[base + 3])
  local tl = tonumber(ARGV[base + 4])
  local cost = tonumber(ARGV[base + 5])
  local cur = math.floor(now / bw)
  local frac = (now % bw) / bw
  local oldest = cur - nb
  local r, tk, stale = {}, {}, {}
  local flat = redis.call('HGETALL', KEYS[i])
  for j = 1, #flat, 2 do
    local f = flat[j]
    local idx = tonumber(string.sub(f, 2))
    if idx < oldest then
      stale[#stale + 1] = f
    elseif string.byte(f, 1) == 114 then
      r[idx] = tonumber(flat[j + 1])
    else
      tk[idx] = tonumber(flat[j + 1])
    end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  local ur, ut, newest = -1, -1, -1
  if rl >= 0 then
    local used, nw = measure(r, oldest, frac)
    ur = math.ceil(used)
    newest = nw
    if used + 1 > rl then worse(i, wait(r, oldest, frac, used + 1 - rl, nb, bw), nb * bw) end
  end
  if tl >= 0 then
    local used, nw = measure(tk, oldest, frac)
    ut = math.ceil(used)
    if nw > newest then newest = nw end
    if used + cost > tl then worse(i, wait(tk, oldest, frac, used + cost - tl, nb, bw), nb * bw) end
  end
  local reset = 0
  if newest >= 0 then reset = math.max(0, (newest + nb + 1) * bw - now) end
  state[i] = {bw, nb, rl, tl, cost, cur, ur, ut, reset}
end

local out = {1, -1, 0, now}
if failed >= 0 then
  out[1] = 0
  out[2] = failed - 1
  out[3] = retry
  for i = 1, n do
    local s = state[i]
    out[#out + 1] = s[7]; out[#out + 1] = s[8]; out[#out + 1] = s[9]
  end
  return out
end
for i = 1, n do
  local s = state[i]
  local bw, nb, cur = s[1], s[2], s[6]
  local ur, ut = s[7], s[8]
  if s[3] >= 0 then
    redis.call('HINCRBY', KEYS[i], 'r' .. cur, 1)
    ur = ur + 1
  end
  if s[4] >= 0 and s[5] > 0 then
    redis.call('HINCRBY', KEYS[i], 't' .. cur, s[5])
    ut = ut + s[5]
  end
  redis.call('PEXPIRE', KEYS[i], (nb + 1) * bw)
  out[#out + 1] = ur; out[#out + 1] = ut; out[#out + 1] = (cur + nb + 1) * bw - now
end
return out
"""

SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local stamp = tonumber(ARGV[1])
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 3
  local bw = tonumber(ARGV[base + 1])
  local nb = tonumber(ARGV[base + 2])
  local delta = tonumber(ARGV[base + 3])
  local charged = math.floor(stamp / bw)
  local cur = math.floor(now / bw)
  local field = 't' .. charged
  if charged >= cur - nb and redis.call('HEXISTS', KEYS[i], field) == 1 then
    if redis.call('HINCRBY', KEYS[i], field, delta) < 0 then redis.call('HSET', KEYS[i], field, 0) end
  elseif delta > 0 then
    redis.call('HINCRBY', KEYS[i], 't' .. cur, delta)
    redis.call('PEXPIRE', KEYS[i], (nb + 1) * bw)
  end
end
return 1
"""
