/**
 * Lua scripts of the Redis backend. Each one runs atomically on the node that owns its keys, and
 * every key a script touches shares one hash tag (see keys.ts), so each works unchanged on a
 * Cluster. ioredis sends EVAL the first time per connection and EVALSHA after, and re-sends on
 * NOSCRIPT (e.g. after a Redis restart flushed the script cache).
 *
 * Why Lua rather than MULTI: every one of these reads before it writes (compare-and-set, decay
 * relative to the stored time, "create only if absent"), which MULTI cannot express without
 * WATCH retries; and a script makes the change and its notification one step — a location can
 * never change without its PUBLISH, even if the client dies in between.
 *
 * Numbers: Lua numbers are doubles. Times (13-digit ms) and tokens stay exact below 2^53, and
 * tostring()/cjson print them with 14 significant digits, so they round-trip exactly.
 */

/** Reads a hash into a Lua table; returns the table and the flat reply (sent back as "current"). */
const HGETALL = `
local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local h = {}
  for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
  return h, flat
end
`

/**
 * Fence check shared by cas and delete. With a lease key (standalone Redis) the lease's current
 * token must equal ours; on a Cluster the lease lives in another slot, so the store checks it
 * just before (one round trip) and the script enforces the per-block high-water mark: no token
 * lower than one that has already written this block can write it again.
 */
const FENCE = `
local function fenced(h, token, leaseKey)
  if not token then return false end
  if leaseKey then
    local t = redis.call('HGET', leaseKey, 'token')
    if not t or tonumber(t) ~= token then return true end
  end
  if h.f and tonumber(h.f) > token then return true end
  return false
end
`

/**
 * KEYS: loc, hist[, lease]
 * ARGV: expectedEpoch, now, gateway, phase, target|'', versionMode k|s|n, version, token|'',
 *       historyLimit, channel, volume, block, reason, members|'', inSync|'' (codec.ts encodeSet)
 * → {'ok', newHash} | {'epoch'|'fenced', currentHash}
 */
export const CAS = HGETALL + FENCE + `
local h, flat = hgetall(KEYS[1])
local live = h.e ~= nil and h.d == nil
local token = tonumber(ARGV[8])
if fenced(h, token, KEYS[3]) then return {'fenced', flat} end
local cur = 0
if live then cur = tonumber(h.e) end
if cur ~= tonumber(ARGV[1]) then return {'epoch', flat} end
-- A tombstone keeps the epoch, so a re-created block continues from it.
local epoch = tonumber(h.e or '0') + 1
local version = nil
if ARGV[6] == 'k' then
  if live then version = h.v end
elseif ARGV[6] == 's' then
  version = ARGV[7]
end
local fence = tonumber(h.f or '0')
if token and token > fence then fence = token end
local now = tonumber(ARGV[2])
local target = ARGV[5]
if target == '' then target = nil end
local fields = {'g', ARGV[3], 'e', tostring(epoch), 'p', ARGV[4], 'u', ARGV[2], 'f', tostring(fence)}
if target then fields[#fields + 1] = 't'; fields[#fields + 1] = target end
if version then fields[#fields + 1] = 'v'; fields[#fields + 1] = version end
local members = ARGV[14]
if members == '' then members = nil end
local inSync = ARGV[15]
if inSync == '' then inSync = nil end
if members then fields[#fields + 1] = 'm'; fields[#fields + 1] = members end
if inSync then fields[#fields + 1] = 'i'; fields[#fields + 1] = inSync end
-- DEL first: drops a tombstone's TTL and any field of the previous epoch (t, v, d).
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], cjson.encode({e = epoch, g = ARGV[3], v = version, p = ARGV[4], u = now, r = ARGV[13]}))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[9]), -1)
redis.call('PERSIST', KEYS[2])
redis.call('PUBLISH', ARGV[10], cjson.encode({v = 1, k = 'loc', vol = ARGV[11], blk = ARGV[12], e = epoch,
  loc = {g = ARGV[3], e = epoch, v = version, p = ARGV[4], t = target, u = now, f = fence, m = members, i = inSync}}))
return {'ok', fields}
`

/**
 * KEYS: loc, hist
 * ARGV: epoch, version, now, historyLimit
 * → {'ok', hash} | {'epoch', currentHash}. No notification: routing does not depend on the version.
 */
export const SET_VERSION = HGETALL + `
local h, flat = hgetall(KEYS[1])
if h.e == nil or h.d ~= nil or tonumber(h.e) ~= tonumber(ARGV[1]) then return {'epoch', flat} end
if h.v ~= ARGV[2] then
  redis.call('HSET', KEYS[1], 'v', ARGV[2])
  redis.call('RPUSH', KEYS[2], cjson.encode({e = tonumber(h.e), g = h.g, v = ARGV[2], p = h.p, u = tonumber(ARGV[3]), r = 'write'}))
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
  flat = redis.call('HGETALL', KEYS[1])
end
return {'ok', flat}
`

/**
 * KEYS: loc, hist[, lease]
 * ARGV: expectedEpoch|'', now, token|'', historyLimit, channel, volume, block, reason, tombstoneTtlMs
 * → {'ok'} | {'absent'} | {'epoch'|'fenced', currentHash}
 */
export const DELETE = HGETALL + FENCE + `
local h, flat = hgetall(KEYS[1])
local live = h.e ~= nil and h.d == nil
local token = tonumber(ARGV[3])
if fenced(h, token, KEYS[3]) then return {'fenced', flat} end
local cur = 0
if live then cur = tonumber(h.e) end
if ARGV[1] ~= '' and cur ~= tonumber(ARGV[1]) then return {'epoch', flat} end
if not live then return {'absent'} end
local epoch = tonumber(h.e) + 1
local fence = tonumber(h.f or '0')
if token and token > fence then fence = token end
local now = tonumber(ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'e', tostring(epoch), 'd', '1', 'u', ARGV[2], 'f', tostring(fence))
redis.call('PEXPIRE', KEYS[1], ARGV[9])
redis.call('RPUSH', KEYS[2], cjson.encode({e = epoch, g = h.g, v = h.v, p = h.p, u = now, r = ARGV[8]}))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
redis.call('PEXPIRE', KEYS[2], ARGV[9])
redis.call('PUBLISH', ARGV[5], cjson.encode({v = 1, k = 'loc', vol = ARGV[6], blk = ARGV[7], e = epoch}))
return {'ok'}
`

/**
 * KEYS: one aff key per block (on a Cluster all in one slot: the store groups a batch by slot)
 * ARGV: halfLifeMs, ttlMs, floor, then per block, in KEYS order: reads, writes, at, siteCount,
 *       siteCount × (site, weight)
 * → number of blocks merged, or an error naming the first block that failed.
 *
 * One call merges a whole batch (mergeAccess sends one call per batch on a standalone server,
 * one per slot on a Cluster). Each block's merge mirrors affinity.ts mergeScores() exactly (see
 * there for why it is order-independent) and runs under pcall, so a damaged key (wrong type, a
 * non-numeric field) fails only its own block, as it did when each block was its own call: the
 * other blocks are merged, and the call then reports the first failure.
 */
export const MERGE_ACCESS = HGETALL + `
local hl = tonumber(ARGV[1])
local ttl = ARGV[2]
local floor = tonumber(ARGV[3])
local function merge(key, reads, writes, atArg, weights)
  local at = tonumber(atArg)
  local h = hgetall(key)
  local sets = {}
  local dels = {}
  local scoredAt = tonumber(h.at)
  if scoredAt == nil or at >= scoredAt then
    local f = 1
    if scoredAt ~= nil then f = 2 ^ (-(at - scoredAt) / hl) end
    for field, val in pairs(h) do
      if string.sub(field, 1, 2) == 's:' then
        local site = string.sub(field, 3)
        local s = tonumber(val) * f
        local w = weights[site]
        if w then
          sets[#sets + 1] = field; sets[#sets + 1] = s + w
          weights[site] = nil
        elseif s < floor then
          dels[#dels + 1] = field
        else
          sets[#sets + 1] = field; sets[#sets + 1] = s
        end
      end
    end
    for site, w in pairs(weights) do sets[#sets + 1] = 's:' .. site; sets[#sets + 1] = w end
    sets[#sets + 1] = 'at'; sets[#sets + 1] = atArg
  else
    local f = 2 ^ (-(scoredAt - at) / hl)
    for site, w in pairs(weights) do
      sets[#sets + 1] = 's:' .. site
      sets[#sets + 1] = (tonumber(h['s:' .. site]) or 0) + w * f
    end
  end
  local la = tonumber(h.la)
  if la == nil or at > la then sets[#sets + 1] = 'la'; sets[#sets + 1] = atArg end
  if #dels > 0 then redis.call('HDEL', key, unpack(dels)) end
  if #sets > 0 then redis.call('HSET', key, unpack(sets)) end
  redis.call('HINCRBYFLOAT', key, 'r', reads)
  redis.call('HINCRBYFLOAT', key, 'w', writes)
  redis.call('PEXPIRE', key, ttl)
end
local failed = nil
local merged = 0
local p = 4
for k = 1, #KEYS do
  local n = tonumber(ARGV[p + 3])
  local weights = {}
  for i = p + 4, p + 3 + 2 * n, 2 do weights[ARGV[i]] = tonumber(ARGV[i + 1]) end
  local ok, err = pcall(merge, KEYS[k], ARGV[p], ARGV[p + 1], ARGV[p + 2], weights)
  if ok then
    merged = merged + 1
  elseif failed == nil then
    if type(err) == 'table' then err = err.err end
    failed = 'ERR ferryMergeAccess ' .. KEYS[k] .. ': ' .. tostring(err)
  end
  p = p + 4 + 2 * n
end
if failed then return redis.error_reply(failed) end
return merged
`

/** KEYS: sess   ARGV: now, ttlMs, stateJson, then volume, gateway pairs. Replaces the session. */
export const PUT_SESSION = `
local args = {'at', ARGV[1], 'st', ARGV[3]}
for i = 4, #ARGV, 2 do
  args[#args + 1] = 'b:' .. ARGV[i]
  args[#args + 1] = ARGV[i + 1]
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(args))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

/**
 * KEYS: sess   ARGV: now, ttlMs, volume, gateway, maxBindings → 1 | 0 (too many bindings)
 * One field, so two proxies binding different volumes of one session concurrently both win.
 */
export const BIND_SESSION = `
local field = 'b:' .. ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'st', '{}')
elseif redis.call('HEXISTS', KEYS[1], field) == 0 and redis.call('HLEN', KEYS[1]) - 2 >= tonumber(ARGV[5]) then
  return 0
end
redis.call('HSET', KEYS[1], field, ARGV[4], 'at', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

/**
 * KEYS: tel   ARGV: now, maxAgeMs, maxSamples, then score, member pairs
 * Bounded both ways in the same step as the append, so the key never grows past its bound.
 */
export const APPEND_TELEMETRY = `
-- In chunks of 500 (score, member) pairs: unpack() of a huge table would overflow the Lua stack.
for i = 4, #ARGV, 1000 do
  redis.call('ZADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. tostring(cutoff))
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1) end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`

/**
 * KEYS: lease, seq   ARGV: holder, ttlMs → token | false
 * Token = max(last + 1, server time in ms): strictly increasing, and still increasing if the
 * counter is lost with a Redis that restarted without persistence.
 */
export const ACQUIRE_LEASE = `
local cur = redis.call('HMGET', KEYS[1], 'holder', 'token')
if cur[1] then
  if cur[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return cur[2]
  end
  return false
end
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local token = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
if nowMs > token then token = nowMs end
redis.call('SET', KEYS[2], tostring(token))
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'token', tostring(token))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return tostring(token)
`

/** KEYS: lease   ARGV: holder, token, ttlMs → 1 | 0 */
export const RENEW_LEASE = `
local cur = redis.call('HMGET', KEYS[1], 'holder', 'token')
if cur[1] == ARGV[1] and tonumber(cur[2]) == tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
`

/** KEYS: lease   ARGV: holder, token → 1 | 0 */
export const RELEASE_LEASE = `
local cur = redis.call('HMGET', KEYS[1], 'holder', 'token')
if cur[1] == ARGV[1] and tonumber(cur[2]) == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
`

/** KEYS: lease → {holder, token, pttl} | false */
export const GET_LEASE = `
local cur = redis.call('HMGET', KEYS[1], 'holder', 'token')
if not cur[1] then return false end
return {cur[1], cur[2], redis.call('PTTL', KEYS[1])}
`

/**
 * Moves a finished migration from the active set to the done index and trims the oldest
 * finished records (active ones are never trimmed). The record keys share the {mig} tag.
 */
const FINISH_MIGRATION = `
local function finish(id, score, limit, recPrefix)
  redis.call('SREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], score, id)
  local excess = redis.call('ZCARD', KEYS[2]) - limit
  if excess > 0 then
    local old = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
    for _, oid in ipairs(old) do redis.call('DEL', recPrefix .. oid) end
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
  end
end
`

/**
 * KEYS: active, done, record   ARGV: id, finished 1|0, endScore, limit, recPrefix, field/value pairs
 * → 1 | 0 (id exists)
 */
export const APPEND_MIGRATION = FINISH_MIGRATION + `
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
if ARGV[2] == '1' then
  finish(ARGV[1], ARGV[3], tonumber(ARGV[4]), ARGV[5])
else
  redis.call('SADD', KEYS[1], ARGV[1])
end
return 1
`

/**
 * Same keys and arguments as APPEND_MIGRATION (endScore '' when the patch has no endedAt)
 * → the record's hash | false (unknown id). A corrected end time re-scores a finished record.
 */
export const UPDATE_MIGRATION = FINISH_MIGRATION + `
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
redis.call('HSET', KEYS[3], unpack(ARGV, 6))
if ARGV[2] == '1' and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  finish(ARGV[1], ARGV[3], tonumber(ARGV[4]), ARGV[5])
elseif ARGV[3] ~= '' and redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], 'XX', ARGV[3], ARGV[1])
end
return redis.call('HGETALL', KEYS[3])
`

/** KEYS: active, done   ARGV: recPrefix, limit, activeOnly 1|0 → list of record hashes */
export const LIST_MIGRATIONS = `
local ids = redis.call('SMEMBERS', KEYS[1])
if ARGV[3] ~= '1' then
  for _, id in ipairs(redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)) do ids[#ids + 1] = id end
end
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HGETALL', ARGV[1] .. id)
  if #h > 0 then out[#out + 1] = h end
end
return out
`

/**
 * KEYS: a never-written key whose only purpose is its slot   ARGV: channel, message
 * PUBLISH has no key, so a Cluster client would send each one to a random node, and two
 * messages from one publisher could then overtake each other on the cluster bus. Publishing
 * through a script bound to one fixed slot sends every message from the same node, in order.
 */
export const PUBLISH = `
return redis.call('PUBLISH', ARGV[1], ARGV[2])
`

/**
 * KEYS: generation   ARGV: a new marker (JSON)
 * Returns the marker, creating it from ARGV[1] when absent: every caller gets the same one.
 */
export const GENERATION = `
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
`

/**
 * KEYS: generation   ARGV: id, now
 * Marks the generation rebuilt, only if the marker is still that generation's.
 */
export const FINISH_REBUILD = `
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local g = cjson.decode(cur)
if g.id ~= ARGV[1] then return 0 end
if g.rebuilding then
  g.rebuilding = false
  g.rebuiltAt = tonumber(ARGV[2])
  redis.call('SET', KEYS[1], cjson.encode(g))
end
return 1
`

export interface ScriptDef {
  lua: string
  /** Fixed key count, or undefined when the caller passes it first (cas/delete: 2 or 3 keys; mergeAccess: one per block). */
  numberOfKeys?: number
  readOnly?: boolean
}

export const SCRIPTS = {
  ferryCas: { lua: CAS },
  ferrySetVersion: { lua: SET_VERSION, numberOfKeys: 2 },
  ferryDelete: { lua: DELETE },
  ferryMergeAccess: { lua: MERGE_ACCESS },
  ferryPutSession: { lua: PUT_SESSION, numberOfKeys: 1 },
  ferryBindSession: { lua: BIND_SESSION, numberOfKeys: 1 },
  ferryAppendTelemetry: { lua: APPEND_TELEMETRY, numberOfKeys: 1 },
  ferryAcquireLease: { lua: ACQUIRE_LEASE, numberOfKeys: 2 },
  ferryRenewLease: { lua: RENEW_LEASE, numberOfKeys: 1 },
  ferryReleaseLease: { lua: RELEASE_LEASE, numberOfKeys: 1 },
  ferryGetLease: { lua: GET_LEASE, numberOfKeys: 1, readOnly: true },
  ferryAppendMigration: { lua: APPEND_MIGRATION, numberOfKeys: 3 },
  ferryUpdateMigration: { lua: UPDATE_MIGRATION, numberOfKeys: 3 },
  ferryListMigrations: { lua: LIST_MIGRATIONS, numberOfKeys: 2, readOnly: true },
  ferryPublish: { lua: PUBLISH, numberOfKeys: 1 },
  ferryGeneration: { lua: GENERATION, numberOfKeys: 1 },
  ferryFinishRebuild: { lua: FINISH_REBUILD, numberOfKeys: 1 }
} satisfies Record<string, ScriptDef>

export type ScriptName = keyof typeof SCRIPTS
