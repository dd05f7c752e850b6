//! A process's CPU time and memory, read from Linux's `/proc` (the server under load is
//! another process on the same machine).

use crate::Error;

/// Clock ticks per second of `/proc/<pid>/stat`'s `utime` and `stime` (`USER_HZ`, fixed at 100
/// in Linux's user-space ABI on the architectures we run on).
const USER_HZ: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcSample {
    /// User plus system CPU time of all its threads, live and exited, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
}

impl ProcSample {
    /// Reads process `pid`.
    ///
    /// # Errors
    /// [`Error::Proc`] when the process is gone or `/proc` is not Linux's.
    pub fn read(pid: u32) -> Result<Self, Error> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_err(|e| Error::Proc(format!("/proc/{pid}/stat: {e}")))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|e| Error::Proc(format!("/proc/{pid}/status: {e}")))?;
        Ok(ProcSample {
            cpu_seconds: cpu_seconds(&stat)
                .ok_or_else(|| Error::Proc(format!("/proc/{pid}/stat: unexpected format")))?,
            rss_kib: status_kib(&status, "VmRSS:").unwrap_or(0),
            peak_rss_kib: status_kib(&status, "VmHWM:").unwrap_or(0),
        })
    }
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3), ppid (4), ... utime is field 14 and stime field 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(cpu_seconds(line), Some(3.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = ProcSample::read(std::process::id()).unwrap();
        assert!(me.rss_kib > 0 && me.peak_rss_kib >= me.rss_kib);
    }
}
