-- token_refresh::decide_revoke (and decide_revoke_absent when there is no family), mirrored,
-- run atomically with the read and the write. Keep in step with token-refresh's src/decide.rs
-- (the property tests compare them).
--
-- KEYS[1]  the family
-- KEYS[2]  its revocation-list entry (same hash tag)
-- ARGV[1]  the request as JSON (RevokeArgs in src/store.rs)
-- ARGV[2]  the pub/sub channel of revocation events
-- ARGV[3]  the key TTL margin in milliseconds
--
-- Returns {'not_found'}, {'forged'}, {'client_mismatch'}, {'already_revoked'},
-- {'revoked', new family JSON} or {'tombstoned', revocation-list entry JSON}.
local null = cjson.null
local function is_null(v) return v == nil or v == null end

local r = cjson.decode(ARGV[1])
local margin = tonumber(ARGV[3])
local max_ttl = 315360000000
local now = r.now

local function ttl_ms(seconds)
  local ttl = math.max(seconds, 0) * 1000 + margin
  return math.floor(math.min(ttl, max_ttl))
end

-- Lists the family (its id is KEYS[2]'s hash tag) and publishes the entry.
local function list(family_id)
  local event = cjson.encode({
    family_id = family_id,
    reason = r.reason,
    revoked_at = now,
    listed_until = now + r.revocation_ttl,
  })
  redis.call('SET', KEYS[2], event, 'PX', ttl_ms(r.revocation_ttl))
  redis.call('PUBLISH', ARGV[2], event)
  return event
end

local raw = redis.call('GET', KEYS[1])
if not raw then
  -- decide_revoke_absent. 1. By token: a token proves nothing without its family.
  if not is_null(r.presented_hash) or not is_null(r.client_id) then return {'not_found'} end
  -- 2. Listed already (revoked or tombstoned before): no access token was minted since.
  local entry = redis.call('GET', KEYS[2])
  if entry and now < cjson.decode(entry).listed_until then return {'already_revoked'} end
  -- 3. An operator's revocation of an expired, forgotten family: its access tokens may
  -- still be alive, so it is listed all the same (a tombstone).
  return {'tombstoned', list(r.family_id)}
end
local f = cjson.decode(raw)

-- Revocation of a subject's families: the index may name a family of another subject only
-- if an id was reused; that family is left alone.
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
list(f.id)
return {'revoked', json}
