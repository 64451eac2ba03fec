-- Shared by the three scripts of src/ratelimit/shared.rs (prepended to
-- each). Times are the store's own clock (TIME), so that instances whose
-- clocks differ count alike; microseconds fit a Lua double exactly.

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- GCRA (as governor counts): 0 when an attempt fits the rate (and, with
-- spend, it is paid for), else the microseconds until one would.
local function gcra(key, interval, burst, spend, now)
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then tat = now end
  local new_tat = tat + interval
  local over = new_tat - now - interval * burst
  if over > 0 then return over end
  if spend then
    redis.call('SET', key, string.format('%.0f', new_tat),
      'PX', math.ceil((new_tat - now) / 1000) + 1)
  end
  return 0
end

-- A wrong password: 1 when it locks the identity.
local function count_failure(fail_key, lock_key, limit, window_ms, lock_ms)
  if limit <= 0 then return 0 end
  local n = redis.call('INCR', fail_key)
  if n == 1 then redis.call('PEXPIRE', fail_key, window_ms) end
  if n >= limit then
    redis.call('DEL', fail_key)
    redis.call('SET', lock_key, '1', 'PX', lock_ms)
    return 1
  end
  return 0
end

local function ms(us) return math.ceil(us / 1000) end
