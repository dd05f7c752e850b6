//! The store seam of managed keys, and its single-instance implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};

use tokio::sync::watch;

use crate::error::Result;

/// The future every [`KeyStore`] method returns.
pub type KeyStoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Where a fleet keeps its managed keys: a small map of fields to opaque values (a Redis hash,
/// say), shared by every instance.
///
/// [`ManagedKeys`](super::ManagedKeys) stores one field per key generation (its
/// [`KeyRecord`](super::KeyRecord) as JSON, private key wrapped), one per emergency
/// retirement, and the key-encryption key's check value. Implementations need no knowledge of
/// these values, only:
///
/// - [`KeyStore::insert_new`] must be atomic: of two instances inserting the same field, one
///   succeeds and the other learns that it lost (this is how exactly one instance creates each
///   next key);
/// - every write is signalled to every instance through [`KeyStore::changes`] (pub/sub);
///   instances also re-read periodically, so a lost signal only delays them;
/// - failures are errors, never an empty answer: an instance that cannot read keeps what it
///   has (the current key keeps signing) and creates nothing.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Every field and its value.
    fn load(&self) -> KeyStoreFuture<'_, Vec<(String, String)>>;

    /// Sets `field` to `value` unless the field exists; `true` when this call set it.
    fn insert_new<'a>(&'a self, field: &'a str, value: &'a str) -> KeyStoreFuture<'a, bool>;

    /// Sets `field` to `value`, replacing any value.
    fn put<'a>(&'a self, field: &'a str, value: &'a str) -> KeyStoreFuture<'a, ()>;

    /// Deletes these fields (absent ones are ignored).
    fn remove<'a>(&'a self, fields: &'a [String]) -> KeyStoreFuture<'a, ()>;

    /// A counter that moves whenever some instance wrote (as far as the store can tell).
    fn changes(&self) -> watch::Receiver<u64>;
}

/// The in-memory [`KeyStore`]: the keys of a single instance, lost when it exits.
#[derive(Debug)]
pub struct MemoryKeyStore {
    fields: Mutex<BTreeMap<String, String>>,
    changed: watch::Sender<u64>,
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        MemoryKeyStore {
            fields: Mutex::new(BTreeMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

impl MemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn write<T>(&self, f: impl FnOnce(&mut BTreeMap<String, String>) -> T) -> T {
        let out = f(&mut self.fields.lock().unwrap_or_else(PoisonError::into_inner));
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        out
    }
}

impl KeyStore for MemoryKeyStore {
    fn load(&self) -> KeyStoreFuture<'_, Vec<(String, String)>> {
        let all = self
            .fields
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Box::pin(async move { Ok(all) })
    }

    fn insert_new<'a>(&'a self, field: &'a str, value: &'a str) -> KeyStoreFuture<'a, bool> {
        let set = self.write(|m| {
            if m.contains_key(field) {
                false
            } else {
                m.insert(field.to_owned(), value.to_owned());
                true
            }
        });
        Box::pin(async move { Ok(set) })
    }

    fn put<'a>(&'a self, field: &'a str, value: &'a str) -> KeyStoreFuture<'a, ()> {
        self.write(|m| m.insert(field.to_owned(), value.to_owned()));
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, fields: &'a [String]) -> KeyStoreFuture<'a, ()> {
        self.write(|m| fields.iter().for_each(|f| drop(m.remove(f))));
        Box::pin(async { Ok(()) })
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
