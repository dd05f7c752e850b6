//! `WatchRevocations`: the revocation list streamed to resource servers.
//!
//! A stream opened without a cursor first sends every family listed now, then each new
//! revocation as the store announces it (from any instance: the store's events are pub/sub on
//! Redis). Each event carries a cursor, its revocation time; a stream resumed with a cursor is
//! sent the listed families revoked since [`CURSOR_OVERLAP`] before it (instances' clocks
//! differ), then the live events: nothing revoked while the client was away is missed, and a
//! repeat is harmless to the client (it keeps the later `listed_until`). A subscriber that
//! falls behind the store's event channel re-reads the whole list. Streams end when the server
//! shuts down, so they never hold up the drain.
//!
//! Where this sits: [`crate::service`] answers the RPC with [`stream`]; the store is the
//! `token-refresh` [`RevocationList`] the rest of the server uses.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use token_refresh::{RevocationList, RevocationSubscription};
use tokio::sync::watch;
use tonic::Status;

use crate::clock::now;
use crate::status::invalid_request;

/// How far before a resumed stream's cursor the list is sent again, in seconds: more than the
/// clock skew between instances.
pub const CURSOR_OVERLAP: i64 = 300;

/// The cursor's prefix (its version).
const CURSOR_PREFIX: &str = "v1.";

/// The stream of [`token_proto::RevocationEvent`]s.
pub type EventStream =
    Pin<Box<dyn futures_util::Stream<Item = Result<token_proto::RevocationEvent, Status>> + Send>>;

/// The revocation time a cursor names (`None` for the empty cursor).
///
/// # Errors
/// `INVALID_ARGUMENT` for a cursor this server did not make.
pub fn parse_cursor(cursor: &str) -> Result<Option<i64>, Status> {
    if cursor.is_empty() {
        return Ok(None);
    }
    cursor
        .strip_prefix(CURSOR_PREFIX)
        .filter(|n| n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            invalid_request("cursor is not one this service sent; start again with an empty one")
        })
}

fn to_proto(event: &token_refresh::RevocationEvent) -> token_proto::RevocationEvent {
    token_proto::RevocationEvent {
        sid: event.family_id.to_string(),
        listed_until: event.listed_until,
        cursor: format!("{CURSOR_PREFIX}{}", event.revoked_at.max(0)),
    }
}

struct Watch {
    pending: VecDeque<token_refresh::RevocationEvent>,
    subscription: RevocationSubscription,
    revocations: Arc<dyn RevocationList>,
    shutdown: watch::Receiver<bool>,
    ended: bool,
}

impl Watch {
    /// The listed families (revoked at or after `since`, when given) into `pending`.
    async fn read_list(&mut self, since: Option<i64>) -> Result<(), Status> {
        let listed = self
            .revocations
            .revoked(now())
            .await
            .map_err(|e| crate::status::refresh(&e))?;
        self.pending.extend(
            listed
                .into_iter()
                .filter(|e| since.is_none_or(|s| e.revoked_at >= s.saturating_sub(CURSOR_OVERLAP))),
        );
        Ok(())
    }

    /// The next event to send, `None` at shutdown or after an error was sent.
    async fn next(&mut self) -> Option<Result<token_proto::RevocationEvent, Status>> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(to_proto(&event)));
            }
            let received = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|stop| *stop) => return None,
                received = self.subscription.recv() => received,
            };
            match received {
                Ok(event) => {
                    if event.is_listed(now()) {
                        metrics::counter!(crate::metrics::REVOCATIONS_STREAMED).increment(1);
                        return Some(Ok(to_proto(&event)));
                    }
                }
                Err(token_refresh::Error::SubscriptionLagged { .. }) => {
                    // Events were dropped for this subscriber: the whole list again.
                    if let Err(status) = self.read_list(None).await {
                        self.ended = true;
                        return Some(Err(status));
                    }
                }
                Err(_) => {
                    self.ended = true;
                    return Some(Err(Status::unavailable(
                        "the revocation events ended; reconnect with the last cursor",
                    )));
                }
            }
        }
    }
}

/// The stream for one `WatchRevocations` request resuming after `since` (see the module doc).
///
/// # Errors
/// The store's status when the list cannot be read.
pub async fn stream(
    revocations: Arc<dyn RevocationList>,
    since: Option<i64>,
    shutdown: watch::Receiver<bool>,
) -> Result<EventStream, Status> {
    // Subscribed before the list is read: a revocation between the two is sent twice, never
    // missed.
    let subscription = revocations.subscribe();
    let mut watch = Watch {
        pending: VecDeque::new(),
        subscription,
        revocations,
        shutdown,
        ended: false,
    };
    watch.read_list(since).await?;
    let watchers = metrics::gauge!(crate::metrics::REVOCATION_WATCHERS);
    watchers.increment(1.0);
    let guard = WatcherGuard(watchers);
    Ok(Box::pin(futures_util::stream::unfold(
        (watch, guard),
        |(mut watch, guard)| async move {
            let item = watch.next().await?;
            Some((item, (watch, guard)))
        },
    )))
}

/// Counts a live stream in [`crate::metrics::REVOCATION_WATCHERS`] until dropped.
struct WatcherGuard(metrics::Gauge);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let event = token_refresh::RevocationEvent {
            family_id: token_refresh::FamilyId::from_bytes([7; 16]),
            reason: token_refresh::RevocationReason::FamilyRevoked,
            revoked_at: 1_700_000_000,
            listed_until: 1_700_001_000,
        };
        let sent = to_proto(&event);
        assert_eq!(parse_cursor(&sent.cursor).unwrap(), Some(1_700_000_000));
        assert_eq!(parse_cursor("").unwrap(), None);
        for bad in [
            "1700000000",
            "v1.",
            "v1.-5",
            "v1.12a",
            "v2.1",
            &"v1.9".repeat(30),
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
