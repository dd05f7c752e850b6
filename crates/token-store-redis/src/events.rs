//! The pub/sub subscriber: one dedicated connection feeding the local revocation broadcaster
//! (feature `refresh`) and the managed keys' change counter (feature `keys`).
//!
//! On every reconnect (and whenever the local message buffer overflowed) it subscribes again
//! and then re-reads the whole revocation list (`SCAN` on every primary), publishing each
//! entry locally: a revocation made while the connection was down is delivered late, never
//! lost. Subscribing *before* re-reading closes the gap: an entry written before the
//! subscription is found by the scan, one written after it arrives as a message. The managed
//! keys are re-read by their owner (token-kms `ManagedKeys::sync`): the change counter moves
//! after every confirmed (re)subscription, as it does for every message on their channel.
//!
//! "Subscribed" means confirmed by the server, not merely sent: the client library resolves
//! `SUBSCRIBE` before Redis has processed it. So the subscriber also subscribes to a private
//! probe channel (in the same command, after the revocation channel) and publishes a random
//! token on it through the command pool until the token comes back on the subscriber
//! connection. Only then does `connect` return, or a re-read start.
//!
//! A re-read delivers only families not delivered before (the subscriber remembers the last
//! 65,536 it delivered), so a reconnect that lost nothing repeats nothing.

#[cfg(feature = "refresh")]
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
#[cfg(feature = "refresh")]
use token_refresh::{FamilyId, RevocationBroadcaster, RevocationEvent};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::config::RedisConfig;
use crate::conn::Conn;
use crate::error::Error;

const MIN_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(2);
/// How long a probe token may take to come back before it is published again.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// How long a subscription may take to be confirmed before the attempt counts as failed.
const PROBE_DEADLINE: Duration = Duration::from_secs(2);

/// A random token (std's randomly keyed hasher: no extra dependency; uniqueness is all that
/// matters here).
fn nonce() -> String {
    let a = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let b = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{a:016x}{b:016x}")
}

/// Where the subscriber delivers what it receives.
pub(crate) struct Sinks {
    /// Revocation events.
    #[cfg(feature = "refresh")]
    pub(crate) revocations: RevocationBroadcaster,
    /// The managed keys' change counter.
    #[cfg(feature = "keys")]
    pub(crate) keys_changed: tokio::sync::watch::Sender<u64>,
}

pub(crate) struct Subscriber {
    client: Client,
    task: JoinHandle<()>,
    resyncs: Arc<AtomicU64>,
}

impl Subscriber {
    /// Connects, subscribes (confirmed by the server) and starts the listening task.
    pub(crate) async fn start(
        config: &RedisConfig,
        conn: Arc<Conn>,
        sinks: Sinks,
    ) -> Result<Self, Error> {
        let client = crate::conn::builder(config)?
            .build()
            .map_err(|e| Error::Connect {
                reason: "building the subscriber",
                source: Box::new(e),
            })?;
        // Taken before connecting, so nothing is missed.
        let messages = client.message_rx();
        let mut listener = Listener {
            client: client.clone(),
            #[cfg(feature = "refresh")]
            channel: conn.keys.channel(),
            #[cfg(feature = "keys")]
            keys_channel: conn.keys.managed_keys_channel(),
            probe: conn.keys.probe(&nonce()),
            conn,
            sinks,
            resyncs: Arc::new(AtomicU64::new(0)),
            #[cfg(feature = "refresh")]
            seen: Seen::default(),
            messages,
            reconnects: client.reconnect_rx(),
        };
        let setup = async {
            client.init().await.map_err(|e| Error::Connect {
                reason: SUBSCRIBING,
                source: Box::new(e),
            })?;
            listener.subscribe().await
        };
        match tokio::time::timeout(config.connect_timeout(), setup).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = client.quit().await;
                return Err(match e {
                    e @ Error::Connect { .. } => e,
                    e => Error::Connect {
                        reason: SUBSCRIBING,
                        source: Box::new(e),
                    },
                });
            }
            Err(_) => {
                let _ = client.quit().await;
                return Err(Error::Connect {
                    reason: SUBSCRIBING,
                    source: "the connection timed out".into(),
                });
            }
        }
        // The first connection's own "reconnect" notifications: nothing was missed yet.
        while listener.reconnects.try_recv().is_ok() {}
        let resyncs = listener.resyncs.clone();
        let task = tokio::spawn(run(listener));
        Ok(Subscriber {
            client,
            task,
            resyncs,
        })
    }

    /// How many times the subscriber resubscribed (and re-read the revocation list) after a
    /// reconnect or an overflow.
    pub(crate) fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Stops listening and closes the connection in the background.
    pub(crate) fn stop(&self) {
        self.task.abort();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let client = self.client.clone();
            handle.spawn(async move {
                let _ = client.quit().await;
            });
        }
    }

    /// Stops listening and closes the connection.
    pub(crate) async fn close(&self) {
        self.task.abort();
        let _ = self.client.quit().await;
    }
}

/// What a failed subscription at connect time reports.
const SUBSCRIBING: &str = if cfg!(feature = "refresh") {
    "subscribing to revocation events"
} else {
    "subscribing to managed key changes"
};

struct Listener {
    client: Client,
    conn: Arc<Conn>,
    /// The revocation event channel.
    #[cfg(feature = "refresh")]
    channel: String,
    /// The managed keys' change channel.
    #[cfg(feature = "keys")]
    keys_channel: String,
    /// This subscriber's private probe channel.
    probe: String,
    sinks: Sinks,
    resyncs: Arc<AtomicU64>,
    /// Listings already delivered, so a re-read repeats none of them.
    #[cfg(feature = "refresh")]
    seen: Seen,
    messages: Receiver<fred::types::Message>,
    reconnects: Receiver<fred::types::config::Server>,
}

/// The most recently delivered listings, as (family id, `revoked_at`), at most
/// [`SEEN_CAPACITY`]; older ones are forgotten first and may then be delivered again by a
/// re-read (delivery stays at least once). The id alone would not do: a family forgotten by
/// the store is listed again (a new tombstone, a later `revoked_at`) once its entry lapsed,
/// and that listing must reach subscribers that dropped the first one.
#[cfg(feature = "refresh")]
#[derive(Default)]
struct Seen {
    ids: HashSet<(FamilyId, i64)>,
    order: VecDeque<(FamilyId, i64)>,
}

/// How many delivered listings a subscriber remembers (24 bytes each).
#[cfg(feature = "refresh")]
const SEEN_CAPACITY: usize = 65_536;

#[cfg(feature = "refresh")]
impl Seen {
    /// Records a listing; whether it is new.
    fn insert(&mut self, id: (FamilyId, i64)) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }
}

impl Listener {
    /// Delivers `event` locally unless it was delivered before.
    #[cfg(feature = "refresh")]
    fn deliver(&mut self, event: RevocationEvent) {
        if self.seen.insert((event.family_id, event.revoked_at)) {
            self.sinks.revocations.publish(event);
        }
    }

    /// Moves the managed keys' change counter: their owner re-reads them.
    #[cfg(feature = "keys")]
    fn keys_changed(&self) {
        self.sinks
            .keys_changed
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Forwards a revocation message to the local subscribers, and a managed-key change
    /// signal (whatever its payload) to the change counter; ignores anything else.
    fn forward(&mut self, message: &fred::types::Message) {
        #[cfg(feature = "refresh")]
        if message.channel.as_bytes() == self.channel.as_bytes()
            && let Some(bytes) = message.value.as_bytes()
            && let Ok(event) = RevocationEvent::from_json(bytes)
        {
            self.deliver(event);
        }
        #[cfg(feature = "keys")]
        if message.channel.as_bytes() == self.keys_channel.as_bytes() {
            self.keys_changed();
        }
    }

    /// Subscribes to the revocation, managed-key and probe channels and waits until the
    /// server confirms it: a token published on the probe channel comes back. Messages that
    /// arrive meanwhile are forwarded. Once confirmed, the managed keys' change counter moves
    /// (a signal may have been missed before: their owner re-reads them).
    async fn subscribe(&mut self) -> Result<(), Error> {
        self.subscribe_confirmed().await?;
        #[cfg(feature = "keys")]
        self.keys_changed();
        Ok(())
    }

    async fn subscribe_confirmed(&mut self) -> Result<(), Error> {
        let channels = vec![
            #[cfg(feature = "refresh")]
            self.channel.as_str(),
            #[cfg(feature = "keys")]
            self.keys_channel.as_str(),
            // Last: its confirmation implies the others'.
            self.probe.as_str(),
        ];
        self.client
            .subscribe(channels)
            .await
            .map_err(|e| Error::command("subscribe", e))?;
        let token = nonce();
        let deadline = tokio::time::Instant::now() + PROBE_DEADLINE;
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout { op: "subscribe" });
            }
            self.conn.publish("subscribe", &self.probe, &token).await?;
            let wait = tokio::time::sleep(PROBE_INTERVAL);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    m = self.messages.recv() => match m {
                        Ok(message) => {
                            if message.channel.as_bytes() == self.probe.as_bytes() {
                                if message.value.as_bytes() == Some(token.as_bytes()) {
                                    return Ok(());
                                }
                            } else {
                                self.forward(&message);
                            }
                        }
                        // A re-read follows a confirmed subscription anyway.
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => {
                            return Err(Error::unexpected("subscribe", "the subscriber closed"));
                        }
                    },
                    () = &mut wait => break,
                }
            }
        }
    }
}

async fn run(mut l: Listener) {
    // A resubscribe + re-read is due; retried with backoff until it succeeds.
    let mut pending = false;
    let mut retry = Duration::ZERO;
    loop {
        tokio::select! {
            biased;
            r = l.reconnects.recv() => match r {
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    pending = true;
                    retry = Duration::ZERO;
                }
                Err(RecvError::Closed) => break,
            },
            m = l.messages.recv() => match m {
                Ok(message) => l.forward(&message),
                // Messages were dropped locally: re-read the list.
                Err(RecvError::Lagged(_)) => {
                    pending = true;
                    retry = Duration::ZERO;
                }
                Err(RecvError::Closed) => break,
            },
            () = tokio::time::sleep(retry), if pending => {
                match resync(&mut l).await {
                    Ok(()) => {
                        pending = false;
                        l.resyncs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => retry = (retry * 2).clamp(MIN_RETRY, MAX_RETRY),
                }
            }
        }
    }
}

/// Subscribes again (idempotent, confirmed by the server; moves the managed keys' change
/// counter), then publishes every entry of the revocation list locally.
async fn resync(l: &mut Listener) -> Result<(), Error> {
    l.subscribe().await?;
    #[cfg(feature = "refresh")]
    for event in all_revocations(&l.conn).await? {
        l.deliver(event);
    }
    Ok(())
}

/// Every revocation-list entry Redis still holds, lapsed or not.
#[cfg(feature = "refresh")]
pub(crate) async fn all_revocations(conn: &Conn) -> Result<Vec<RevocationEvent>, Error> {
    use futures_util::{StreamExt, TryStreamExt};
    let keys = conn.scan("revoked", &conn.keys.revoked_pattern()).await?;
    let values: Vec<Option<String>> = futures_util::stream::iter(keys)
        .map(|key| conn.get("revoked", key))
        .buffer_unordered(64)
        .try_collect()
        .await?;
    values
        .into_iter()
        .flatten()
        .map(|json| {
            RevocationEvent::from_json(json.as_bytes())
                .map_err(|_| Error::unexpected("revoked", "a revocation entry does not decode"))
        })
        .collect()
}
