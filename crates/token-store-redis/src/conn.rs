//! The shared command connections: a fred pool, the Lua scripts (loaded on every primary,
//! reloaded on `NOSCRIPT`), key names and timeouts.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tracing::Instrument as _;

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, ClusterInterface, EventInterface, KeysInterface, LuaInterface};
use fred::types::config::Server;
use fred::types::{Builder, Expiration, InfoKind, SetOptions};

use crate::config::RedisConfig;
use crate::error::Error;

/// Longest TTL this crate ever sets, in milliseconds (ten years): keeps every `PX` argument an
/// exact integer, also inside Lua.
pub(crate) const MAX_TTL_MS: i64 = 315_360_000_000;

/// A Lua script and its SHA-1 (the `EVALSHA` name).
#[derive(Debug)]
pub(crate) struct LuaScript {
    pub(crate) lua: &'static str,
    #[cfg_attr(
        not(any(feature = "refresh", feature = "keys")),
        allow(dead_code, reason = "only the `refresh` and `keys` scripts are run")
    )]
    pub(crate) sha: String,
}

#[cfg(any(feature = "refresh", feature = "keys"))]
impl LuaScript {
    pub(crate) fn new(lua: &'static str) -> Self {
        LuaScript {
            lua,
            sha: fred::util::sha1_hash(lua),
        }
    }
}

/// Key names. Everything about one family shares the hash tag `{<family id>}`, so a script
/// over the family and its revocation entry runs on one Cluster slot.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The family document: `<prefix>f:{<id>}`.
    #[cfg(feature = "refresh")]
    pub(crate) fn family(&self, id: &token_refresh::FamilyId) -> String {
        format!("{}f:{{{id}}}", self.prefix)
    }

    /// The family's revocation-list entry: `<prefix>r:{<id>}`.
    #[cfg(feature = "refresh")]
    pub(crate) fn revoked(&self, id: &token_refresh::FamilyId) -> String {
        format!("{}r:{{{id}}}", self.prefix)
    }

    /// `SCAN MATCH` pattern of every revocation-list entry (the prefix's glob characters
    /// escaped).
    #[cfg(feature = "refresh")]
    pub(crate) fn revoked_pattern(&self) -> String {
        let mut out = String::with_capacity(self.prefix.len() + 4);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("r:*");
        out
    }

    /// The subject's index of families (its own slot): `<prefix>s:<subject>`.
    #[cfg(feature = "refresh")]
    pub(crate) fn subject(&self, subject: &str) -> String {
        format!("{}s:{subject}", self.prefix)
    }

    /// A subscriber's private probe channel: `<prefix>probe:<random>`.
    #[cfg(any(feature = "refresh", feature = "keys"))]
    pub(crate) fn probe(&self, nonce: &str) -> String {
        format!("{}probe:{nonce}", self.prefix)
    }

    /// The revocation event channel: `<prefix>revocations`.
    #[cfg(feature = "refresh")]
    pub(crate) fn channel(&self) -> String {
        format!("{}revocations", self.prefix)
    }

    /// The managed keys (token-kms `KeyStore`), one hash: `<prefix>keys`. A single key is on
    /// one Cluster slot by itself: no hash tag needed.
    #[cfg(feature = "keys")]
    pub(crate) fn managed_keys(&self) -> String {
        format!("{}keys", self.prefix)
    }

    /// The channel that signals a write to the managed keys: `<prefix>keys-changed`.
    #[cfg(feature = "keys")]
    pub(crate) fn managed_keys_channel(&self) -> String {
        format!("{}keys-changed", self.prefix)
    }

    /// A DPoP replay entry: `<prefix>dpop:<hex>`.
    #[cfg(feature = "dpop")]
    pub(crate) fn replay(&self, key: &token_dpop::ReplayKey) -> String {
        format!("{}dpop:{}", self.prefix, key.to_hex())
    }
}

/// The command side: a pool of multiplexed connections.
pub(crate) struct Conn {
    pub(crate) pool: Pool,
    pub(crate) keys: Keys,
    pub(crate) clustered: bool,
    /// Deadline of one whole operation (a script call may need `EVALSHA`, `SCRIPT LOAD`,
    /// `EVALSHA`); each command has the command timeout on its own too.
    op_timeout: Duration,
    pub(crate) margin_ms: i64,
    /// The `maxmemory-policy` of a primary that may evict keys, as last read (at connect and
    /// after every reconnect): while set, every operation fails closed.
    evicting: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("pool_size", &self.pool.size())
            .field("clustered", &self.clustered)
            .finish_non_exhaustive()
    }
}

/// A fred builder for `config` (the password stays inside fred's config).
pub(crate) fn builder(config: &RedisConfig) -> Result<Builder, Error> {
    let mut builder = Builder::from_config(config.fred_config()?);
    builder
        .set_performance_config(config.fred_performance())
        .set_connection_config(config.fred_connection());
    if let Some(policy) = config.reconnect().to_fred() {
        builder.set_policy(policy);
    }
    Ok(builder)
}

impl Conn {
    /// Connects the pool and loads `scripts` on every primary.
    pub(crate) async fn connect(
        config: &RedisConfig,
        scripts: &[&LuaScript],
    ) -> Result<Self, Error> {
        let pool = builder(config)?
            .build_pool(config.pool_size())
            .map_err(|e| Error::Connect {
                reason: "building the client pool",
                source: Box::new(e),
            })?;
        let connected = tokio::time::timeout(config.connect_timeout(), pool.init()).await;
        match connected {
            Ok(Ok(_task)) => {}
            Ok(Err(e)) => {
                let _ = pool.quit().await;
                return Err(Error::Connect {
                    reason: "connecting",
                    source: Box::new(e),
                });
            }
            Err(_) => {
                let _ = pool.quit().await;
                return Err(Error::Connect {
                    reason: "connecting",
                    source: "the connection timed out".into(),
                });
            }
        }
        let conn = Conn {
            clustered: pool.next().is_clustered(),
            pool,
            keys: Keys::new(config.key_prefix()),
            op_timeout: config
                .command_timeout()
                .saturating_mul(3)
                .saturating_add(Duration::from_millis(100)),
            margin_ms: i64::try_from(config.ttl_margin_ms())
                .unwrap_or(MAX_TTL_MS)
                .min(MAX_TTL_MS),
            evicting: Arc::new(Mutex::new(None)),
        };
        // Every key this crate writes has a TTL, so a `volatile-*` or `allkeys-*` policy
        // could evict revocations, rotated-token history or replay entries under memory
        // pressure, and revoked or replayed tokens would work again.
        let policy = match conn
            .timed("info", eviction_policy(conn.client(), conn.clustered))
            .await
        {
            Ok(policy) => policy,
            Err(e) => {
                let _ = conn.pool.quit().await;
                return Err(Error::Connect {
                    reason: "reading maxmemory_policy from INFO memory",
                    source: Box::new(e),
                });
            }
        };
        if let Some(policy) = policy {
            let _ = conn.pool.quit().await;
            return Err(Error::EvictionPolicy { policy });
        }
        for client in conn.pool.clients() {
            let checker = client.clone();
            let clustered = conn.clustered;
            let evicting = Arc::clone(&conn.evicting);
            let timeout = conn.op_timeout;
            // Errors end fred's listener task, so none is returned: a failed check keeps the
            // last answer and the next reconnect checks again.
            let _listener = client.on_reconnect(move |_server| {
                let checker = checker.clone();
                let evicting = Arc::clone(&evicting);
                async move {
                    let read = tokio::time::timeout(timeout, eviction_policy(&checker, clustered));
                    if let Ok(Ok(policy)) = read.await {
                        *evicting.lock().unwrap_or_else(PoisonError::into_inner) = policy;
                    }
                    Ok(())
                }
            });
        }
        for script in scripts {
            if let Err(e) = conn
                .pool
                .next()
                .script_load_cluster::<String, _>(script.lua)
                .await
            {
                let _ = conn.pool.quit().await;
                return Err(Error::Connect {
                    reason: "loading the Lua scripts",
                    source: Box::new(e),
                });
            }
        }
        Ok(conn)
    }

    /// The eviction policy found by the last check, while it is not `noeviction`.
    pub(crate) fn eviction_policy(&self) -> Option<String> {
        self.evicting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `fut` under the operation deadline; refuses to while Redis may evict keys.
    pub(crate) async fn timed<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        if let Some(policy) = self.eviction_policy() {
            return Err(Error::EvictionPolicy { policy });
        }
        // One span per round trip (a NOSCRIPT reload and retry included), at DEBUG: disabled
        // at this call site unless a subscriber asks for it (the server's trace export does).
        let span = tracing::debug_span!(
            "redis",
            otel.name = op,
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = op,
            otel.status_code = tracing::field::Empty,
        );
        let result = match tokio::time::timeout(self.op_timeout, fut)
            .instrument(span.clone())
            .await
        {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { op }),
        };
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        result
    }

    /// The next pooled client, preferring connected ones.
    pub(crate) fn client(&self) -> &Client {
        self.pool.next_connected()
    }

    #[cfg(any(feature = "refresh", feature = "keys"))]
    /// `EVALSHA`, loading the script (on every primary) and retrying once on `NOSCRIPT`
    /// (after a server restart or `SCRIPT FLUSH`). Replies are lists of strings.
    pub(crate) async fn eval(
        &self,
        op: &'static str,
        script: &LuaScript,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Vec<String>, Error> {
        self.timed(op, async {
            let client = self.client();
            let first = client
                .evalsha::<Vec<String>, _, _, _>(script.sha.as_str(), keys.clone(), args.clone())
                .await;
            match first {
                Err(e) if e.details().starts_with("NOSCRIPT") => {
                    client
                        .script_load_cluster::<String, _>(script.lua)
                        .await
                        .map_err(|e| Error::command(op, e))?;
                    client
                        .evalsha::<Vec<String>, _, _, _>(script.sha.as_str(), keys, args)
                        .await
                        .map_err(|e| Error::command(op, e))
                }
                other => other.map_err(|e| Error::command(op, e)),
            }
        })
        .await
    }

    #[cfg(feature = "refresh")]
    /// `GET key`.
    pub(crate) async fn get(&self, op: &'static str, key: String) -> Result<Option<String>, Error> {
        self.timed(op, async {
            self.client()
                .get::<Option<String>, _>(key)
                .await
                .map_err(|e| Error::command(op, e))
        })
        .await
    }

    /// `SET key value NX PX ttl`: whether the key was set.
    pub(crate) async fn set_nx_px(
        &self,
        op: &'static str,
        key: String,
        value: String,
        ttl_ms: i64,
    ) -> Result<bool, Error> {
        let ttl_ms = ttl_ms.clamp(1, MAX_TTL_MS);
        self.timed(op, async {
            let reply = self
                .client()
                .set::<Option<String>, _, _>(
                    key,
                    value,
                    Some(Expiration::PX(ttl_ms)),
                    Some(SetOptions::NX),
                    false,
                )
                .await
                .map_err(|e| Error::command(op, e))?;
            match reply.as_deref() {
                None => Ok(false),
                Some("OK") => Ok(true),
                Some(_) => Err(Error::unexpected(op, "SET NX answered neither OK nor nil")),
            }
        })
        .await
    }

    /// Every key matching `pattern`, on every primary (`SCAN` page by page, each page under
    /// the command timeout).
    #[cfg(feature = "refresh")]
    pub(crate) async fn scan(&self, op: &'static str, pattern: &str) -> Result<Vec<String>, Error> {
        let client = self.client();
        let nodes = primaries(client, self.clustered, op)?;
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor = String::from("0");
            loop {
                let page = match &node {
                    Some(server) => {
                        client
                            .with_cluster_node(server.clone())
                            .scan_page::<(String, Vec<String>), _, _>(
                                cursor.as_str(),
                                pattern,
                                Some(1000),
                                None,
                            )
                            .await
                    }
                    None => {
                        client
                            .scan_page::<(String, Vec<String>), _, _>(
                                cursor.as_str(),
                                pattern,
                                Some(1000),
                                None,
                            )
                            .await
                    }
                };
                let (next, page) = page.map_err(|e| Error::command(op, e))?;
                keys.extend(page);
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// `PUBLISH channel message`.
    #[cfg(any(feature = "refresh", feature = "keys"))]
    pub(crate) async fn publish(
        &self,
        op: &'static str,
        channel: &str,
        message: &str,
    ) -> Result<(), Error> {
        use fred::interfaces::PubsubInterface;
        self.timed(op, async {
            self.client()
                .publish::<i64, _, _>(channel, message)
                .await
                .map(|_| ())
                .map_err(|e| Error::command(op, e))
        })
        .await
    }

    /// Closes every connection (best effort).
    pub(crate) async fn quit(&self) {
        let _ = self.pool.quit().await;
    }
}

#[cfg(all(test, feature = "refresh"))]
mod tests {
    use super::*;

    #[test]
    fn family_keys_share_a_slot_and_patterns_are_escaped() {
        let keys = Keys::new("app*[x]?\\:");
        for i in 0..200u8 {
            let id = token_refresh::FamilyId::from_bytes([i; 16]);
            let family = keys.family(&id);
            let revoked = keys.revoked(&id);
            assert_eq!(
                fred::util::redis_keyslot(family.as_bytes()),
                fred::util::redis_keyslot(revoked.as_bytes()),
                "{family} {revoked}"
            );
            assert!(family.ends_with(&format!("f:{{{id}}}")));
        }
        assert_eq!(keys.revoked_pattern(), "app\\*\\[x\\]\\?\\\\:r:*");
        assert_eq!(keys.channel(), "app*[x]?\\:revocations");
        assert_eq!(keys.subject("alice"), "app*[x]?\\:s:alice");
    }

    #[test]
    fn scripts_have_their_sha1() {
        let s = LuaScript::new("return 1");
        assert_eq!(s.sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}

/// The primaries to send a per-node command to: each primary of a Cluster (`Some`), or the
/// one server (`None`: the client's own routing).
fn primaries(
    client: &Client,
    clustered: bool,
    op: &'static str,
) -> Result<Vec<Option<Server>>, Error> {
    if clustered {
        let state = client
            .cached_cluster_state()
            .ok_or(Error::unexpected(op, "no cluster routing table"))?;
        Ok(state.unique_primary_nodes().into_iter().map(Some).collect())
    } else {
        Ok(vec![None])
    }
}

/// The `maxmemory_policy` of the first primary whose policy is not `noeviction`, read from
/// `INFO memory` (managed Redis often disables `CONFIG GET`); `None` when none may evict.
async fn eviction_policy(client: &Client, clustered: bool) -> Result<Option<String>, Error> {
    for node in primaries(client, clustered, "info")? {
        let info: String = match node {
            Some(server) => {
                client
                    .with_cluster_node(server)
                    .info(Some(InfoKind::Memory))
                    .await
            }
            None => client.info(Some(InfoKind::Memory)).await,
        }
        .map_err(|e| Error::command("info", e))?;
        let policy = info
            .lines()
            .find_map(|line| line.strip_prefix("maxmemory_policy:"))
            .map(str::trim)
            .ok_or(Error::unexpected(
                "info",
                "INFO memory has no maxmemory_policy",
            ))?;
        if policy != "noeviction" {
            return Ok(Some(policy.to_owned()));
        }
    }
    Ok(None)
}
