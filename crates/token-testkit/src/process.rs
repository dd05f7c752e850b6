//! A child process started with its output in a log file, waited for until it is ready, and
//! killed (SIGKILL) when its handle is dropped, so a failed test never leaves one behind.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::FixtureError;

/// How many lines of its log a failed process's error shows.
const LOG_TAIL_LINES: usize = 10;

/// A running child process (see the [module docs](self)).
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    program: String,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log` (created if
    /// missing; a restarted process adds to the same file).
    ///
    /// # Errors
    /// When the log cannot be opened or the program cannot be started; a program that is not
    /// found gets `install_hint` in the message (such as "install it: apt-get install
    /// redis-server").
    pub fn spawn(
        command: &mut Command,
        log: &Path,
        install_hint: &str,
    ) -> Result<Self, FixtureError> {
        let program = command.get_program().to_string_lossy().into_owned();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| FixtureError::new(format!("cannot open {}: {e}", log.display())))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .map_err(|e| {
                if e.kind() == ErrorKind::NotFound {
                    FixtureError::new(format!("`{program}` was not found: {install_hint}"))
                } else {
                    FixtureError::new(format!("cannot start `{program}`: {e}"))
                }
            })?;
        Ok(Process {
            child: Some(child),
            program,
            log: log.to_owned(),
        })
    }

    /// Polls `ready` (every 20 ms) until it says yes.
    ///
    /// # Errors
    /// When the process exits first, or `ready` is still false after `limit` (the process is
    /// then killed); either message has the end of the log.
    pub fn wait_until(
        &mut self,
        limit: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), FixtureError> {
        let deadline = Instant::now() + limit;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.exited()? {
                return Err(FixtureError::new(format!(
                    "`{}` exited with {status}: {}",
                    self.program,
                    self.log_tail()
                )));
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(FixtureError::new(format!(
                    "`{}` was not ready within {limit:?}: {}",
                    self.program,
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Process::wait_until`] something accepts TCP connections on 127.0.0.1:`port`.
    ///
    /// # Errors
    /// As [`Process::wait_until`].
    pub fn wait_listening(&mut self, port: u16, limit: Duration) -> Result<(), FixtureError> {
        self.wait_until(limit, || TcpStream::connect(("127.0.0.1", port)).is_ok())
    }

    /// The exit status, once the process has exited (it is then no longer running).
    ///
    /// # Errors
    /// When the status cannot be read.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, FixtureError> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// The process id, while it runs.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last lines of the log, joined with ` | ` (empty when there is none).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut lines: Vec<&str> = text.lines().rev().take(LOG_TAIL_LINES).collect();
        lines.reverse();
        lines.join(" | ")
    }

    /// Kills the process (SIGKILL: a crash, no goodbye to its clients) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Either fails only when the process is gone already, which is the goal.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends SIGTERM to process `pid` (with `kill -TERM`: this workspace forbids `unsafe`).
///
/// # Errors
/// When `kill` cannot be run or reports a failure (no such process).
pub fn terminate(pid: u32) -> Result<(), FixtureError> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|e| FixtureError::new(format!("cannot run `kill`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(FixtureError::new(format!(
            "`kill -TERM {pid}` failed with {status}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("out.log")
    }

    #[test]
    fn a_missing_program_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = Process::spawn(
            &mut Command::new("token-testkit-no-such-program"),
            &log_in(&dir),
            "install it: apt-get install nothing",
        )
        .unwrap_err();
        let shown = e.to_string();
        assert!(
            shown.contains("was not found: install it: apt-get install nothing"),
            "{shown}"
        );
    }

    #[test]
    fn an_exit_before_ready_fails_with_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Process::spawn(
            Command::new("sh").args(["-c", "echo starting; echo broken config >&2; exit 3"]),
            &log_in(&dir),
            "",
        )
        .unwrap();
        let e = p.wait_until(Duration::from_secs(10), || false).unwrap_err();
        let shown = e.to_string();
        assert!(shown.contains("exit status: 3"), "{shown}");
        assert!(shown.contains("starting | broken config"), "{shown}");
        assert!(!p.is_running());
    }

    #[test]
    fn not_ready_in_time_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Process::spawn(Command::new("sleep").arg("30"), &log_in(&dir), "").unwrap();
        assert!(p.id().is_some());
        let started = Instant::now();
        let e = p
            .wait_until(Duration::from_millis(200), || false)
            .unwrap_err();
        assert!(e.to_string().contains("was not ready within"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!p.is_running() && p.id().is_none());
    }

    #[test]
    fn terminate_stops_a_process() {
        use std::os::unix::process::ExitStatusExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut p = Process::spawn(Command::new("sleep").arg("30"), &log_in(&dir), "").unwrap();
        terminate(p.id().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = p.exited().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "still running after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.signal(), Some(15));
        assert!(terminate(u32::MAX / 2).is_err(), "no such process");
    }
}
