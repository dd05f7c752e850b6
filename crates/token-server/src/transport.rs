//! The gRPC listener's connections: one write per unary response instead of two.
//!
//! h2 keeps a DATA frame's payload apart from its write buffer ("chains" it) when the payload
//! is larger than 256 bytes and the connection supports vectored writes, and it cannot buffer
//! another frame behind a chained one. A unary gRPC response is HEADERS, one DATA frame and
//! the trailers (`grpc-status`), and every response of this service carries a token larger
//! than 256 bytes, so each one was written with two `writev` calls: the headers and data, then
//! the 10-byte trailers. Measured with `perf stat` on a `GenerateTokens` run: 1.84 `writev` per
//! request, each a loopback or NIC send that also wakes the client.
//!
//! [`CoalescingIo`] reports that it does not write vectored, so h2 copies payloads up to 1 KiB
//! into its buffer and writes headers, data and trailers together (and, under load, several
//! responses at once); it also collects the writes h2 makes between two flushes in a
//! [`BufWriter`] of [`WRITE_BUFFER`] bytes, so a larger payload, which h2 still chains, costs
//! no more calls than before. Reads go straight to the socket.
//!
//! With TLS, tonic's TLS layer wraps this type, so the records it writes are coalesced the
//! same way; what h2 sees is then the TLS stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tonic::transport::server::Connected;

/// Bytes collected between two flushes before they are written: a few unary responses. A
/// connection holds this buffer for its lifetime, beside h2's own.
pub const WRITE_BUFFER: usize = 4096;

/// A connection whose writes are collected until h2 flushes (see the module documentation).
#[derive(Debug)]
pub struct CoalescingIo<T> {
    inner: BufWriter<T>,
}

impl<T: AsyncWrite> CoalescingIo<T> {
    /// Wraps an accepted connection.
    pub fn new(io: T) -> Self {
        CoalescingIo {
            inner: BufWriter::with_capacity(WRITE_BUFFER, io),
        }
    }

    /// The connection.
    pub fn get_ref(&self) -> &T {
        self.inner.get_ref()
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for CoalescingIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescingIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// False, deliberately: it is what makes h2 copy small payloads rather than chain them.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<T: Connected + AsyncWrite> Connected for CoalescingIo<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.get_ref().connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::AsyncWriteExt as _;

    use super::*;

    /// A sink recording each write it is given.
    #[derive(Default)]
    struct Recorder {
        writes: Arc<Mutex<Vec<usize>>>,
        flushes: Arc<Mutex<usize>>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.lock().unwrap().push(buf.len());
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            *self.flushes.lock().unwrap() += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn reports_unvectored_writes_so_h2_copies_small_payloads() {
        assert!(!CoalescingIo::new(Recorder::default()).is_write_vectored());
    }

    #[tokio::test]
    async fn writes_between_flushes_reach_the_connection_as_one() {
        let recorder = Recorder::default();
        let (writes, flushes) = (recorder.writes.clone(), recorder.flushes.clone());
        let mut io = CoalescingIo::new(recorder);
        // What h2 writes for a chained response: its buffer (headers, frame head), the
        // payload, then the trailers.
        io.write_all(&[1; 30]).await.unwrap();
        io.write_all(&[2; 1500]).await.unwrap();
        io.write_all(&[3; 10]).await.unwrap();
        assert!(
            writes.lock().unwrap().is_empty(),
            "nothing written before the flush"
        );
        io.flush().await.unwrap();
        assert_eq!(*writes.lock().unwrap(), vec![1540]);
        assert_eq!(*flushes.lock().unwrap(), 1);
    }

    #[tokio::test]
    async fn a_write_larger_than_the_buffer_goes_straight_through_in_order() {
        let recorder = Recorder::default();
        let writes = recorder.writes.clone();
        let mut io = CoalescingIo::new(recorder);
        io.write_all(&[1; 100]).await.unwrap();
        io.write_all(&vec![2; WRITE_BUFFER + 1]).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(*writes.lock().unwrap(), vec![100, WRITE_BUFFER + 1]);
    }
}
