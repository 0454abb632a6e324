"""The Redis Lua scripts: reserve (check every limit, then charge all or none) and settle.

Each check is one hash: fields `r<bucket>` (requests) and `t<bucket>` (tokens), bucket = clock_ms // width, plus
running totals so that a check costs the same however many buckets its window has: the sums of the kept buckets
(`t-2` requests, `t-3` tokens), the lowest bucket kept (`t-1`) and the newest non-empty one (`t-4`). Buckets that
left the window are dropped, and the totals rebuilt from what is left, when the window's oldest bucket moves past
the lowest kept one (once per bucket width), or when a hash has no totals yet.

The totals are named like token buckets with negative numbers on purpose: the scripts of earlier versions take
them for buckets long out of the window and delete them, so replicas of both versions can share the counters
during an upgrade (a hash an old replica touched simply has its totals rebuilt by the next new check).

The clock is Redis's own (TIME), so replicas with skewed clocks still share one window. The arithmetic is
`limits.memory`'s, line for line. Settle takes many corrections at once, each with the stamp of its reservation.

Leases: a reservation may also charge a few requests' worth more than it needs (what the gateway asked for), which
the replica then hands out locally without asking Redis; what it did not use it gives back, to the bucket it was
charged to, with its next reservation of that check or through settle. Redis grants a lease only while the window
keeps LEASE_ROOM times the lease free after it, so close to a limit every request is checked here, one by one.
"""

LEASE_ROOM = 8

# Shared by both scripts: a hash's totals brought up to date for a window whose oldest bucket is `oldest`, then
# the requests and tokens in that oldest bucket (the one sliding out) and in the current one, `cur`.
_TOTALS = """
local function int(x)  -- integers written as such: Lua would write 1e+15 for 10^15
  return string.format('%d', x)
end

local function totals(key, oldest, cur)
  local h = redis.call('HMGET', key, 't-1', 't-2', 't-3', 't-4', 'r' .. oldest, 't' .. oldest, 'r' .. cur, 't' .. cur)
  local low = tonumber(h[1])
  if low ~= nil and low >= oldest then
    return tonumber(h[2]) or 0, tonumber(h[3]) or 0, tonumber(h[4]) or -1, tonumber(h[5]) or 0, tonumber(h[6]) or 0,
      tonumber(h[7]) or 0, tonumber(h[8]) or 0
  end
  local flat = redis.call('HGETALL', key)
  local rs, ts, newest, er, et, rc, tc = 0, 0, -1, 0, 0, 0, 0
  if #flat == 0 then return rs, ts, newest, er, et, rc, tc end  -- no hash: nothing to write (it would never expire)
  local stale = {}
  for j = 1, #flat, 2 do
    local f = flat[j]
    local c = string.byte(f, 1)
    local idx = tonumber(string.sub(f, 2))
    if (c == 114 or c == 116) and idx ~= nil and idx >= 0 then
      local v = tonumber(flat[j + 1])
      if idx < oldest then
        stale[#stale + 1] = f
      else
        if c == 114 then rs = rs + v else ts = ts + v end
        if v > 0 and idx > newest then newest = idx end
        if idx == oldest then
          if c == 114 then er = v else et = v end
        end
        if idx == cur then
          if c == 114 then rc = v else tc = v end
        end
      end
    end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  redis.call('HSET', key, 't-1', int(oldest), 't-2', int(rs), 't-3', int(ts), 't-4', int(newest))
  return rs, ts, newest, er, et, rc, tc
end

-- Add `delta` to what a reservation made at `stamp` charged to dimension `kind` ('r' or 't'): to the bucket it
-- charged while that is in the window (never below zero), else, when positive, to the current bucket `cur`.
local function adjust(key, stamp, bw, nb, kind, delta, cur)
  local total = 't-3'
  if kind == 'r' then total = 't-2' end
  local charged = math.floor(stamp / bw)
  local rs, ts, newest = totals(key, cur - nb, cur)
  local sum = ts
  if kind == 'r' then sum = rs end
  local field = kind .. charged
  local before = tonumber(redis.call('HGET', key, field))
  if charged >= cur - nb and before ~= nil then
    local after = before + delta
    if after < 0 then after = 0 end
    redis.call('HSET', key, field, int(after), total, int(sum + after - before))
    if after == 0 and charged == newest then
      redis.call('HDEL', key, 't-1')  -- the newest bucket may have emptied: the next check rebuilds the totals
    end
  elseif delta > 0 then
    redis.call('HINCRBY', key, kind .. cur, delta)
    if cur > newest then newest = cur end
    redis.call('HSET', key, total, int(sum + delta), 't-4', int(newest))
    redis.call('PEXPIRE', key, (nb + 1) * bw)
  end
end
"""

# ARGV per check (10): bucket width, buckets, request limit, token limit (-1: none), the request's token cost; the
# lease wanted (requests, tokens); a lease handed back (its stamp, -1 for none; requests; tokens).
# Reply: ok, failed check (0-based), retry ms, now ms; per check: requests and tokens used (after the charge,
# leases included), ms until the window is empty, requests and tokens leased.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local failed, retry = -1, 0
local state = {}
local ROOM = """ + str(LEASE_ROOM) + """
""" + _TOTALS + """
local function wait(key, kind, oldest, frac, need, nb, bw)
  local flat = redis.call('HGETALL', key)
  local b, idxs = {}, {}
  for j = 1, #flat, 2 do
    local f = flat[j]
    if string.byte(f, 1) == kind then
      local idx = tonumber(string.sub(f, 2))
      if idx >= oldest then
        b[idx] = tonumber(flat[j + 1])
        idxs[#idxs + 1] = idx
      end
    end
  end
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

for i = 1, n do  -- leases handed back first: what they free counts for this request
  local base = (i - 1) * 10
  local stamp = tonumber(ARGV[base + 8])
  if stamp >= 0 then
    local bw = tonumber(ARGV[base + 1])
    local nb = tonumber(ARGV[base + 2])
    local cur = math.floor(now / bw)
    local back_r, back_t = tonumber(ARGV[base + 9]), tonumber(ARGV[base + 10])
    if back_r > 0 then adjust(KEYS[i], stamp, bw, nb, 'r', -back_r, cur) end
    if back_t > 0 then adjust(KEYS[i], stamp, bw, nb, 't', -back_t, cur) end
  end
end

for i = 1, n do
  local base = (i - 1) * 10
  local bw = tonumber(ARGV[base + 1])
  local nb = tonumber(ARGV[base + 2])
  local rl = tonumber(ARGV[base + 3])
  local tl = tonumber(ARGV[base + 4])
  local cost = tonumber(ARGV[base + 5])
  local cur = math.floor(now / bw)
  local frac = (now % bw) / bw
  local oldest = cur - nb
  local rs, ts, newest, er, et, rc, tc = totals(KEYS[i], oldest, cur)
  local ur, ut = -1, -1
  if rl >= 0 then
    local used = (rs - er) + er * (1 - frac)
    ur = math.ceil(used)
    if used + 1 > rl then worse(i, wait(KEYS[i], 114, oldest, frac, used + 1 - rl, nb, bw), nb * bw) end
  end
  if tl >= 0 then
    local used = (ts - et) + et * (1 - frac)
    ut = math.ceil(used)
    if used + cost > tl then worse(i, wait(KEYS[i], 116, oldest, frac, used + cost - tl, nb, bw), nb * bw) end
  end
  local reset = 0
  if newest >= 0 then reset = math.max(0, (newest + nb + 1) * bw - now) end
  state[i] = {bw, nb, rl, tl, cost, cur, ur, ut, reset, rs, ts, newest, rc, tc}
end

local out = {1, -1, 0, now}
if failed >= 0 then
  out[1] = 0
  out[2] = failed - 1
  out[3] = retry
  for i = 1, n do
    local s = state[i]
    out[#out + 1] = s[7]; out[#out + 1] = s[8]; out[#out + 1] = s[9]; out[#out + 1] = 0; out[#out + 1] = 0
  end
  return out
end
for i = 1, n do
  local s = state[i]
  local base = (i - 1) * 10
  local bw, nb, rl, tl, cost, cur = s[1], s[2], s[3], s[4], s[5], s[6]
  local ur, ut, rs, ts, newest = s[7], s[8], s[10], s[11], s[12]
  -- A lease only while the window keeps ROOM times as much free after it: near the limit, every request asks.
  local lr, lt = tonumber(ARGV[base + 6]), tonumber(ARGV[base + 7])
  if rl < 0 or rl - ur - 1 < ROOM * lr then lr = 0 end
  if tl < 0 or tl - ut - cost < ROOM * lt then lt = 0 end
  local fields = {}
  if rl >= 0 then
    fields[#fields + 1] = 'r' .. cur; fields[#fields + 1] = int(s[13] + 1 + lr)
    ur = ur + 1 + lr
    rs = rs + 1 + lr
    if cur > newest then newest = cur end
  end
  if tl >= 0 and cost + lt > 0 then
    fields[#fields + 1] = 't' .. cur; fields[#fields + 1] = int(s[14] + cost + lt)
    ut = ut + cost + lt
    ts = ts + cost + lt
    if cur > newest then newest = cur end
  end
  redis.call('HSET', KEYS[i], 't-2', int(rs), 't-3', int(ts), 't-4', int(newest), unpack(fields))
  redis.call('PEXPIRE', KEYS[i], (nb + 1) * bw)
  out[#out + 1] = ur; out[#out + 1] = ut; out[#out + 1] = (cur + nb + 1) * bw - now
  out[#out + 1] = lr; out[#out + 1] = lt
end
return out
"""

# ARGV per correction (5): the stamp of the reservation (or lease) it corrects, bucket width, buckets, and the
# requests and tokens to add (negative: give back).
SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
""" + _TOTALS + """
for i = 1, #KEYS do
  local base = (i - 1) * 5
  local stamp = tonumber(ARGV[base + 1])
  local bw = tonumber(ARGV[base + 2])
  local nb = tonumber(ARGV[base + 3])
  local cur = math.floor(now / bw)
  local dr, dt = tonumber(ARGV[base + 4]), tonumber(ARGV[base + 5])
  if dr ~= 0 then adjust(KEYS[i], stamp, bw, nb, 'r', dr, cur) end
  if dt ~= 0 then adjust(KEYS[i], stamp, bw, nb, 't', dt, cur) end
end
return 1
"""
