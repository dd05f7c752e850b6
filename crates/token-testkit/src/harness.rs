//! [`TokioHarness`]: the token-refresh conformance suite's [`Harness`] on a tokio runtime, for
//! any backend, so each test only says how to make a fresh backend.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use token_refresh::conformance::{Backend, BoxFuture, Harness, TaskFuture};

/// The concurrency rounds of [`Harness::concurrency_rounds`]'s default.
const DEFAULT_ROUNDS: usize = 20;

/// A [`Harness`] that spawns tasks with `tokio::spawn` and sleeps with `tokio::time::sleep`
/// (so it must be used inside a tokio runtime with the time driver), and gets each fresh
/// backend from a closure.
///
/// ```
/// use std::sync::Arc;
/// use token_refresh::MemoryStore;
/// use token_refresh::conformance::{self, Backend};
/// use token_testkit::TokioHarness;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let memory = TokioHarness::new(|| async { Backend::new(Arc::new(MemoryStore::new())) });
/// conformance::issue_and_rotate(&memory).await;
/// # }
/// ```
pub struct TokioHarness<F> {
    make_backend: F,
    concurrency_rounds: usize,
}

impl<F> fmt::Debug for TokioHarness<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioHarness")
            .field("concurrency_rounds", &self.concurrency_rounds)
            .finish_non_exhaustive()
    }
}

impl<F, Fut> TokioHarness<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Backend> + Send + 'static,
{
    /// A harness whose fresh backends come from `make_backend` (a new store, or a connection
    /// with a fresh key prefix).
    pub fn new(make_backend: F) -> Self {
        TokioHarness {
            make_backend,
            concurrency_rounds: DEFAULT_ROUNDS,
        }
    }

    /// How many rounds the concurrency checks run (default 20).
    #[must_use]
    pub fn with_concurrency_rounds(mut self, rounds: usize) -> Self {
        self.concurrency_rounds = rounds;
        self
    }
}

impl<F, Fut> Harness for TokioHarness<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Backend> + Send + 'static,
{
    fn backend(&self) -> BoxFuture<'_, Backend> {
        Box::pin((self.make_backend)())
    }

    fn spawn(&self, task: TaskFuture) -> TaskFuture {
        let handle = tokio::spawn(task);
        Box::pin(async move {
            if let Err(e) = handle.await {
                std::panic::resume_unwind(e.into_panic());
            }
        })
    }

    fn sleep(&self, duration: Duration) -> TaskFuture {
        Box::pin(tokio::time::sleep(duration))
    }

    fn concurrency_rounds(&self) -> usize {
        self.concurrency_rounds
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use token_refresh::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn each_backend_comes_from_the_closure() {
        let made = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&made);
        let h = TokioHarness::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Backend::new(Arc::new(MemoryStore::new())) }
        })
        .with_concurrency_rounds(3);
        h.backend().await;
        h.backend().await;
        assert_eq!(made.load(Ordering::SeqCst), 2);
        assert_eq!(h.concurrency_rounds(), 3);
    }

    #[tokio::test]
    async fn a_panicking_task_panics_the_caller() {
        let h = TokioHarness::new(|| async { Backend::new(Arc::new(MemoryStore::new())) });
        let joined = tokio::spawn(h.spawn(Box::pin(async { panic!("task failed") }))).await;
        let panic = joined.unwrap_err().into_panic();
        assert_eq!(panic.downcast_ref::<&str>(), Some(&"task failed"));
        // A task that completes completes.
        h.spawn(Box::pin(h.sleep(Duration::from_millis(1)))).await;
    }
}
