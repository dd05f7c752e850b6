-- One write to the managed keys (token-kms KeyStore) and, when it changed the hash, the signal
-- on their channel, atomically: no instance sees the write without the signal following, and
-- a call that fails wrote nothing.
--
-- KEYS[1]  the managed keys' hash
-- ARGV[1]  the channel of change signals
-- ARGV[2]  the operation:
--            'insert_new'  ARGV[3] field, ARGV[4] value: HSETNX
--            'put'         ARGV[3] field, ARGV[4] value: HSET
--            'remove'      ARGV[3..] fields: HDEL (one at a time: no unpack limit)
--
-- Returns {'changed'} or {'unchanged'} (insert_new: the field existed; remove: none did).
local op = ARGV[2]
local changed = 0
if op == 'insert_new' then
  changed = redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4])
elseif op == 'put' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  changed = 1
elseif op == 'remove' then
  for i = 3, #ARGV do
    changed = changed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
else
  return redis.error_reply('unknown managed-keys operation')
end
if changed > 0 then
  redis.call('PUBLISH', ARGV[1], op)
  return {'changed'}
end
return {'unchanged'}
