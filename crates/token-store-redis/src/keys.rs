//! token-kms's managed keys on Redis: [`KeyStore`] for [`RedisStore`].
//!
//! Every field lives in one hash, `<prefix>keys` (a single key: one Cluster slot, so every
//! operation is atomic on a Cluster too), and every write that changes it is signalled on
//! `<prefix>keys-changed`, inside the same script as the write. The store's pub/sub
//! subscriber (the connection that also carries revocation events) moves the change counter
//! of [`KeyStore::changes`] for every signal, the store's own included, and after every
//! confirmed (re)subscription, so a reconnect makes `ManagedKeys` re-read what it may have
//! missed.

use std::collections::BTreeMap;

use token_kms::managed::{KeyStore, KeyStoreFuture};
use tokio::sync::watch;

use crate::error::Error;
use crate::store::RedisStore;

/// A write by the script `lua/keys.lua`: its operation and arguments.
enum Write<'a> {
    InsertNew { field: &'a str, value: &'a str },
    Put { field: &'a str, value: &'a str },
    Remove { fields: &'a [String] },
}

impl Write<'_> {
    /// The operation name in errors.
    fn op(&self) -> &'static str {
        match self {
            Write::InsertNew { .. } => "keys_insert_new",
            Write::Put { .. } => "keys_put",
            Write::Remove { .. } => "keys_remove",
        }
    }

    /// `ARGV[2..]` of the script.
    fn args(&self) -> Vec<String> {
        match self {
            Write::InsertNew { field, value } => {
                vec![
                    "insert_new".to_owned(),
                    (*field).to_owned(),
                    (*value).to_owned(),
                ]
            }
            Write::Put { field, value } => {
                vec!["put".to_owned(), (*field).to_owned(), (*value).to_owned()]
            }
            Write::Remove { fields } => {
                let mut args = Vec::with_capacity(fields.len().saturating_add(1));
                args.push("remove".to_owned());
                args.extend(fields.iter().cloned());
                args
            }
        }
    }
}

impl RedisStore {
    /// `HGETALL <prefix>keys`, by field name.
    async fn load_keys(&self) -> Result<Vec<(String, String)>, Error> {
        use fred::interfaces::HashesInterface;
        let conn = &self.inner.conn;
        let key = conn.keys.managed_keys();
        let fields: BTreeMap<String, String> = conn
            .timed("keys_load", async {
                conn.client()
                    .hgetall::<BTreeMap<String, String>, _>(key)
                    .await
                    .map_err(|e| Error::command("keys_load", e))
            })
            .await?;
        Ok(fields.into_iter().collect())
    }

    /// One write and its signal (one `EVALSHA`); whether it changed the hash.
    async fn write_keys(&self, write: Write<'_>) -> Result<bool, Error> {
        let op = write.op();
        let conn = &self.inner.conn;
        let mut args = vec![conn.keys.managed_keys_channel()];
        args.extend(write.args());
        let reply = conn
            .eval(
                op,
                &self.inner.scripts.keys,
                vec![conn.keys.managed_keys()],
                args,
            )
            .await?;
        match reply.first().map(String::as_str) {
            Some("changed") => Ok(true),
            Some("unchanged") => Ok(false),
            _ => Err(Error::unexpected(op, "unknown outcome")),
        }
    }
}

/// The fleet's managed keys (token-kms [`ManagedKeys`](token_kms::managed::ManagedKeys)) in
/// the hash `<prefix>keys`, shared by every instance connected to this Redis with the same
/// key prefix.
///
/// | method | Redis commands |
/// | --- | --- |
/// | `load` | one `HGETALL` (fields sorted by name) |
/// | `insert_new` | one `EVALSHA`: `HSETNX`, and `PUBLISH` on `<prefix>keys-changed` when it set the field |
/// | `put` | one `EVALSHA`: `HSET` and `PUBLISH` |
/// | `remove` | one `EVALSHA`: `HDEL` of each field, and `PUBLISH` when one existed (nothing at all for no fields) |
/// | `changes` | none: the store's subscriber connection moves the counter |
///
/// The hash has no TTL: `ManagedKeys` deletes the fields of expired keys itself. As for every
/// operation of this crate, a failure (Redis unreachable, slower than the command timeout, an
/// eviction policy other than `noeviction`) is an error, never an empty answer, and a write
/// that fails wrote nothing (the write and its signal are one script). The change counter
/// moves for every signal (this store's own writes included) and after every confirmed
/// (re)subscription of the subscriber: after a reconnect, `ManagedKeys` re-reads what it may
/// have missed.
impl KeyStore for RedisStore {
    fn load(&self) -> KeyStoreFuture<'_, Vec<(String, String)>> {
        Box::pin(async move { Ok(self.load_keys().await?) })
    }

    fn insert_new<'a>(&'a self, field: &'a str, value: &'a str) -> KeyStoreFuture<'a, bool> {
        Box::pin(async move { Ok(self.write_keys(Write::InsertNew { field, value }).await?) })
    }

    fn put<'a>(&'a self, field: &'a str, value: &'a str) -> KeyStoreFuture<'a, ()> {
        Box::pin(async move {
            self.write_keys(Write::Put { field, value }).await?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, fields: &'a [String]) -> KeyStoreFuture<'a, ()> {
        Box::pin(async move {
            if !fields.is_empty() {
                self.write_keys(Write::Remove { fields }).await?;
            }
            Ok(())
        })
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.inner.keys_changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use crate::conn::Keys;

    #[test]
    fn managed_key_names() {
        let keys = Keys::new("app*:");
        assert_eq!(keys.managed_keys(), "app*:keys");
        assert_eq!(keys.managed_keys_channel(), "app*:keys-changed");
    }
}
