//! Local fan-out of revocation events: a broadcast channel that needs no async runtime.
//!
//! Backends publish through a [`RevocationBroadcaster`]; each
//! [`RevocationList::subscribe`](crate::RevocationList::subscribe) hands out a
//! [`RevocationSubscription`]. The Redis backend feeds its broadcaster from pub/sub (and from a
//! re-read of the list after a reconnect); the memory store publishes directly.

use std::fmt;

use tokio::sync::broadcast;

use crate::error::{Error, Result};
use crate::family::RevocationEvent;

/// How many events a subscriber may fall behind before it is told it lagged.
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// The sending side of revocation events. Cheap to clone; every clone feeds the same
/// subscribers.
#[derive(Clone)]
pub struct RevocationBroadcaster {
    tx: broadcast::Sender<RevocationEvent>,
}

impl RevocationBroadcaster {
    /// A broadcaster whose subscribers may lag `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        RevocationBroadcaster { tx }
    }

    /// Sends `event` to every current subscriber; returns how many there were. Never blocks.
    pub fn publish(&self, event: RevocationEvent) -> usize {
        self.tx.send(event).unwrap_or(0)
    }

    /// A new subscription that receives every event published from now on.
    pub fn subscribe(&self) -> RevocationSubscription {
        RevocationSubscription {
            rx: self.tx.subscribe(),
        }
    }

    /// How many subscriptions are live.
    pub fn subscriber_count(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl Default for RevocationBroadcaster {
    fn default() -> Self {
        RevocationBroadcaster::new(DEFAULT_EVENT_CAPACITY)
    }
}

impl fmt::Debug for RevocationBroadcaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationBroadcaster")
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

/// A stream of revocation events.
///
/// Delivery is at least once while subscribed (a backend may repeat an event, for example
/// after re-reading the list on reconnect). A subscriber that falls more than the channel
/// capacity behind gets [`Error::SubscriptionLagged`] once and should then re-read the whole
/// list with [`RevocationList::revoked`](crate::RevocationList::revoked).
pub struct RevocationSubscription {
    rx: broadcast::Receiver<RevocationEvent>,
}

impl RevocationSubscription {
    /// Waits for the next event.
    ///
    /// # Errors
    /// [`Error::SubscriptionLagged`] when events were dropped for this subscriber (the next
    /// call continues with the oldest retained event), [`Error::SubscriptionClosed`] when the
    /// backend is gone.
    pub async fn recv(&mut self) -> Result<RevocationEvent> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(missed) => Error::SubscriptionLagged { missed },
            broadcast::error::RecvError::Closed => Error::SubscriptionClosed,
        })
    }

    /// The next event if one is waiting, without waiting.
    ///
    /// # Errors
    /// As [`RevocationSubscription::recv`].
    pub fn try_recv(&mut self) -> Result<Option<RevocationEvent>> {
        match self.rx.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                Err(Error::SubscriptionLagged { missed })
            }
            Err(broadcast::error::TryRecvError::Closed) => Err(Error::SubscriptionClosed),
        }
    }
}

impl fmt::Debug for RevocationSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationSubscription")
            .field("pending", &self.rx.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::RevocationReason;
    use crate::token::FamilyId;

    fn ev(i: u8) -> RevocationEvent {
        RevocationEvent {
            family_id: FamilyId::from_bytes([i; 16]),
            reason: RevocationReason::FamilyRevoked,
            revoked_at: 1,
            listed_until: 2,
        }
    }

    #[test]
    fn fan_out_and_lag() {
        let b = RevocationBroadcaster::new(2);
        assert_eq!(b.publish(ev(0)), 0, "no subscriber: dropped");
        let mut s1 = b.subscribe();
        let mut s2 = b.subscribe();
        assert_eq!(b.publish(ev(1)), 2);
        assert_eq!(s1.try_recv().unwrap(), Some(ev(1)));
        assert_eq!(s1.try_recv().unwrap(), None);
        b.publish(ev(2));
        b.publish(ev(3));
        assert!(matches!(
            s2.try_recv(),
            Err(Error::SubscriptionLagged { missed: 1 })
        ));
        assert_eq!(s2.try_recv().unwrap(), Some(ev(2)));
        drop(b);
        assert_eq!(s1.try_recv().unwrap(), Some(ev(2)));
        assert_eq!(s1.try_recv().unwrap(), Some(ev(3)));
        assert!(matches!(s1.try_recv(), Err(Error::SubscriptionClosed)));
    }
}
