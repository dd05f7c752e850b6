-- token_refresh::decide, mirrored step by step, run atomically with the read and the write.
-- Keep in step with token-refresh's src/decide.rs: the property tests compare this script
-- with `decide` on arbitrary (family, request) pairs.
--
-- KEYS[1]  the family (a JSON document: token_refresh::Family's serde form; the fields this
--          script does not change are written back as they were, and `claims_json` stays a
--          string: decoding it here would rewrite its numbers and empty arrays)
-- KEYS[2]  its revocation-list entry (same hash tag, so the same Cluster slot)
-- ARGV[1]  the request as JSON (RotateArgs in src/store.rs)
-- ARGV[2]  the pub/sub channel of revocation events
-- ARGV[3]  the key TTL margin in milliseconds (added to every TTL computed from `now`)
-- ARGV[4]  how many rotated hashes a family remembers (token_refresh::MAX_ROTATED_HASHES)
--
-- Returns {outcome} or {outcome, new family JSON}; outcomes are the RotateOutcome variants
-- in snake_case. Hash comparisons are Lua string equality on base64url text (interned
-- strings: a pointer comparison, not a byte loop).
local null = cjson.null
local function is_null(v) return v == nil or v == null end

local raw = redis.call('GET', KEYS[1])
if not raw then return {'not_found'} end
local f = cjson.decode(raw)
local r = cjson.decode(ARGV[1])
local margin = tonumber(ARGV[3])
local max_rotated = tonumber(ARGV[4])
local max_ttl = 315360000000 -- ten years in ms: keeps PX arguments integral and small
local now = r.now

local function ttl_ms(seconds)
  local ttl = math.max(seconds, 0) * 1000 + margin
  return math.floor(math.min(ttl, max_ttl))
end

local function save(fam)
  local json = cjson.encode(fam)
  local expires = math.min(fam.idle_expires_at, fam.absolute_expires_at)
  redis.call('SET', KEYS[1], json, 'PX', ttl_ms(expires - now))
  return json
end

-- 1. Classify the presented hash: current, previous (grace), rotated, or unknown.
local h = r.presented_hash
local known = 'unknown'
if f.current_hash == h then
  known = 'current'
elseif not is_null(f.grace) and f.grace.previous_hash == h then
  known = 'previous'
else
  for _, x in ipairs(f.rotated) do
    if x == h then
      known = 'rotated'
      break
    end
  end
end
if known == 'unknown' then return {'forged'} end
-- 2. Revoked.
if not is_null(f.revoked) then return {'revoked'} end
-- 3. Expired.
if now >= f.absolute_expires_at or now >= f.idle_expires_at then return {'expired'} end
-- 4. Client binding: a token of another client's family changes nothing (not even as reuse).
if r.client_id ~= f.client_id then return {'client_mismatch'} end
-- 5. DPoP binding.
if not is_null(f.dpop_jkt) and (is_null(r.presented_jkt) or r.presented_jkt ~= f.dpop_jkt) then
  return {'dpop_mismatch'}
end
-- Whether every requested entry is one the family has (an absent field: it has none).
local function subset(requested, granted)
  if is_null(requested) then return true end
  local have = {}
  if not is_null(granted) then
    for _, s in ipairs(granted) do have[s] = true end
  end
  for _, s in ipairs(requested) do
    if not have[s] then return false end
  end
  return true
end
local narrowing = nil
if not subset(r.requested_scopes, f.scopes) then
  narrowing = 'scope_exceeded'
elseif not subset(r.requested_audience, f.audience) then
  narrowing = 'audience_exceeded'
elseif r.require_audience then
  -- The next token's audience: the requested one, else the family's (absent in a family
  -- stored before grants kept their audience). None at all is refused, family untouched.
  local next_audience = r.requested_audience
  if is_null(next_audience) then next_audience = f.audience end
  if is_null(next_audience) or #next_audience == 0 then
    narrowing = 'audience_exceeded'
  end
end
local grace_on = r.grace_window > 0 and r.grace_max_uses > 0

-- 6. The current token rotates. The grant (scopes, audience, claims_json, access_ttl and
-- any field this script does not name) passes through untouched.
if known == 'current' then
  if narrowing then return {narrowing} end
  local old = f.current_hash
  f.generation = f.generation + 1
  local rotated = {}
  for _, x in ipairs(f.rotated) do rotated[#rotated + 1] = x end
  rotated[#rotated + 1] = old
  while #rotated > max_rotated do table.remove(rotated, 1) end
  f.rotated = rotated
  f.current_hash = r.new_hash
  f.rotated_at = now
  f.idle_expires_at = math.min(now + r.idle_ttl, f.absolute_expires_at)
  if grace_on and not is_null(r.sealed_successor) then
    f.grace = {previous_hash = old, sealed_successor = r.sealed_successor, uses = 0, rotated_at = now}
  else
    f.grace = null
  end
  return {'rotated', save(f)}
end

-- 7. The previous token within the grace window and use limit is a retry.
if known == 'previous' then
  local g = f.grace
  if grace_on and now < g.rotated_at + r.grace_window and g.uses < r.grace_max_uses then
    if narrowing then return {narrowing} end
    g.uses = g.uses + 1
    return {'grace_retry', save(f)}
  end
end

-- 8. Any other remembered token: reuse. Revoke, list, publish: all in this one script.
f.revoked = {reason = 'reuse_detected', at = now}
f.grace = null
local json = save(f)
local event = cjson.encode({
  family_id = f.id,
  reason = 'reuse_detected',
  revoked_at = now,
  listed_until = now + r.revocation_ttl,
})
redis.call('SET', KEYS[2], event, 'PX', ttl_ms(r.revocation_ttl))
redis.call('PUBLISH', ARGV[2], event)
return {'reuse', json}
