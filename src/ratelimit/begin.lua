-- Admits an attempt. KEYS: turn, lock, rate, fail, marks. ARGV: token
-- ('' for an attempt that takes no turn), turn_ms, mode (0 no rate, 1
-- spend, 2 check only), interval_us, burst, limit (failures before
-- lockout, 0 for none), instance, mark_ms, instances (the most a tenant
-- runs). Returns {0, 1} admitted holding the turn, {0, 0} admitted
-- without it, {1, ms} locked, {2, 0} wait and ask again, {3, ms} over
-- the rate.
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return {1, locked} end
local token = ARGV[1]
local limit = tonumber(ARGV[6])
local instances = tonumber(ARGV[9])
local now = now_us()
local now_ms = math.floor(now / 1000)
local mark = false
if token ~= '' then
  -- This instance runs one attempt per identity at a time: its earlier
  -- one has ended.
  redis.call('ZREM', KEYS[5], ARGV[7])
  local fails = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  if limit == 0 then
    token = ''
  elseif fails == 0 and limit >= instances then
    -- One attempt per instance failing together cannot pass the limit:
    -- no turn, so that a right password needs no second call. Marked,
    -- for the attempts near the limit below.
    token = ''
    mark = true
  else
    if fails + instances > limit then
      -- Near the limit, no unmarked attempt may still be running.
      redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now_ms)
      if redis.call('ZCARD', KEYS[5]) > 0 then return {2, 0} end
    end
    if not redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2]) then
      return {2, 0}
    end
  end
end
local mode = tonumber(ARGV[3])
if mode > 0 then
  local wait = gcra(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), mode == 1, now)
  if wait > 0 then
    if token ~= '' then redis.call('DEL', KEYS[1]) end
    return {3, ms(wait)}
  end
end
if mark then
  redis.call('ZADD', KEYS[5], now_ms + tonumber(ARGV[8]), ARGV[7])
  redis.call('PEXPIRE', KEYS[5], ARGV[8])
end
if token ~= '' then return {0, 1} end
return {0, 0}
