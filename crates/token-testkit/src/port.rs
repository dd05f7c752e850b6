//! The free-port picker: every fixture, test and `cargo xtask` run takes its loopback ports
//! here.
//!
//! Ports are drawn at random from 15000..22000 (Cluster bus ports `port + 10000`, so
//! 25000..32000): below Linux's default ephemeral range (32768..60999), so an outgoing
//! connection cannot take a port between the probe and the server's bind, or while a stopped
//! server waits to be restarted on it. A port handed out is kept for the rest of the process
//! and never handed out again: a stopped server keeps its port for a restart, and the clients
//! of a finished test may still try to reconnect to theirs; neither must reach another
//! test's server.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::FixtureError;

/// The first port of the range drawn from.
const FIRST: u16 = 15_000;
/// How many ports the range holds.
const COUNT: u16 = 7_000;
/// The offset of a Redis Cluster node's bus port.
const BUS_OFFSET: u16 = 10_000;

/// Ports taken by this process (a handful per test out of 7000).
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn reserved() -> MutexGuard<'static, BTreeSet<u16>> {
    RESERVED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A port free on 127.0.0.1 now, reserved for the rest of the process.
///
/// # Errors
/// When no free port is found (after 200 random draws and 100 ports from the kernel).
pub fn free_port() -> Result<u16, FixtureError> {
    reserve(false)
}

/// A port free on 127.0.0.1 whose Redis Cluster bus port (`port + 10000`) is free too, both
/// reserved for the rest of the process.
///
/// # Errors
/// As [`free_port`].
pub fn free_cluster_port() -> Result<u16, FixtureError> {
    reserve(true)
}

fn reserve(with_bus: bool) -> Result<u16, FixtureError> {
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut held = reserved();
    let usable = |p: u16| {
        !held.contains(&p)
            && free(p)
            && (!with_bus
                || p.checked_add(BUS_OFFSET)
                    .is_some_and(|bus| !held.contains(&bus) && free(bus)))
    };
    let mut found = None;
    for _ in 0..200 {
        let port = FIRST + random_below(COUNT)?;
        if usable(port) {
            found = Some(port);
            break;
        }
    }
    if found.is_none() {
        // The range is crowded: take whatever the kernel hands out.
        for _ in 0..100 {
            let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if usable(port) {
                found = Some(port);
                break;
            }
        }
    }
    let port = found.ok_or_else(|| FixtureError::new("no free port (pair) on 127.0.0.1"))?;
    held.insert(port);
    if with_bus {
        held.insert(port + BUS_OFFSET);
    }
    Ok(port)
}

/// A random number below `bound` from the OS's random source.
fn random_below(bound: u16) -> Result<u16, FixtureError> {
    let mut bytes = [0u8; 4];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| FixtureError::new(format!("no randomness from the OS: {e}")))?;
    let draw = u32::from_le_bytes(bytes) % u32::from(bound);
    u16::try_from(draw).map_err(|_| FixtureError::new("random port out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_and_never_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for _ in 0..50 {
            let port = free_port().unwrap();
            assert!(seen.insert(port), "{port} handed out twice");
            // Free when handed out: something can listen on it.
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
        assert!(
            seen.iter().all(|p| (FIRST..FIRST + COUNT).contains(p)),
            "{seen:?}"
        );
    }

    #[test]
    fn a_cluster_port_reserves_its_bus_port_too() {
        let port = free_cluster_port().unwrap();
        let held = reserved();
        assert!(held.contains(&port) && held.contains(&(port + BUS_OFFSET)));
    }
}
