-- Admits an attempt. KEYS: turn, lock, rate. ARGV: token ('' for no
-- turn), turn_ms, mode (0 no rate, 1 spend, 2 check only), interval_us,
-- burst. Returns {0, 0} admitted, {1, ms} locked, {2, 0} another
-- instance holds the turn, {3, ms} over the rate.
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return {1, locked} end
local token = ARGV[1]
if token ~= '' then
  if not redis.call('SET', KEYS[1], token, 'NX', 'PX', ARGV[2]) then
    return {2, 0}
  end
end
local mode = tonumber(ARGV[3])
if mode > 0 then
  local wait = gcra(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), mode == 1, now_us())
  if wait > 0 then
    if token ~= '' then redis.call('DEL', KEYS[1]) end
    return {3, ms(wait)}
  end
end
return {0, 0}
