//! A Redis Cluster of three masters, optionally with one replica each (for failover), made of
//! [`RedisServer`] nodes sharing one temporary directory and joined with
//! `redis-cli --cluster create`.

use std::fmt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::redis::{INSTALL_HINT, Mode, Settings, temp_dir};
use crate::{FixtureError, RedisServer, Reply};

/// Masters in every cluster.
const MASTERS: usize = 3;
/// Slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// A Redis Cluster of three masters, each a [`RedisServer`], all slots assigned and
/// `cluster_state:ok` on every node before [`RedisCluster::start`] returns; with
/// [`RedisCluster::start_with_replicas`], one replica per master too, for failover. The nodes
/// are killed on drop.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("ports", &self.ports())
            .finish_non_exhaustive()
    }
}

/// One master of a [`RedisCluster`] and what it serves, as `CLUSTER SLOTS` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The master's port.
    pub primary: u16,
    /// Its replicas' ports.
    pub replicas: Vec<u16>,
    /// The slot ranges it serves (inclusive).
    pub slots: Vec<(u16, u16)>,
}

impl Shard {
    /// Whether this master serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(lo, hi)| (lo..=hi).contains(&slot))
    }
}

/// The port of a `[ip, port, id, ...]` node entry of `CLUSTER SLOTS`.
fn node_port(entry: &Reply) -> Option<u16> {
    match entry {
        Reply::Array(Some(fields)) => u16::try_from(fields.get(1)?.int()?).ok(),
        _ => None,
    }
}

/// `CLUSTER INFO` of `node`.
fn info_cluster(node: &RedisServer) -> Result<String, FixtureError> {
    node.command(&["CLUSTER", "INFO"])?
        .text()
        .ok_or_else(|| FixtureError::new("CLUSTER INFO answered no text"))
}

impl RedisCluster {
    /// Starts three `--cluster-enabled yes` servers, joins them with
    /// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes` and waits for
    /// `cluster_state:ok` on each.
    ///
    /// # Errors
    /// When `redis-server` or `redis-cli` is missing (the message says how to install it),
    /// or the cluster does not form within 30 s.
    pub fn start() -> Result<Self, FixtureError> {
        Self::start_nodes(0, Settings::default())
    }

    /// Starts six servers joined as three masters with one replica each
    /// (`--cluster-replicas 1`), with a `cluster-node-timeout` of 1 s so that a replica takes
    /// over a stopped master within a few seconds; waits for `cluster_state:ok` on each node
    /// and for every replica to be linked to its master and done with its initial sync.
    /// [`RedisCluster::shards`] tells which node is which.
    ///
    /// # Errors
    /// As [`RedisCluster::start`].
    pub fn start_with_replicas() -> Result<Self, FixtureError> {
        let settings = Settings {
            cluster_node_timeout_ms: 1000,
            ..Settings::default()
        };
        Self::start_nodes(1, settings)
    }

    fn start_nodes(replicas: usize, settings: Settings) -> Result<Self, FixtureError> {
        let dir = temp_dir()?;
        let mut cluster = RedisCluster { nodes: Vec::new() };
        for _ in 0..MASTERS * (1 + replicas) {
            cluster
                .nodes
                .push(RedisServer::start_in(&dir, Mode::ClusterNode, settings)?);
        }
        let addresses: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    FixtureError::new(format!("`redis-cli` was not found: {INSTALL_HINT}"))
                } else {
                    FixtureError::new(format!("cannot run redis-cli: {e}"))
                }
            })?;
        if !output.status.success() {
            return Err(FixtureError::new(format!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&output.stdout)
                    .lines()
                    .chain(String::from_utf8_lossy(&output.stderr).lines())
                    .filter(|l| l.contains("ERR") || l.contains("rror"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            )));
        }
        cluster.wait_formed(replicas, Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Every node knows every other, `cluster_state:ok` with all slots served, and each of
    /// the `replicas * 3` replicas linked to its master with its initial sync done.
    fn wait_formed(&self, replicas: usize, limit: Duration) -> Result<(), FixtureError> {
        let deadline = Instant::now() + limit;
        let known = format!("cluster_known_nodes:{}", self.nodes.len());
        let all_slots = format!("cluster_slots_ok:{SLOTS}");
        loop {
            let mut all_ok = true;
            let mut linked = 0;
            for node in &self.nodes {
                let ok = info_cluster(node).is_ok_and(|info| {
                    info.contains("cluster_state:ok")
                        && info.contains(&known)
                        && info.contains(&all_slots)
                });
                // Every node must know the replicas as such too (gossip takes a moment).
                let replicas_seen = Self::shards_seen_by(node)
                    .map(|shards| shards.iter().map(|s| s.replicas.len()).sum::<usize>())
                    .unwrap_or(0);
                all_ok &= ok && replicas_seen == replicas * MASTERS;
                if let Ok(Some(info)) = node.command(&["INFO", "replication"]).map(|r| r.text())
                    && info.contains("role:slave")
                    && info.contains("master_link_status:up")
                    && info.contains("master_sync_in_progress:0")
                {
                    linked += 1;
                }
            }
            if all_ok && linked == replicas * MASTERS {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(FixtureError::new(format!(
                    "the cluster did not reach cluster_state:ok with {} linked replicas \
                     ({linked} linked)",
                    replicas * MASTERS
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every running node reports `cluster_state:ok` with all 16384 slots served
    /// and, as far as [`RedisCluster::shards`] tells, every master is a running node: after a
    /// master was stopped, until its replica has taken over.
    ///
    /// # Errors
    /// When that is not so within `limit`.
    pub fn wait_state_ok(&self, limit: Duration) -> Result<(), FixtureError> {
        let deadline = Instant::now() + limit;
        let all_slots = format!("cluster_slots_ok:{SLOTS}");
        loop {
            let running: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
            let states_ok = running.iter().all(|node| {
                info_cluster(node).is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains(&all_slots)
                })
            });
            let masters_running = self.shards().is_ok_and(|shards| {
                shards
                    .iter()
                    .all(|s| running.iter().any(|n| n.port() == s.primary))
                    && shards
                        .iter()
                        .flat_map(|s| &s.slots)
                        .map(|&(lo, hi)| u32::from(hi) - u32::from(lo) + 1)
                        .sum::<u32>()
                        == SLOTS
            });
            if states_ok && masters_running {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(FixtureError::new(format!(
                    "the cluster did not reach cluster_state:ok with running masters within \
                     {limit:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first running node.
    fn running_node(&self) -> Result<&RedisServer, FixtureError> {
        self.nodes
            .iter()
            .find(|n| n.is_running())
            .ok_or_else(|| FixtureError::new("no node is running"))
    }

    /// The masters, their replicas and slots, as the first running node reports them
    /// (`CLUSTER SLOTS`), ordered by primary port.
    ///
    /// # Errors
    /// When no node is running or the reply is not the expected shape.
    pub fn shards(&self) -> Result<Vec<Shard>, FixtureError> {
        Self::shards_seen_by(self.running_node()?)
    }

    /// `CLUSTER SLOTS` of `node`, by master.
    fn shards_seen_by(node: &RedisServer) -> Result<Vec<Shard>, FixtureError> {
        let Reply::Array(Some(ranges)) = node.command(&["CLUSTER", "SLOTS"])? else {
            return Err(FixtureError::new("CLUSTER SLOTS answered no array"));
        };
        let bad = || FixtureError::new("CLUSTER SLOTS answered an unexpected shape");
        let mut shards: Vec<Shard> = Vec::new();
        for range in &ranges {
            let Reply::Array(Some(fields)) = range else {
                return Err(bad());
            };
            let slot = |i: usize| {
                fields
                    .get(i)
                    .and_then(Reply::int)
                    .and_then(|v| u16::try_from(v).ok())
                    .ok_or_else(bad)
            };
            let (lo, hi) = (slot(0)?, slot(1)?);
            let primary = fields.get(2).and_then(node_port).ok_or_else(bad)?;
            let replicas: Vec<u16> = fields.iter().skip(3).filter_map(node_port).collect();
            match shards.iter_mut().find(|s| s.primary == primary) {
                Some(shard) => {
                    shard.slots.push((lo, hi));
                    for r in replicas {
                        if !shard.replicas.contains(&r) {
                            shard.replicas.push(r);
                        }
                    }
                }
                None => shards.push(Shard {
                    primary,
                    replicas,
                    slots: vec![(lo, hi)],
                }),
            }
        }
        shards.sort_by_key(|s| s.primary);
        Ok(shards)
    }

    /// The slot of `key` (`CLUSTER KEYSLOT` on a running node).
    ///
    /// # Errors
    /// When no node is running or the reply is not an integer slot.
    pub fn keyslot(&self, key: &str) -> Result<u16, FixtureError> {
        self.running_node()?
            .command(&["CLUSTER", "KEYSLOT", key])?
            .int()
            .and_then(|v| u16::try_from(v).ok())
            .ok_or_else(|| FixtureError::new("CLUSTER KEYSLOT answered no slot"))
    }

    /// Waits until every running replica has processed its master's replication stream up to
    /// where the master was when this was called (`slave_repl_offset` ≥ the master's
    /// `master_repl_offset`): what the masters had written is then on their replicas too, and
    /// survives a master being stopped and its replica taking over. (Replication is
    /// asynchronous: without this, the last writes a master acknowledged may be lost.)
    ///
    /// # Errors
    /// When that is not so within `limit`, or a node does not answer.
    pub fn wait_replicas_synced(&self, limit: Duration) -> Result<(), FixtureError> {
        let offset = |node: &RedisServer, field: &str| -> Result<i64, FixtureError> {
            node.info_field("replication", field)?
                .parse()
                .map_err(|_| FixtureError::new(format!("INFO replication: bad {field}")))
        };
        let mut targets = Vec::new();
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            if node.info_field("replication", "role")? == "slave" {
                let master: u16 = node
                    .info_field("replication", "master_port")?
                    .parse()
                    .map_err(|_| FixtureError::new("INFO replication: bad master_port"))?;
                let primary = self
                    .nodes
                    .iter()
                    .find(|n| n.port() == master && n.is_running())
                    .ok_or_else(|| FixtureError::new("a replica's master is not running"))?;
                targets.push((node, offset(primary, "master_repl_offset")?));
            }
        }
        let deadline = Instant::now() + limit;
        for (replica, target) in targets {
            loop {
                let at = offset(replica, "slave_repl_offset")?;
                if at >= target {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(FixtureError::new(format!(
                        "the replica on port {} is at offset {at}, its master at {target}",
                        replica.port()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The nodes.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The nodes, to stop or restart one.
    pub fn nodes_mut(&mut self) -> &mut [RedisServer] {
        &mut self.nodes
    }

    /// `redis-cluster://127.0.0.1:<p1>?node=127.0.0.1:<p2>&node=127.0.0.1:<p3>...` (every
    /// node, replicas included).
    pub fn url(&self) -> String {
        let mut url = String::from("redis-cluster://");
        for (i, p) in self.ports().iter().enumerate() {
            let separator = match i {
                0 => "",
                1 => "?node=",
                _ => "&node=",
            };
            url.push_str(&format!("{separator}127.0.0.1:{p}"));
        }
        url
    }

    /// `CLIENT KILL TYPE pubsub` on every running node; returns how many connections were
    /// cut.
    ///
    /// # Errors
    /// As [`RedisServer::command`].
    pub fn kill_pubsub_clients(&self) -> Result<i64, FixtureError> {
        let mut total = 0;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            total += node.kill_pubsub_clients()?;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_masters_serve_every_slot() {
        let cluster = RedisCluster::start().unwrap();
        let shards = cluster.shards().unwrap();
        assert_eq!(shards.len(), MASTERS);
        assert!(shards.iter().all(|s| s.replicas.is_empty()), "{shards:?}");
        for slot in [0, 5_000, 16_383, cluster.keyslot("{family}").unwrap()] {
            assert_eq!(
                shards.iter().filter(|s| s.serves(slot)).count(),
                1,
                "slot {slot}"
            );
        }
        let url = cluster.url();
        let ports = cluster.ports();
        assert_eq!(
            url,
            format!(
                "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
                ports[0], ports[1], ports[2]
            )
        );
        cluster.wait_state_ok(Duration::from_secs(5)).unwrap();
    }
}
