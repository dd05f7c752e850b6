-- token_refresh::decide_revoke, mirrored, run atomically with the read and the write.
-- Keep in step with token-refresh's src/decide.rs (the property tests compare them).
--
-- KEYS[1]  the family
-- KEYS[2]  its revocation-list entry (same hash tag)
-- ARGV[1]  the request as JSON (RevokeArgs in src/store.rs)
-- ARGV[2]  the pub/sub channel of revocation events
-- ARGV[3]  the key TTL margin in milliseconds
--
-- Returns {'not_found'}, {'forged'}, {'client_mismatch'}, {'already_revoked'} or
-- {'revoked', new family JSON}.
local null = cjson.null
local function is_null(v) return v == nil or v == null end

local raw = redis.call('GET', KEYS[1])
if not raw then return {'not_found'} end
local f = cjson.decode(raw)
local r = cjson.decode(ARGV[1])
local margin = tonumber(ARGV[3])
local max_ttl = 315360000000
local now = r.now

local function ttl_ms(seconds)
  local ttl = math.max(seconds, 0) * 1000 + margin
  return math.floor(math.min(ttl, max_ttl))
end

-- Revocation of a subject's families: the index may name a family of another subject only
-- if an id was reused; such an entry is treated as absent.
if not is_null(r.subject) and f.subject ~= r.subject then return {'not_found'} end

-- 1. A presented token must be one the family knows (current, previous or rotated).
local h = r.presented_hash
if not is_null(h) then
  local known = f.current_hash == h or (not is_null(f.grace) and f.grace.previous_hash == h)
  if not known then
    for _, x in ipairs(f.rotated) do
      if x == h then
        known = true
        break
      end
    end
  end
  if not known then return {'forged'} end
end
-- 2. A token presented by another client than the family's revokes nothing.
if not is_null(r.client_id) and r.client_id ~= f.client_id then return {'client_mismatch'} end
-- 3. Already revoked: nothing changes, nothing is published.
if not is_null(f.revoked) then return {'already_revoked'} end
-- 4. Revoke (expired families too: their last access tokens may still be alive).
f.revoked = {reason = r.reason, at = now}
f.grace = null
local json = cjson.encode(f)
local expires = math.min(f.idle_expires_at, f.absolute_expires_at)
redis.call('SET', KEYS[1], json, 'PX', ttl_ms(expires - now))
local event = cjson.encode({
  family_id = f.id,
  reason = r.reason,
  revoked_at = now,
  listed_until = now + r.revocation_ttl,
})
redis.call('SET', KEYS[2], event, 'PX', ttl_ms(r.revocation_ttl))
redis.call('PUBLISH', ARGV[2], event)
return {'revoked', json}
