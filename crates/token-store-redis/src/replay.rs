//! token-dpop's [`ReplayCache`] on Redis: one `SET key 1 NX PX ttl` per proof.

use token_dpop::{ReplayCache, ReplayFuture, ReplayKey};

use crate::store::RedisStore;

impl ReplayCache for RedisStore {
    /// `SET <prefix>dpop:<hex> 1 NX PX <(expires_at - now) in ms + TTL margin>`: atomic
    /// across every instance sharing the Redis; the entry expires on its own. The margin
    /// ([`RedisConfigBuilder::ttl_margin`](crate::RedisConfigBuilder::ttl_margin), as for the
    /// family keys) absorbs clock skew: an instance whose clock is behind the one that saw the
    /// proof still finds its entry while it would accept the proof. An `expires_at` at or
    /// before `now` still records the key, for the margin (at least 1 ms: never a silent
    /// "first use" without a write).
    /// Any failure is [`ReplayError::Unavailable`](token_dpop::ReplayError::Unavailable): the
    /// validator then refuses the proof (fail closed).
    fn insert_if_absent<'a>(
        &'a self,
        key: &'a ReplayKey,
        expires_at: i64,
        now: i64,
    ) -> ReplayFuture<'a> {
        Box::pin(async move {
            let conn = &self.inner.conn;
            let ttl_ms = expires_at
                .saturating_sub(now)
                .max(0)
                .saturating_mul(1000)
                .saturating_add(conn.margin_ms);
            Ok(conn
                .set_nx_px("replay", conn.keys.replay(key), String::from("1"), ttl_ms)
                .await?)
        })
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
