//! Tracked tasks: `Tracked<F>` is a `Future` when `F` is (and a `Stream`,
//! `FusedFuture`/`FusedStream`, `AsyncRead`, `AsyncWrite`, `AsyncBufRead`
//! behind the `futures` and `tokio` features), so `tokio::spawn(track!(fut, route = "/checkout"))`
//! counts live tasks per spawn site, with any executor.
//!
//! # Idle time
//!
//! Each poll reads the objects' clock once (~5 ns with the default coarse
//! clock) and compares it with the object's last poll. Only when the poll
//! falls in another ~1 ms epoch (`cohort::BASE_SHIFT`) does it move the
//! object in its site's *idle cohorts*, a `Cohorts` of polled live objects
//! keyed by last poll time (the same structure that ages live objects,
//! allocated at the site's first poll; two CAS on site-shared words). A
//! busy task polled many times a millisecond costs the clock read and a
//! compare per poll. A snapshot reads the cohorts as an idle-time
//! histogram and the longest idle time per site, with the error bounds of
//! live ages (see `cohort.rs`).
//!
//! A task is *stuck or forgotten* when it waits far longer than its
//! siblings live: [`stuck`] flags a site when at least
//! [`MIN_STUCK_TASKS`] polled live tasks, and more than half of them, have
//! not been polled for longer than `max(10 × the median lifetime of the
//! site's finished tasks, 1 s)` (the yardstick of `history.rs`'s outlived
//! rule). A task never polled yet is not in the cohorts: its wait is its
//! age, which the live ages already show.
//!
//! # Pinning
//!
//! The projection is `pin-project-lite`'s (see `Tracked`'s definition):
//! the value is structurally pinned, the header is not, and `Tracked<F>`
//! is `Unpin` exactly when `F` is.

use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::future::Future;

use super::tracked::Tracked;
use crate::format::fmt_duration;
use crate::histogram::Histogram;

/// At least this many polled live tasks must be idle that long.
pub(crate) const MIN_STUCK_TASKS: u64 = 3;

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let (value, header) = self.project_header();
        header.polled();
        value.poll(cx)
    }
}

#[cfg(feature = "futures")]
impl<S: futures_core::Stream> futures_core::Stream for Tracked<S> {
    type Item = S::Item;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        let (value, header) = self.project_header();
        header.polled();
        value.poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (**self).size_hint()
    }
}

#[cfg(feature = "futures")]
impl<S: futures_core::stream::FusedStream> futures_core::stream::FusedStream for Tracked<S> {
    fn is_terminated(&self) -> bool {
        (**self).is_terminated()
    }
}

#[cfg(feature = "futures")]
impl<F: futures_core::future::FusedFuture> futures_core::future::FusedFuture for Tracked<F> {
    fn is_terminated(&self) -> bool {
        (**self).is_terminated()
    }
}

#[cfg(feature = "tokio")]
mod tokio_io {
    use core::pin::Pin;
    use core::task::{Context, Poll};
    use std::io;

    use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};

    use super::Tracked;

    impl<T: AsyncRead> AsyncRead for Tracked<T> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let (value, header) = self.project_header();
            header.polled();
            value.poll_read(cx, buf)
        }
    }

    impl<T: AsyncWrite> AsyncWrite for Tracked<T> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let (value, header) = self.project_header();
            header.polled();
            value.poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let (value, header) = self.project_header();
            header.polled();
            value.poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            let (value, header) = self.project_header();
            header.polled();
            value.poll_shutdown(cx)
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let (value, header) = self.project_header();
            header.polled();
            value.poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            (**self).is_write_vectored()
        }
    }

    impl<T: AsyncBufRead> AsyncBufRead for Tracked<T> {
        fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
            let (value, header) = self.project_header();
            header.polled();
            value.poll_fill_buf(cx)
        }

        fn consume(self: Pin<&mut Self>, amt: usize) {
            let (value, _) = self.project_header();
            value.consume(amt)
        }
    }
}

/// The stuck-task rule (see the module doc): `idle_over(threshold)` counts
/// polled live tasks idle longer than a threshold in ns.
pub(crate) fn stuck(
    lifetimes: &Histogram,
    polled_live: u64,
    idle_over: impl Fn(u64) -> u64,
) -> Option<String> {
    let finished = lifetimes.count();
    if polled_live == 0 {
        return None;
    }
    let (p50, threshold) = super::history::yardstick(lifetimes)?;
    let n = idle_over(threshold);
    (n >= MIN_STUCK_TASKS && n * 2 > polled_live).then(|| {
        format!(
            "{n} of {polled_live} live task(s) have not been polled for more than {} (stuck or forgotten), while half of the {finished} finished ones lived at most {}",
            fmt_duration(Duration::from_nanos(threshold)),
            fmt_duration(p50),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn stuck_needs_most_tasks_idle_past_the_yardstick() {
        let mut l = Histogram::empty();
        l.record_n(Duration::from_millis(40), 100);
        let why = stuck(&l, 10, |t| if t <= S { 8 } else { 0 }).expect("flagged");
        assert!(why.starts_with("8 of 10 live task(s) have not been polled for more than 1s"));
        // Half or fewer idle: busy tasks, not stuck.
        assert!(stuck(&l, 10, |_| 5).is_none());
        // Too few finished tasks to know what "usual" is.
        let mut few = Histogram::empty();
        few.record_n(Duration::from_millis(40), 5);
        assert!(stuck(&few, 10, |_| 9).is_none());
        // Two stragglers are not a pattern.
        assert!(stuck(&l, 2, |_| 2).is_none());
    }
}
