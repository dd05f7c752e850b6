//! When requests are sent: closed loop (each virtual client sends its next request as soon as
//! the previous one is answered) or open loop (requests are due on a fixed schedule, and
//! latency is measured from when a request was due, so a stalled server cannot hide its stall
//! by slowing the generator down: no coordinated omission).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::procfs::ProcSample;
use crate::redis;
use crate::report::{Report, Sample};
use crate::scenario::{Shared, Verifier, VirtualClient};
use crate::{Error, Options};

/// What one virtual client measured.
struct Tally {
    latency: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> Result<Self, Error> {
        // 1 µs to 100 s at 3 significant figures.
        let latency = Histogram::new_with_bounds(1, 100_000_000, 3)
            .map_err(|e| Error::Setup(format!("histogram: {e}")))?;
        Ok(Tally {
            latency,
            ok: 0,
            errors: BTreeMap::new(),
        })
    }
}

/// The time window the report covers, and the open-loop schedule.
#[derive(Clone, Copy)]
struct Schedule {
    /// When measurement starts (after the warm-up).
    measure_from: Instant,
    /// When no more requests are sent.
    until: Instant,
    /// Open loop: the start and the interval between due times.
    open: Option<(Instant, Duration)>,
}

async fn connect(target: &str, connections: usize) -> Result<Vec<Channel>, Error> {
    let endpoint = Endpoint::from_shared(target.to_owned())
        .map_err(|e| Error::Usage(format!("target `{target}`: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        // One HTTP/2 connection per channel.
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Error::Connect(format!("{target}: {e}")))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Runs one scenario as `options` say and measures it.
///
/// # Errors
/// [`Error::Connect`] when the server cannot be reached, [`Error::Setup`] when the virtual
/// clients cannot create their starting state (requests failing during the run are counted in
/// the report instead), [`Error::Usage`] for inconsistent options.
pub async fn run(options: &Options) -> Result<Report, Error> {
    if options.concurrency == 0 {
        return Err(Error::Usage("concurrency must be at least 1".into()));
    }
    if options.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err(Error::Usage("rate must be a positive number".into()));
    }
    let channels = connect(&options.target, options.connections).await?;
    let caller = options
        .caller_token
        .as_deref()
        .map(|t| {
            format!("Bearer {t}")
                .parse()
                .map_err(|_| Error::Usage("caller token is not a valid header value".into()))
        })
        .transpose()?;
    let verifier = match (options.verify, channels.first()) {
        (true, Some(channel)) => Some(Verifier::fetch(channel.clone()).await?),
        _ => None,
    };
    let shared = Arc::new(Shared {
        scenario: options.scenario,
        caller,
        htu: options.htu.clone(),
        verifier,
        family_lifetime: options.family_lifetime,
    });

    let mut clients = Vec::with_capacity(options.concurrency);
    for (id, channel) in (0..options.concurrency).zip(channels.iter().cycle()) {
        clients.push(VirtualClient::prepare(id, shared.clone(), channel.clone()).await?);
    }

    let start = Instant::now();
    let schedule = Schedule {
        measure_from: start + options.warmup,
        until: start + options.warmup + options.duration,
        open: options
            .rate
            .map(|rate| (start, Duration::from_secs_f64(1.0 / rate))),
    };
    let next_due = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn(sample(options.clone(), schedule));
    let mut workers = Vec::with_capacity(clients.len());
    for client in clients {
        workers.push(tokio::spawn(drive(client, schedule, next_due.clone())));
    }
    let mut total = Tally::new()?;
    for worker in workers {
        let tally = worker
            .await
            .map_err(|e| Error::Setup(format!("a virtual client stopped: {e}")))??;
        total
            .latency
            .add(&tally.latency)
            .map_err(|e| Error::Setup(format!("histogram: {e}")))?;
        total.ok += tally.ok;
        for (kind, n) in tally.errors {
            *total.errors.entry(kind).or_default() += n;
        }
    }
    let (cpu, timeline) = sampler
        .await
        .map_err(|e| Error::Setup(format!("sampler stopped: {e}")))?;
    Ok(Report::new(
        options,
        &total.latency,
        total.ok,
        total.errors,
        cpu,
        timeline,
    ))
}

async fn drive(
    mut client: VirtualClient,
    schedule: Schedule,
    next_due: Arc<AtomicU64>,
) -> Result<Tally, Error> {
    let mut tally = Tally::new()?;
    loop {
        let started = match schedule.open {
            Some((start, interval)) => {
                let slot = next_due.fetch_add(1, Ordering::Relaxed);
                let due = start + interval.mul_f64(slot as f64);
                if due >= schedule.until {
                    break;
                }
                tokio::time::sleep_until(due).await;
                due
            }
            None => {
                let now = Instant::now();
                if now >= schedule.until {
                    break;
                }
                now
            }
        };
        let outcome = client.send().await;
        if started < schedule.measure_from {
            continue;
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.latency.saturating_record(micros.max(1));
        match outcome {
            Ok(()) => tally.ok += 1,
            Err(failure) => *tally.errors.entry(failure.0).or_default() += 1,
        }
    }
    Ok(tally)
}

/// Reads the server's CPU time at the start and end of the measured window, and its memory
/// (and Redis's) every `sample_every` in between.
async fn sample(options: Options, schedule: Schedule) -> (Option<(f64, u64)>, Vec<Sample>) {
    let Some(pid) = options.server_pid else {
        return (None, Vec::new());
    };
    tokio::time::sleep_until(schedule.measure_from).await;
    let first = ProcSample::read(pid).ok();
    let mut timeline = Vec::new();
    let mut next = schedule.measure_from;
    while next < schedule.until {
        if let Ok(now) = ProcSample::read(pid) {
            let redis_bytes = match &options.redis_url {
                Some(url) => redis::used_memory(url).await.ok(),
                None => None,
            };
            timeline.push(Sample {
                seconds: next.duration_since(schedule.measure_from).as_secs_f64(),
                server_rss_kib: now.rss_kib,
                redis_used_memory_bytes: redis_bytes,
            });
        }
        next += options.sample_every;
        tokio::time::sleep_until(next.min(schedule.until)).await;
    }
    let last = ProcSample::read(pid).ok();
    let cpu = match (first, last) {
        (Some(a), Some(b)) => Some((b.cpu_seconds - a.cpu_seconds, b.peak_rss_kib)),
        _ => None,
    };
    (cpu, timeline)
}
