//! [`RedisStore`]: the Redis backend, and its `FamilyStore` / `RevocationList` implementation.

use std::fmt;
use std::sync::Arc;

use crate::config::{Deployment, RedisConfig};
use crate::conn::{Conn, LuaScript};
use crate::error::Error;

#[cfg(feature = "refresh")]
use {
    crate::conn::MAX_TTL_MS,
    serde::Serialize,
    token_refresh::{
        Family, FamilyId, FamilyStore, RevocationBroadcaster, RevocationEvent, RevocationList,
        RevocationReason, RevocationSubscription, RevokeOutcome, RevokeRequest, RotateOutcome,
        RotateRequest, SealedSuccessor, StoreFuture, TokenHash,
    },
};

/// The Lua scripts of this crate.
pub(crate) struct Scripts {
    #[cfg(feature = "refresh")]
    pub(crate) rotate: LuaScript,
    #[cfg(feature = "refresh")]
    pub(crate) revoke: LuaScript,
    #[cfg(feature = "refresh")]
    pub(crate) index: LuaScript,
    #[cfg(feature = "keys")]
    pub(crate) keys: LuaScript,
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            #[cfg(feature = "refresh")]
            rotate: LuaScript::new(include_str!("lua/rotate.lua")),
            #[cfg(feature = "refresh")]
            revoke: LuaScript::new(include_str!("lua/revoke.lua")),
            #[cfg(feature = "refresh")]
            index: LuaScript::new(include_str!("lua/index.lua")),
            #[cfg(feature = "keys")]
            keys: LuaScript::new(include_str!("lua/keys.lua")),
        }
    }

    fn all(&self) -> Vec<&LuaScript> {
        vec![
            #[cfg(feature = "refresh")]
            &self.rotate,
            #[cfg(feature = "refresh")]
            &self.revoke,
            #[cfg(feature = "refresh")]
            &self.index,
            #[cfg(feature = "keys")]
            &self.keys,
        ]
    }
}

/// The Redis backend: refresh-token families and the revocation list (feature `refresh`),
/// the DPoP replay cache (feature `dpop`) and token-kms's managed keys (feature `keys`), over
/// one pool of connections.
///
/// Cheap to clone (the clones share the connections). Dropping the last clone closes the
/// connections and stops the pub/sub subscriber; [`RedisStore::close`] does it and waits.
///
/// # Round trips
///
/// | operation | Redis commands |
/// | --- | --- |
/// | `rotate` | one `EVALSHA` (read, decide, write, list and publish on reuse) |
/// | `revoke_family` | one `EVALSHA` (a tombstone for a forgotten family too) |
/// | `create` | one `EVALSHA` (the family's `SET NX PX` and its subject index); on a Cluster, where the two keys are on different slots, `SET NX PX` then the `EVALSHA` |
/// | `get`, `is_revoked` | one `GET` |
/// | `families_of` | one `ZRANGE` |
/// | `revoke_subject` | one `ZRANGE`, then one `EVALSHA` per family |
/// | `revoked` | `SCAN` on every primary, then one `GET` per entry |
/// | `ReplayCache::insert_if_absent` | one `SET NX PX` |
/// | `KeyStore::load` | one `HGETALL` |
/// | `KeyStore::insert_new`, `put`, `remove` | one `EVALSHA` (`HSETNX`, `HSET` or `HDEL`, and `PUBLISH` when it changed the hash) |
#[derive(Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: Arc<Conn>,
    pub(crate) scripts: Arc<Scripts>,
    pub(crate) config: RedisConfig,
    #[cfg(feature = "refresh")]
    pub(crate) events: RevocationBroadcaster,
    /// Moves on every write to the managed keys (theirs and ours) and after every
    /// resubscription of the subscriber.
    #[cfg(feature = "keys")]
    pub(crate) keys_changed: tokio::sync::watch::Sender<u64>,
    #[cfg(any(feature = "refresh", feature = "keys"))]
    pub(crate) subscriber: crate::events::Subscriber,
}

impl Drop for Inner {
    fn drop(&mut self) {
        #[cfg(any(feature = "refresh", feature = "keys"))]
        self.subscriber.stop();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let conn = self.conn.clone();
            handle.spawn(async move { conn.quit().await });
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("RedisStore")
            .field("url", &c.redacted_url())
            .field("deployment", &c.deployment())
            .field("key_prefix", &c.key_prefix())
            .field("pool_size", &c.pool_size())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects: the command pool, the Lua scripts loaded on every primary and, with the
    /// `refresh` or `keys` feature, the pub/sub subscriber (subscribed before this returns, so
    /// [`RevocationList::subscribe`](token_refresh::RevocationList::subscribe) and
    /// `KeyStore::changes` miss nothing published afterwards).
    ///
    /// Must run inside a Tokio runtime (the client's connection tasks live there).
    ///
    /// # Errors
    /// [`Error::Connect`] when Redis cannot be reached within the connect timeout, refuses the
    /// credentials, or refuses to load the scripts; [`Error::InvalidConfig`] for a URL the
    /// client does not accept.
    pub async fn connect(config: RedisConfig) -> Result<Self, Error> {
        let scripts = Arc::new(Scripts::new());
        let conn = Arc::new(Conn::connect(&config, &scripts.all()).await?);
        #[cfg(feature = "refresh")]
        let events = RevocationBroadcaster::new(config.event_capacity());
        #[cfg(feature = "keys")]
        let keys_changed = tokio::sync::watch::Sender::new(0);
        #[cfg(any(feature = "refresh", feature = "keys"))]
        let subscriber = {
            let sinks = crate::events::Sinks {
                #[cfg(feature = "refresh")]
                revocations: events.clone(),
                #[cfg(feature = "keys")]
                keys_changed: keys_changed.clone(),
            };
            match crate::events::Subscriber::start(&config, conn.clone(), sinks).await {
                Ok(s) => s,
                Err(e) => {
                    conn.quit().await;
                    return Err(e);
                }
            }
        };
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                scripts,
                config,
                #[cfg(feature = "refresh")]
                events,
                #[cfg(feature = "keys")]
                keys_changed,
                #[cfg(any(feature = "refresh", feature = "keys"))]
                subscriber,
            }),
        })
    }

    /// The configuration this store was connected with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The kind of deployment connected to.
    pub fn deployment(&self) -> Deployment {
        self.inner.config.deployment()
    }

    /// Whether every pooled connection is up right now (a readiness hint; operations do not
    /// depend on it).
    pub fn is_connected(&self) -> bool {
        use fred::interfaces::ClientLike;
        self.inner.conn.pool.is_connected()
    }

    /// One `PING` through the command pool, under the operation deadline (and refused, like
    /// every operation, while Redis may evict keys): a live check for readiness probes, and
    /// the cheapest round trip this store can make, which benchmarks use as the unit cost of
    /// the store.
    ///
    /// # Errors
    /// [`Error::Command`], [`Error::Timeout`] or [`Error::EvictionPolicy`].
    pub async fn ping(&self) -> Result<(), Error> {
        use fred::interfaces::ClientLike;
        let conn = &self.inner.conn;
        conn.timed("ping", async {
            conn.client()
                .ping::<String>(None)
                .await
                .map(drop)
                .map_err(|e| Error::command("ping", e))
        })
        .await
    }

    /// The `maxmemory-policy` for which this store now refuses every operation
    /// ([`Error::EvictionPolicy`]), if any: a policy other than `noeviction` that the check
    /// after a reconnect found on a primary (a Redis that has one at connect is refused
    /// outright). `None` once the policy is `noeviction` again. For readiness reports, which
    /// should name the policy and the fix: `Redis maxmemory-policy is allkeys-lru; set
    /// noeviction`.
    pub fn eviction_policy(&self) -> Option<String> {
        self.inner.conn.eviction_policy()
    }

    /// Stops the pub/sub subscriber and closes the connections. Other clones of this store
    /// fail closed afterwards.
    pub async fn close(&self) {
        #[cfg(any(feature = "refresh", feature = "keys"))]
        self.inner.subscriber.close().await;
        self.inner.conn.quit().await;
    }
}

// ---- refresh-token families ------------------------------------------------------------------

/// Times outside ±10^13 s (±317,000 years) are refused: Lua numbers are doubles and Redis's
/// `cjson` writes 14 significant digits, so larger values would not survive the script.
#[cfg(feature = "refresh")]
const MAX_ABS_TIME: i64 = 10_000_000_000_000;

#[cfg(feature = "refresh")]
fn check_time(values: &[i64]) -> Result<(), token_refresh::Error> {
    if values
        .iter()
        .all(|v| v.unsigned_abs() <= MAX_ABS_TIME.unsigned_abs())
    {
        Ok(())
    } else {
        Err(token_refresh::Error::store(
            "a time value is out of the range the Redis store keeps exactly",
        ))
    }
}

#[cfg(feature = "refresh")]
fn check_family(f: &Family) -> Result<(), token_refresh::Error> {
    let mut times = vec![
        f.created_at,
        f.absolute_expires_at,
        f.idle_expires_at,
        i64::try_from(f.generation).unwrap_or(i64::MAX),
    ];
    times.extend(f.rotated_at);
    times.extend(f.grace.as_ref().map(|g| g.rotated_at));
    times.extend(f.revoked.as_ref().map(|r| r.at));
    check_time(&times)
}

/// `TTL` in ms for a key that must outlive `until` (seconds), seen from `now`.
#[cfg(feature = "refresh")]
fn ttl_ms(until: i64, now: i64, margin_ms: i64) -> i64 {
    until
        .saturating_sub(now)
        .max(0)
        .saturating_mul(1000)
        .saturating_add(margin_ms)
        .clamp(1, MAX_TTL_MS)
}

/// The rotation request as the script reads it (`ARGV[1]`).
#[cfg(feature = "refresh")]
#[derive(Serialize)]
struct RotateArgs<'a> {
    presented_hash: &'a TokenHash,
    client_id: &'a str,
    presented_jkt: Option<&'a str>,
    requested_scopes: Option<&'a [String]>,
    requested_audience: Option<&'a [String]>,
    require_audience: bool,
    new_hash: &'a TokenHash,
    sealed_successor: Option<&'a SealedSuccessor>,
    now: i64,
    idle_ttl: i64,
    grace_window: i64,
    grace_max_uses: u32,
    revocation_ttl: i64,
}

/// The revocation request as the script reads it (`ARGV[1]`).
#[cfg(feature = "refresh")]
#[derive(Serialize)]
struct RevokeArgs<'a> {
    /// The family revoked: the id of a tombstone when there is no family document.
    family_id: &'a FamilyId,
    presented_hash: Option<&'a TokenHash>,
    /// Set when revoking by token: the family is revoked by its own client only.
    client_id: Option<&'a str>,
    reason: RevocationReason,
    now: i64,
    revocation_ttl: i64,
    /// Set when revoking a subject's families: a family of another subject is left alone.
    subject: Option<&'a str>,
}

#[cfg(feature = "refresh")]
fn parse_family(op: &'static str, json: &str, id: &FamilyId) -> Result<Family, Error> {
    let family: Family = serde_json::from_str(json)
        .map_err(|_| Error::unexpected(op, "the family document does not decode"))?;
    if family.id != *id {
        return Err(Error::unexpected(op, "the family document has another id"));
    }
    Ok(family)
}

#[cfg(feature = "refresh")]
fn to_json(value: &impl Serialize) -> Result<String, token_refresh::Error> {
    serde_json::to_string(value)
        .map_err(|e| token_refresh::Error::store_with_source("cannot encode a request", e))
}

#[cfg(feature = "refresh")]
impl RedisStore {
    async fn create_impl(&self, family: &Family) -> Result<(), token_refresh::Error> {
        check_family(family)?;
        let conn = &self.inner.conn;
        let json = to_json(family)?;
        let ttl = ttl_ms(family.expires_at(), family.created_at, conn.margin_ms);
        let mut keys = vec![conn.keys.subject(&family.subject)];
        let mut args = vec![
            family.id.to_string(),
            family.absolute_expires_at.to_string(),
            family.created_at.to_string(),
            conn.margin_ms.to_string(),
        ];
        if conn.clustered {
            // The family and the subject index are on different slots: two steps, the family
            // first. If the index fails the caller gets an error and hands out no token for
            // this family (which then expires unused).
            let created = conn
                .set_nx_px("create", conn.keys.family(&family.id), json, ttl)
                .await?;
            if !created {
                return Err(token_refresh::Error::FamilyExists);
            }
        } else {
            // One round trip: the script creates the family and indexes it.
            keys.push(conn.keys.family(&family.id));
            args.extend([json, ttl.to_string()]);
        }
        let reply = conn
            .eval("create", &self.inner.scripts.index, keys, args)
            .await?;
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(()),
            Some("exists") => Err(token_refresh::Error::FamilyExists),
            _ => Err(Error::unexpected(
                "create",
                "the index script answered neither ok nor exists",
            )
            .into()),
        }
    }

    async fn get_impl(&self, id: &FamilyId) -> Result<Option<Family>, token_refresh::Error> {
        let conn = &self.inner.conn;
        match conn.get("get", conn.keys.family(id)).await? {
            None => Ok(None),
            Some(json) => Ok(Some(parse_family("get", &json, id)?)),
        }
    }

    async fn rotate_impl(
        &self,
        req: &RotateRequest,
    ) -> Result<RotateOutcome, token_refresh::Error> {
        check_time(&[req.now, req.idle_ttl, req.grace.window, req.revocation_ttl])?;
        let args = RotateArgs {
            presented_hash: &req.presented_hash,
            client_id: &req.client_id,
            presented_jkt: req.presented_jkt.as_deref(),
            requested_scopes: req.requested_scopes.as_deref(),
            requested_audience: req.requested_audience.as_deref(),
            require_audience: req.require_audience,
            new_hash: &req.new_hash,
            sealed_successor: req.sealed_successor.as_ref(),
            now: req.now,
            idle_ttl: req.idle_ttl,
            grace_window: req.grace.window,
            grace_max_uses: req.grace.max_uses,
            revocation_ttl: req.revocation_ttl,
        };
        let conn = &self.inner.conn;
        let reply = conn
            .eval(
                "rotate",
                &self.inner.scripts.rotate,
                vec![
                    conn.keys.family(&req.family_id),
                    conn.keys.revoked(&req.family_id),
                ],
                vec![
                    to_json(&args)?,
                    conn.keys.channel(),
                    conn.margin_ms.to_string(),
                    token_refresh::MAX_ROTATED_HASHES.to_string(),
                ],
            )
            .await?;
        let family = |json: Option<&String>| -> Result<Family, Error> {
            let json = json.ok_or(Error::unexpected("rotate", "the new state is missing"))?;
            parse_family("rotate", json, &req.family_id)
        };
        let outcome = match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("rotated"), json) => RotateOutcome::Rotated(family(json)?),
            (Some("grace_retry"), json) => {
                let family = family(json)?;
                let sealed_successor = family
                    .grace
                    .as_ref()
                    .map(|g| g.sealed_successor.clone())
                    .ok_or(Error::unexpected(
                        "rotate",
                        "a grace retry without grace state",
                    ))?;
                RotateOutcome::GraceRetry {
                    family,
                    sealed_successor,
                }
            }
            (Some("reuse"), json) => RotateOutcome::Reuse(family(json)?),
            (Some("forged"), None) => RotateOutcome::Forged,
            (Some("revoked"), None) => RotateOutcome::Revoked,
            (Some("expired"), None) => RotateOutcome::Expired,
            (Some("dpop_mismatch"), None) => RotateOutcome::DpopMismatch,
            (Some("scope_exceeded"), None) => RotateOutcome::ScopeExceeded,
            (Some("audience_exceeded"), None) => RotateOutcome::AudienceExceeded,
            (Some("client_mismatch"), None) => RotateOutcome::ClientMismatch,
            (Some("not_found"), None) => RotateOutcome::NotFound,
            _ => return Err(Error::unexpected("rotate", "unknown outcome").into()),
        };
        Ok(outcome)
    }

    async fn revoke_impl(
        &self,
        id: &FamilyId,
        presented_hash: Option<&TokenHash>,
        subject: Option<&str>,
        req: &RevokeRequest,
    ) -> Result<RevokeOutcome, token_refresh::Error> {
        check_time(&[req.now, req.revocation_ttl])?;
        let args = RevokeArgs {
            family_id: id,
            presented_hash,
            client_id: req.client_id.as_deref(),
            reason: req.reason,
            now: req.now,
            revocation_ttl: req.revocation_ttl,
            subject,
        };
        let conn = &self.inner.conn;
        let reply = conn
            .eval(
                "revoke",
                &self.inner.scripts.revoke,
                vec![conn.keys.family(id), conn.keys.revoked(id)],
                vec![
                    to_json(&args)?,
                    conn.keys.channel(),
                    conn.margin_ms.to_string(),
                ],
            )
            .await?;
        let outcome = match (reply.first().map(String::as_str), reply.get(1)) {
            (Some("revoked"), Some(json)) => {
                RevokeOutcome::Revoked(parse_family("revoke", json, id)?)
            }
            (Some("already_revoked"), None) => RevokeOutcome::AlreadyRevoked,
            (Some("forged"), None) => RevokeOutcome::Forged,
            (Some("client_mismatch"), None) => RevokeOutcome::ClientMismatch,
            (Some("not_found"), None) => RevokeOutcome::NotFound,
            (Some("tombstoned"), Some(json)) => {
                let entry = RevocationEvent::from_json(json.as_bytes()).map_err(|_| {
                    Error::unexpected("revoke", "a tombstone entry does not decode")
                })?;
                if entry.family_id != *id {
                    return Err(
                        Error::unexpected("revoke", "a tombstone entry has another id").into(),
                    );
                }
                RevokeOutcome::Tombstoned(entry)
            }
            _ => return Err(Error::unexpected("revoke", "unknown outcome").into()),
        };
        Ok(outcome)
    }

    async fn families_of_impl(&self, subject: &str) -> Result<Vec<FamilyId>, token_refresh::Error> {
        use fred::interfaces::SortedSetsInterface;
        let conn = &self.inner.conn;
        let key = conn.keys.subject(subject);
        let ids: Vec<String> = conn
            .timed("families_of", async {
                conn.client()
                    .zrange::<Vec<String>, _, _, _>(key, 0, -1, None, false, None, false)
                    .await
                    .map_err(|e| Error::command("families_of", e))
            })
            .await?;
        ids.iter()
            .map(|id| {
                FamilyId::parse(id).map_err(|_| {
                    Error::unexpected("families_of", "a subject index entry is not a family id")
                        .into()
                })
            })
            .collect()
    }

    async fn revoke_subject_impl(
        &self,
        subject: &str,
        req: &RevokeRequest,
    ) -> Result<usize, token_refresh::Error> {
        let mut count = 0usize;
        for id in self.families_of_impl(subject).await? {
            if let RevokeOutcome::Revoked(_) =
                self.revoke_impl(&id, None, Some(subject), req).await?
            {
                count = count.saturating_add(1);
            }
        }
        Ok(count)
    }

    async fn is_revoked_impl(&self, id: &FamilyId, now: i64) -> Result<bool, token_refresh::Error> {
        let conn = &self.inner.conn;
        match conn.get("is_revoked", conn.keys.revoked(id)).await? {
            None => Ok(false),
            Some(json) => {
                let event = RevocationEvent::from_json(json.as_bytes()).map_err(|_| {
                    Error::unexpected("is_revoked", "a revocation entry does not decode")
                })?;
                if event.family_id != *id {
                    return Err(Error::unexpected(
                        "is_revoked",
                        "a revocation entry has another id",
                    )
                    .into());
                }
                Ok(event.is_listed(now))
            }
        }
    }
}

#[cfg(feature = "refresh")]
impl FamilyStore for RedisStore {
    fn create<'a>(&'a self, family: &'a Family) -> StoreFuture<'a, ()> {
        Box::pin(self.create_impl(family))
    }

    fn get<'a>(&'a self, family_id: &'a FamilyId) -> StoreFuture<'a, Option<Family>> {
        Box::pin(self.get_impl(family_id))
    }

    fn rotate<'a>(&'a self, req: &'a RotateRequest) -> StoreFuture<'a, RotateOutcome> {
        Box::pin(self.rotate_impl(req))
    }

    fn revoke_family<'a>(
        &'a self,
        family_id: &'a FamilyId,
        presented_hash: Option<&'a TokenHash>,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, RevokeOutcome> {
        Box::pin(self.revoke_impl(family_id, presented_hash, None, req))
    }

    fn families_of<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Vec<FamilyId>> {
        Box::pin(self.families_of_impl(subject))
    }

    /// Walks the subject's index family by family, each revocation one atomic script (no
    /// cross-slot transaction); a family whose stored subject differs is skipped, and one
    /// whose document has expired gets a tombstone (the index keeps its id until the family's
    /// absolute expiry plus the TTL margin).
    fn revoke_subject<'a>(
        &'a self,
        subject: &'a str,
        req: &'a RevokeRequest,
    ) -> StoreFuture<'a, usize> {
        Box::pin(self.revoke_subject_impl(subject, req))
    }
}

#[cfg(feature = "refresh")]
impl RevocationList for RedisStore {
    fn is_revoked<'a>(&'a self, family_id: &'a FamilyId, now: i64) -> StoreFuture<'a, bool> {
        Box::pin(self.is_revoked_impl(family_id, now))
    }

    fn revoked<'a>(&'a self, now: i64) -> StoreFuture<'a, Vec<RevocationEvent>> {
        Box::pin(async move {
            let all = crate::events::all_revocations(&self.inner.conn).await?;
            Ok(all.into_iter().filter(|e| e.is_listed(now)).collect())
        })
    }

    /// Events from every instance sharing this Redis (pub/sub), and after each reconnect of
    /// the subscriber connection the whole list again (at-least-once delivery).
    fn subscribe(&self) -> RevocationSubscription {
        self.inner.events.subscribe()
    }
}
