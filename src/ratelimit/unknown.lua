-- A login that names no entry: checked and counted as a wrong password at
-- once. KEYS: fail, lock, rate. ARGV: limit, window_ms, lock_ms,
-- interval_us, burst. Returns {0, 0} counted, {0, 1} counted and now
-- locked, {1, ms} locked, {3, ms} over the rate.
local locked = redis.call('PTTL', KEYS[2])
if locked > 0 then return {1, locked} end
local wait = gcra(KEYS[3], tonumber(ARGV[4]), tonumber(ARGV[5]), true, now_us())
if wait > 0 then return {3, ms(wait)} end
return {0, count_failure(KEYS[1], KEYS[2], tonumber(ARGV[1]), ARGV[2], ARGV[3])}
