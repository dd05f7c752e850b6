-- Adds a family to its subject's index: a sorted set of family ids scored by their absolute
-- expiry, in its own key. Entries past their expiry (plus the margin) are dropped, and the key
-- lives as long as its longest-lived family, so the index never outgrows the subject's live
-- families.
--
-- On a standalone Redis (or Sentinel) the family document is created by the same call, so a
-- new family costs one round trip: KEYS[2] is then the family key, `SET NX PX` first, and the
-- index is not touched if the family exists. On a Cluster the two keys are on different slots
-- and cannot share a script: the family is created first by its own `SET NX PX`, and this
-- script runs with the index key alone.
--
-- KEYS[1]  the subject index
-- KEYS[2]  (optional) the family document, to create
-- ARGV[1]  the family id
-- ARGV[2]  its absolute expiry (seconds)
-- ARGV[3]  now (seconds)
-- ARGV[4]  the key TTL margin in milliseconds
-- ARGV[5]  (with KEYS[2]) the family document's JSON
-- ARGV[6]  (with KEYS[2]) the family document's TTL in milliseconds
--
-- Returns {'exists'} when KEYS[2] was given and already exists (nothing written), otherwise
-- {'ok', <number of families in the index>}.
if KEYS[2] ~= nil then
  if not redis.call('SET', KEYS[2], ARGV[5], 'NX', 'PX', ARGV[6]) then
    return {'exists'}
  end
end
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
return {'ok', tostring(redis.call('ZCARD', KEYS[1]))}
