//! A `redis-server` process: standalone (optionally persistent across a kill and restart),
//! and the node type [`cluster`](crate::cluster) and [`sentinel`](crate::sentinel) build on.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::Process;
use crate::resp::{self, Reply};
use crate::{FixtureError, port};

/// What the error for a missing `redis-server` or `redis-cli` says.
pub(crate) const INSTALL_HINT: &str = "install it: apt-get install redis-server";

/// How long a starting server may take to answer `PING`.
const START_LIMIT: Duration = Duration::from_secs(10);

/// What a `redis-server` process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Standalone,
    ClusterNode,
    /// A sentinel monitoring the primary on this port as `mymaster`.
    Sentinel(u16),
}

/// Settings of a `redis-server` process beyond its [`Mode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// An append-only file written before every reply (`appendfsync always`), read again by
    /// [`RedisServer::restart`].
    pub(crate) persistent: bool,
    /// `cluster-node-timeout` of a Cluster node, in milliseconds.
    pub(crate) cluster_node_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            persistent: false,
            cluster_node_timeout_ms: 5000,
        }
    }
}

/// A new temporary directory for servers' files (removed when its last user is dropped).
pub(crate) fn temp_dir() -> Result<Arc<TempDir>, FixtureError> {
    tempfile::Builder::new()
        .prefix("token-testkit-redis-")
        .tempdir()
        .map(Arc::new)
        .map_err(|e| FixtureError::new(format!("cannot create a temporary directory: {e}")))
}

/// One `redis-server` process (standalone, a Cluster node, or a sentinel) on 127.0.0.1,
/// killed on drop; its files (configuration, log, append-only file) are in a temporary
/// directory, removed once no server uses it.
pub struct RedisServer {
    port: u16,
    dir: Arc<TempDir>,
    mode: Mode,
    settings: Settings,
    process: Option<Process>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("running", &self.is_running())
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
        Self::start_in(&temp_dir()?, Mode::Standalone, Settings::default())
    }

    /// Like [`RedisServer::start`], with an append-only file that Redis writes (and fsyncs)
    /// before it replies (`appendonly yes`, `appendfsync always`): every write a client was
    /// told about survives [`RedisServer::stop`] (SIGKILL) and is there again after
    /// [`RedisServer::restart`]. Loaded scripts are not kept (as after any restart).
    ///
    /// # Errors
    /// As [`RedisServer::start`].
    pub fn start_persistent() -> Result<Self, FixtureError> {
        let settings = Settings {
            persistent: true,
            ..Settings::default()
        };
        Self::start_in(&temp_dir()?, Mode::Standalone, settings)
    }

    /// Starts a server of `mode` with its files in `dir`, on a free port (another one if the
    /// port was taken between the probe and the bind).
    pub(crate) fn start_in(
        dir: &Arc<TempDir>,
        mode: Mode,
        settings: Settings,
    ) -> Result<Self, FixtureError> {
        let mut last = FixtureError::new("no attempt");
        for _ in 0..5 {
            let port = if mode == Mode::ClusterNode {
                port::free_cluster_port()?
            } else {
                port::free_port()?
            };
            let mut server = RedisServer {
                port,
                dir: Arc::clone(dir),
                mode,
                settings,
                process: None,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The command line of this server.
    fn command_line(&self, dir: &Path) -> Result<Command, FixtureError> {
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        if let Mode::Sentinel(primary) = self.mode {
            // A sentinel rewrites its configuration file: one of its own.
            let conf = dir.join(format!("sentinel-{port}.conf"));
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\n\
                 sentinel monitor mymaster 127.0.0.1 {primary} 1\n\
                 sentinel down-after-milliseconds mymaster 5000\n",
                dir = dir.display(),
            );
            std::fs::write(&conf, text)
                .map_err(|e| FixtureError::new(format!("cannot write {}: {e}", conf.display())))?;
            cmd.arg(&conf).arg("--sentinel");
            return Ok(cmd);
        }
        cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(dir);
        if self.settings.persistent {
            // In the server's own directory: a restart reads it back.
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        if self.mode == Mode::ClusterNode {
            let node_timeout = self.settings.cluster_node_timeout_ms.to_string();
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                &node_timeout,
            ])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{port}.conf")))
            // Replicas sync at once (the default waits 5 s for more replicas).
            .args(["--repl-diskless-sync-delay", "0"]);
        }
        Ok(cmd)
    }

    /// Starts the process on this server's port and waits until it answers `PING`.
    fn spawn(&mut self) -> Result<(), FixtureError> {
        let dir = self.dir.path();
        let log = dir.join(format!("redis-{}.log", self.port));
        let mut process = Process::spawn(&mut self.command_line(dir)?, &log, INSTALL_HINT)?;
        let port = self.port;
        process
            .wait_until(START_LIMIT, || {
                resp::command(port, &["PING"], Duration::from_millis(500))
                    .is_ok_and(|r| r == Reply::Simple("PONG".into()))
            })
            .map_err(|e| e.context(format!("redis-server on port {port}")))?;
        self.process = Some(process);
        Ok(())
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
        self.process.as_ref().is_some_and(Process::is_running)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::id)
    }

    /// Kills the process (SIGKILL: a crash, no goodbye to the clients) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the process again on the same port (its data is gone, unless it was started with
    /// [`RedisServer::start_persistent`]).
    ///
    /// # Errors
    /// When it does not come up within 10 s (for example the port was taken meanwhile).
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop();
        let deadline = Instant::now() + START_LIMIT;
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
        resp::command(self.port, args, Duration::from_secs(5))
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
        self.connection()?.info_field(section, field)
    }

    /// A connection of its own to this server (5 s timeouts), for several commands in a row.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub fn connection(&self) -> Result<resp::Connection, FixtureError> {
        resp::Connection::connect(
            std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(5),
        )
    }

    /// The directory of this server's files.
    pub(crate) fn dir(&self) -> &Arc<TempDir> {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persistent_server_keeps_its_data_across_a_kill_and_restart() {
        let mut server = RedisServer::start_persistent().unwrap();
        assert!(server.is_running() && server.pid().is_some());
        assert_eq!(
            server.command(&["SET", "k", "v"]).unwrap(),
            Reply::Simple("OK".into())
        );
        let port = server.port();
        server.stop();
        assert!(!server.is_running());
        assert!(
            server.command(&["PING"]).is_err(),
            "nothing answers on a stopped server"
        );
        server.restart().unwrap();
        assert_eq!(server.port(), port);
        assert_eq!(
            server.command(&["GET", "k"]).unwrap().text().as_deref(),
            Some("v")
        );
    }

    #[test]
    fn a_plain_server_starts_empty_after_a_restart() {
        let mut server = RedisServer::start().unwrap();
        server.command(&["SET", "k", "v"]).unwrap();
        assert_eq!(
            server
                .info_field("keyspace", "db0")
                .unwrap()
                .split(',')
                .next(),
            Some("keys=1")
        );
        server.restart().unwrap();
        assert_eq!(server.command(&["GET", "k"]).unwrap(), Reply::Bulk(None));
        assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    }

    #[test]
    fn the_directory_goes_with_the_server() {
        let server = RedisServer::start().unwrap();
        let dir = server.dir().path().to_owned();
        assert!(dir.join(format!("redis-{}.log", server.port())).exists());
        drop(server);
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
}
