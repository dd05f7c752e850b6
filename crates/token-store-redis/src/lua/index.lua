-- Adds a family to its subject's index: a sorted set of family ids scored by their absolute
-- expiry, in its own key (its own Cluster slot, updated after the family is created).
-- Entries past their expiry (plus the margin) are dropped, and the key lives as long as its
-- longest-lived family, so the index never outgrows the subject's live families.
--
-- KEYS[1]  the subject index
-- ARGV[1]  the family id
-- ARGV[2]  its absolute expiry (seconds)
-- ARGV[3]  now (seconds)
-- ARGV[4]  the key TTL margin in milliseconds
local now = tonumber(ARGV[3])
local margin = tonumber(ARGV[4])
local max_ttl = 315360000000
local stale = now - math.floor(margin / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', stale))
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local ttl = math.max(tonumber(last[2]) - now, 0) * 1000 + margin
ttl = math.floor(math.min(ttl, max_ttl))
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return redis.call('ZCARD', KEYS[1])
