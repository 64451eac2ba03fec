-- Settles an admitted attempt. KEYS: turn, fail, lock, rate, marks. ARGV:
-- token ('' when it held no turn), tested (0 untested, 1 wrong password,
-- 2 right), limit, window_ms, lock_ms, charge (1: pay the rate now),
-- interval_us, burst, instance. Returns 1 when this attempt locked the
-- identity.
local locked = 0
redis.call('ZREM', KEYS[5], ARGV[9])
if ARGV[6] == '1' then
  gcra(KEYS[4], tonumber(ARGV[7]), tonumber(ARGV[8]), true, now_us())
end
if ARGV[2] == '1' then
  locked = count_failure(KEYS[2], KEYS[3], tonumber(ARGV[3]), ARGV[4], ARGV[5])
elseif ARGV[2] == '2' then
  redis.call('DEL', KEYS[2])
end
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return locked
