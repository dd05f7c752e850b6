//! Test fixtures (feature `testing`; not a stable API): real `redis-server` processes on free
//! loopback ports, in their own temporary directories, killed on drop. Used by this crate's
//! tests and benches and by other crates' end-to-end tests: a standalone server (optionally
//! persistent across a kill and restart), a Cluster of three masters (optionally with one
//! replica each, for failover), and a primary behind a sentinel.
//!
//! A missing `redis-server` (or `redis-cli`, for the Cluster) is an error whose message says
//! how to install it; nothing is skipped silently.

#![allow(
    clippy::missing_panics_doc,
    reason = "test-support code; errors are returned, not panicked"
)]

use std::collections::BTreeSet;
use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const INSTALL_HINT: &str = "install it: apt-get install redis-server";

/// Why a fixture could not start or answer.
pub struct FixtureError(String);

impl FixtureError {
    fn new(message: impl Into<String>) -> Self {
        FixtureError(message.into())
    }
}

impl fmt::Debug for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixtureError {}

impl From<std::io::Error> for FixtureError {
    fn from(e: std::io::Error) -> Self {
        FixtureError(e.to_string())
    }
}

/// A reply to a raw command (RESP2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$n ...` (`None` for nil)
    Bulk(Option<Vec<u8>>),
    /// `*n ...` (`None` for a nil array)
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The text of a simple or bulk reply.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }

    /// The value of an integer reply.
    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// A unique temporary directory name.
fn temp_dir() -> Result<PathBuf, FixtureError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = random_u64();
    let dir = std::env::temp_dir().join(format!(
        "token-store-redis-{}-{}-{random:016x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|e| FixtureError::new(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

/// A random number (std's randomly keyed hasher; no extra dependency).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Ports taken by fixtures of this process, for as long as it runs (a handful per test out of
/// 7000). A port is never handed out twice: a stopped server keeps its port for
/// [`RedisServer::restart`], and the clients of a finished test may still try to reconnect to
/// theirs; neither must reach another test's server.
static RESERVED: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());

fn reserved() -> std::sync::MutexGuard<'static, BTreeSet<u16>> {
    RESERVED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reserves a port free on 127.0.0.1 now (and, for Cluster nodes, its bus port
/// `port + 10000` too), for the rest of the process.
///
/// Drawn from 15000..22000 (bus ports 25000..32000): below Linux's default ephemeral range
/// (32768..60999), so an outgoing connection cannot take it between the probe and a restart.
fn reserve_port(with_bus: bool) -> Result<u16, FixtureError> {
    let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
    let mut held = reserved();
    let usable = |p: u16| {
        !held.contains(&p)
            && free(p)
            && (!with_bus
                || p.checked_add(10_000)
                    .is_some_and(|bus| !held.contains(&bus) && free(bus)))
    };
    let mut found = None;
    for _ in 0..200 {
        let port = 15_000 + u16::try_from(random_u64() % 7_000).unwrap_or(0);
        if usable(port) {
            found = Some(port);
            break;
        }
    }
    if found.is_none() {
        // Fall back to whatever the kernel hands out.
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
        held.insert(port + 10_000);
    }
    Ok(port)
}

/// Sends one command over a fresh connection and reads the reply.
fn raw_command(port: u16, args: &[&str], timeout: Duration) -> Result<Reply, FixtureError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader)
}

fn read_line(r: &mut impl BufRead) -> Result<String, FixtureError> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    if !line.ends_with("\r\n") {
        return Err(FixtureError::new("connection closed mid-reply"));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply, FixtureError> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at_checked(1).unwrap_or(("", ""));
    let number = || -> Result<i64, FixtureError> {
        rest.parse()
            .map_err(|_| FixtureError::new(format!("bad RESP length {rest:?}")))
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Ok(Reply::Error(rest.to_owned())),
        ":" => Ok(Reply::Int(number()?)),
        "$" => {
            let n = number()?;
            let Ok(n) = usize::try_from(n) else {
                return Ok(Reply::Bulk(None));
            };
            let mut buf = vec![0u8; n + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => {
            let n = number()?;
            let Ok(n) = usize::try_from(n) else {
                return Ok(Reply::Array(None));
            };
            let mut items = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                items.push(read_reply(r)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(FixtureError::new(format!("bad RESP reply {line:?}"))),
    }
}

/// What a `redis-server` process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Standalone,
    ClusterNode,
    /// A sentinel monitoring the primary on this port as `mymaster`.
    Sentinel(u16),
}

/// Settings of a `redis-server` process beyond its [`Mode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Settings {
    /// An append-only file written before every reply (`appendfsync always`), read again by
    /// [`RedisServer::restart`].
    persistent: bool,
    /// `cluster-node-timeout` of a Cluster node, in milliseconds.
    cluster_node_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            persistent: false,
            cluster_node_timeout_ms: 5000,
        }
    }
}

/// One `redis-server` process (standalone, a Cluster node, or a sentinel).
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    owns_dir: bool,
    mode: Mode,
    settings: Settings,
    child: Option<Child>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisServer {
    /// Starts a standalone server on a free port (no persistence) and waits until it
    /// answers `PING`.
    ///
    /// # Errors
    /// When `redis-server` is missing (the message says how to install it) or does not come
    /// up within 10 s.
    pub fn start() -> Result<Self, FixtureError> {
        let dir = temp_dir()?;
        Self::start_in(&dir, true, Mode::Standalone, Settings::default())
    }

    /// Like [`RedisServer::start`], with an append-only file that Redis writes (and fsyncs)
    /// before it replies (`appendonly yes`, `appendfsync always`): every write a client was
    /// told about survives [`RedisServer::stop`] (SIGKILL) and is there again after
    /// [`RedisServer::restart`]. Loaded scripts are not kept (as after any restart).
    ///
    /// # Errors
    /// As [`RedisServer::start`].
    pub fn start_persistent() -> Result<Self, FixtureError> {
        let dir = temp_dir()?;
        let settings = Settings {
            persistent: true,
            ..Settings::default()
        };
        Self::start_in(&dir, true, Mode::Standalone, settings)
    }

    fn start_in(
        dir: &Path,
        owns_dir: bool,
        mode: Mode,
        settings: Settings,
    ) -> Result<Self, FixtureError> {
        let mut last = FixtureError::new("no attempt");
        for _ in 0..5 {
            let port = reserve_port(mode == Mode::ClusterNode)?;
            let mut server = RedisServer {
                port,
                dir: dir.to_owned(),
                owns_dir,
                mode,
                settings,
                child: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    // Most likely the port was taken between the probe and the bind.
                    server.owns_dir = false;
                    last = e;
                }
            }
        }
        if owns_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        Err(last)
    }

    fn spawn(&mut self) -> Result<(), FixtureError> {
        let port = self.port.to_string();
        let log = self.dir.join(format!("redis-{port}.log"));
        let mut cmd = Command::new("redis-server");
        if let Mode::Sentinel(primary) = self.mode {
            // A sentinel rewrites its configuration file: one of its own.
            let conf = self.dir.join(format!("sentinel-{port}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor mymaster 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds mymaster 5000\n",
                dir = self.dir.display(),
                log = log.display(),
            );
            std::fs::write(&conf, text)?;
            cmd.arg(&conf).arg("--sentinel");
        } else {
            cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                .args(["--daemonize", "no"])
                .arg("--dir")
                .arg(&self.dir)
                .arg("--logfile")
                .arg(&log);
            if self.settings.persistent {
                // In the server's own directory: a restart reads it back.
                cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
            } else {
                cmd.args(["--appendonly", "no"]);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.mode == Mode::ClusterNode {
            let node_timeout = self.settings.cluster_node_timeout_ms.to_string();
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                &node_timeout,
            ])
            .arg("--cluster-config-file")
            .arg(self.dir.join(format!("nodes-{port}.conf")))
            // Replicas sync at once (the default waits 5 s for more replicas).
            .args(["--repl-diskless-sync-delay", "0"]);
        }
        let child = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                FixtureError::new(format!("redis-server is not on PATH: {INSTALL_HINT}"))
            } else {
                FixtureError::new(format!("cannot start redis-server: {e}"))
            }
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Reply::Simple(pong)) =
                raw_command(self.port, &["PING"], Duration::from_millis(500))
                && pong == "PONG"
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(FixtureError::new(format!(
                    "redis-server on port {port} exited with {status}: {tail}"
                )));
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(FixtureError::new(format!(
                    "redis-server on port {port} did not answer PING within 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether the process is running (as far as this fixture knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the process (SIGKILL: a crash, no goodbye to the clients) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port (its data is gone, unless it was started with
    /// [`RedisServer::start_persistent`]).
    ///
    /// # Errors
    /// When it does not come up (for example the port was taken meanwhile).
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The old socket may linger for a moment.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends one command on a fresh connection (5 s timeout).
    ///
    /// # Errors
    /// When the server cannot be reached or the reply is not RESP2.
    pub fn command(&self, args: &[&str]) -> Result<Reply, FixtureError> {
        raw_command(self.port, args, Duration::from_secs(5))
    }

    /// `CLIENT KILL TYPE pubsub`: cuts every subscriber connection; returns how many.
    ///
    /// # Errors
    /// As [`RedisServer::command`].
    pub fn kill_pubsub_clients(&self) -> Result<i64, FixtureError> {
        match self.command(&["CLIENT", "KILL", "TYPE", "pubsub"])? {
            Reply::Int(n) => Ok(n),
            other => Err(FixtureError::new(format!("CLIENT KILL answered {other:?}"))),
        }
    }

    /// A field of `INFO <section>` (such as `total_commands_processed`).
    ///
    /// # Errors
    /// As [`RedisServer::command`], or when the field is absent.
    pub fn info_field(&self, section: &str, field: &str) -> Result<String, FixtureError> {
        let text = self
            .command(&["INFO", section])?
            .text()
            .ok_or_else(|| FixtureError::new("INFO answered no text"))?;
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
            .ok_or_else(|| FixtureError::new(format!("INFO {section} has no {field}")))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A Redis Cluster of three masters, each a [`RedisServer`], all slots assigned and
/// `cluster_state:ok` on every node before [`RedisCluster::start`] returns; with
/// [`RedisCluster::start_with_replicas`], one replica per master too, for failover.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: PathBuf,
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
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir: dir.clone(),
        };
        for _ in 0..3 * (1 + replicas) {
            cluster.nodes.push(RedisServer::start_in(
                &dir,
                false,
                Mode::ClusterNode,
                settings,
            )?);
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
                    FixtureError::new(format!("redis-cli is not on PATH: {INSTALL_HINT}"))
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
        loop {
            let mut all_ok = true;
            let mut linked = 0;
            for node in &self.nodes {
                let ok = node
                    .info_cluster()
                    .map(|info| {
                        info.contains("cluster_state:ok")
                            && info.contains(&known)
                            && info.contains("cluster_slots_ok:16384")
                    })
                    .unwrap_or(false);
                // Every node must know the replicas as such too (gossip takes a moment).
                let replicas_seen = Self::shards_seen_by(node)
                    .map(|shards| shards.iter().map(|s| s.replicas.len()).sum::<usize>())
                    .unwrap_or(0);
                all_ok &= ok && replicas_seen == replicas * 3;
                if let Ok(Some(info)) = node.command(&["INFO", "replication"]).map(|r| r.text())
                    && info.contains("role:slave")
                    && info.contains("master_link_status:up")
                    && info.contains("master_sync_in_progress:0")
                {
                    linked += 1;
                }
            }
            if all_ok && linked == replicas * 3 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(FixtureError::new(format!(
                    "the cluster did not reach cluster_state:ok with {} linked replicas \
                     ({linked} linked)",
                    replicas * 3
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
        loop {
            let running: Vec<&RedisServer> = self.nodes.iter().filter(|n| n.is_running()).collect();
            let states_ok = running.iter().all(|node| {
                node.info_cluster().is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
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
                        == 16384
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

    /// The masters, their replicas and slots, as the first running node reports them
    /// (`CLUSTER SLOTS`), ordered by primary port.
    ///
    /// # Errors
    /// When no node is running or the reply is not the expected shape.
    pub fn shards(&self) -> Result<Vec<Shard>, FixtureError> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .ok_or_else(|| FixtureError::new("no node is running"))?;
        Self::shards_seen_by(node)
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
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .ok_or_else(|| FixtureError::new("no node is running"))?;
        node.command(&["CLUSTER", "KEYSLOT", key])?
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
                let offset: i64 = primary
                    .info_field("replication", "master_repl_offset")?
                    .parse()
                    .map_err(|_| FixtureError::new("INFO replication: bad master_repl_offset"))?;
                targets.push((node, offset));
            }
        }
        let deadline = Instant::now() + limit;
        for (replica, offset) in targets {
            loop {
                let at: i64 = replica
                    .info_field("replication", "slave_repl_offset")?
                    .parse()
                    .map_err(|_| FixtureError::new("INFO replication: bad slave_repl_offset"))?;
                if at >= offset {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(FixtureError::new(format!(
                        "the replica on port {} is at offset {at}, its master at {offset}",
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
        let ports = self.ports();
        let mut url = String::from("redis-cluster://");
        for (i, p) in ports.iter().enumerate() {
            match i {
                0 => url.push_str(&format!("127.0.0.1:{p}")),
                1 => url.push_str(&format!("?node=127.0.0.1:{p}")),
                _ => url.push_str(&format!("&node=127.0.0.1:{p}")),
            }
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

impl RedisServer {
    fn info_cluster(&self) -> Result<String, FixtureError> {
        self.command(&["CLUSTER", "INFO"])?
            .text()
            .ok_or_else(|| FixtureError::new("CLUSTER INFO answered no text"))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A primary behind one sentinel (`redis-server --sentinel`), the primary known to it as
/// `mymaster`.
pub struct RedisSentinel {
    // Dropped in this order: the sentinel first, then the primary (which owns the directory).
    sentinel: RedisServer,
    primary: RedisServer,
}

impl fmt::Debug for RedisSentinel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSentinel")
            .field("primary", &self.primary.port())
            .field("sentinel", &self.sentinel.port())
            .finish()
    }
}

impl RedisSentinel {
    /// Starts a standalone primary and a sentinel monitoring it, and waits until the sentinel
    /// names the primary.
    ///
    /// # Errors
    /// When `redis-server` is missing (the message says how to install it) or the sentinel
    /// does not know the primary within 10 s.
    pub fn start() -> Result<Self, FixtureError> {
        let primary = RedisServer::start()?;
        let sentinel = RedisServer::start_in(
            &primary.dir,
            false,
            Mode::Sentinel(primary.port),
            Settings::default(),
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let expected = primary.port.to_string();
        loop {
            let reply = sentinel.command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"]);
            if let Ok(Reply::Array(Some(addr))) = &reply
                && addr.get(1).and_then(Reply::text).as_deref() == Some(expected.as_str())
            {
                return Ok(RedisSentinel { sentinel, primary });
            }
            if Instant::now() > deadline {
                return Err(FixtureError::new(format!(
                    "the sentinel does not know the primary: {reply:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-sentinel://127.0.0.1:<sentinel port>/0?sentinelServiceName=mymaster`.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName=mymaster",
            self.sentinel.port()
        )
    }

    /// The primary.
    pub fn primary(&self) -> &RedisServer {
        &self.primary
    }
}
