//! A minimal Redis client speaking RESP2 directly over TCP, one command at a time: what the
//! fixtures use to check on their servers (`PING`, `INFO`, `CLUSTER SLOTS`), what tests use to
//! look at or tamper with stored bytes, and the load generator's raw `PING` round trip (a
//! client library would add its own cost to the very figure wanted as the baseline).
//!
//! Blocking I/O with timeouts: call it from async code through `spawn_blocking` where the
//! runtime must keep going meanwhile.

use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use crate::FixtureError;

/// Largest bulk reply read (an `INFO` or `KEYS` answer of a test server is far smaller).
const MAX_BULK: usize = 16 << 20;

/// A reply to a command (RESP2).
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

/// An open connection to one Redis server.
#[derive(Debug)]
pub struct Connection {
    stream: BufReader<TcpStream>,
}

impl Connection {
    /// Connects to `addr`; `timeout` bounds the connect and every later read and write.
    ///
    /// # Errors
    /// When the server cannot be reached in time.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, FixtureError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| FixtureError::new(format!("{addr}: {e}")))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        // One small command at a time: send each at once (round trips are measured).
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
        })
    }

    /// Connects to `redis://host:port` (no TLS, no authentication: a local test or benchmark
    /// server), as [`Connection::connect`].
    ///
    /// # Errors
    /// When the URL is not of that form, or as [`Connection::connect`].
    pub fn open(url: &str, timeout: Duration) -> Result<Self, FixtureError> {
        let host_port = url
            .strip_prefix("redis://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.contains(['@', '/']))
            .ok_or_else(|| FixtureError::new(format!("`{url}`: expected redis://host:port")))?;
        let addr = host_port
            .to_socket_addrs()
            .map_err(|e| FixtureError::new(format!("{host_port}: {e}")))?
            .next()
            .ok_or_else(|| FixtureError::new(format!("{host_port}: no address")))?;
        Self::connect(addr, timeout)
    }

    /// Sends one command and reads its reply (an error reply is a [`Reply::Error`], not an
    /// `Err`).
    ///
    /// # Errors
    /// On I/O errors and timeouts, or when the reply is not RESP2.
    pub fn command(&mut self, args: &[&str]) -> Result<Reply, FixtureError> {
        self.stream.get_mut().write_all(&encode(args))?;
        read_reply(&mut self.stream)
    }

    /// One `PING` round trip.
    ///
    /// # Errors
    /// As [`Connection::command`], or when the answer is not `PONG`.
    pub fn ping(&mut self) -> Result<(), FixtureError> {
        match self.command(&["PING"])? {
            Reply::Simple(pong) if pong == "PONG" => Ok(()),
            other => Err(FixtureError::new(format!("PING answered {other:?}"))),
        }
    }

    /// A field of `INFO <section>`, such as `used_memory` of `memory`.
    ///
    /// # Errors
    /// As [`Connection::command`], or when the field is absent.
    pub fn info_field(&mut self, section: &str, field: &str) -> Result<String, FixtureError> {
        let text = self
            .command(&["INFO", section])?
            .text()
            .ok_or_else(|| FixtureError::new(format!("INFO {section} answered no text")))?;
        text.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
            .ok_or_else(|| FixtureError::new(format!("INFO {section} has no {field}")))
    }
}

/// Sends one command to 127.0.0.1:`port` over a fresh connection and reads the reply.
///
/// # Errors
/// As [`Connection::connect`] and [`Connection::command`].
pub fn command(port: u16, args: &[&str], timeout: Duration) -> Result<Reply, FixtureError> {
    Connection::connect(SocketAddr::from(([127, 0, 0, 1], port)), timeout)?.command(args)
}

/// A command as a RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn read_line(r: &mut impl BufRead) -> Result<String, FixtureError> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let Some(line) = line.strip_suffix("\r\n") else {
        return Err(FixtureError::new("connection closed mid-reply"));
    };
    Ok(line.to_owned())
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
            if n > MAX_BULK {
                return Err(FixtureError::new(format!("a {n}-byte reply is too large")));
            }
            let mut buf = vec![0u8; n + 2];
            r.read_exact(&mut buf)?;
            if !buf.ends_with(b"\r\n") {
                return Err(FixtureError::new("a bulk reply without its CRLF"));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, FixtureError> {
        read_reply(&mut &bytes[..])
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(encode(&["GET", "k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(
            encode(&["SET", "", "é"]),
            "*3\r\n$3\r\nSET\r\n$0\r\n\r\n$2\r\né\r\n".as_bytes()
        );
    }

    #[test]
    fn every_reply_type_parses() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Simple("OK".into()));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap(),
            Reply::Error("ERR no".into())
        );
        assert_eq!(parse(b":-42\r\n").unwrap(), Reply::Int(-42));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(parse(b"*-1\r\n").unwrap(), Reply::Array(None));
        let nested = parse(b"*2\r\n$5\r\nhe\r\no\r\n*1\r\n:7\r\n").unwrap();
        assert_eq!(
            nested,
            Reply::Array(Some(vec![
                Reply::Bulk(Some(b"he\r\no".to_vec())),
                Reply::Array(Some(vec![Reply::Int(7)])),
            ]))
        );
        assert_eq!(nested.text(), None);
        assert_eq!(
            parse(b"$2\r\nhi\r\n").unwrap().text().as_deref(),
            Some("hi")
        );
        assert_eq!(parse(b":3\r\n").unwrap().int(), Some(3));
    }

    #[test]
    fn malformed_replies_are_errors() {
        for bad in [
            &b"+OK"[..],
            b"?what\r\n",
            b":x\r\n",
            b"$5\r\nab\r\n",
            b"$2\r\nabcd",
            b"*2\r\n:1\r\n",
            b"$99999999999\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn urls_other_than_redis_host_port_are_refused() {
        for url in [
            "rediss://127.0.0.1:1",
            "redis://u:p@127.0.0.1:1",
            "redis://h:1/0",
            "h:1",
        ] {
            let e = Connection::open(url, Duration::from_millis(100)).unwrap_err();
            assert!(
                e.to_string().contains("expected redis://host:port"),
                "{url}: {e}"
            );
        }
    }
}
