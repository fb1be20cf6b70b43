//! Admission at the connection cap: which connections hold a slot, what
//! each is doing, and which one gives its slot up when a new one arrives.
//!
//! Every admitted connection is in one of three states:
//!
//! - **fresh**: it has sent nothing yet;
//! - **head**: it has sent part of a request head, not all of it (a slow or
//!   trickling client; the header timeout bounds it);
//! - **busy**: a request is in flight (queued for a worker, being handled,
//!   or its response being written; the request timeout and the response
//!   byte budget bound it).
//!
//! Connections serve one request each, so there is no idle keep-alive
//! state: a connection is fresh, then in its head, then busy, then closed.
//!
//! At the cap, a new connection waits (up to [`ADMIT_WAIT`]) for a slot,
//! and takes one by evicting a connection that is not busy and was admitted
//! at least [`GRACE`] ago: fresh ones first, then those in their head,
//! oldest first. Busy connections are never evicted. The grace lets a
//! client that has just connected send its head before it can be evicted,
//! so a flood of new connections cannot push out a scrape in progress,
//! while 64 idle or trickling connections give way within [`GRACE`].

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a new connection is protected from eviction.
pub(super) const GRACE: Duration = Duration::from_millis(200);
/// How long a connection at the cap waits for a slot before its `503`.
pub(super) const ADMIT_WAIT: Duration = Duration::from_millis(500);

const FRESH: u8 = 0;
const HEAD: u8 = 1;
const BUSY: u8 = 2;

/// One admitted connection.
pub(super) struct Slot {
    admitted: Instant,
    state: AtomicU8,
    evicted: AtomicBool,
    evict: Notify,
}

impl Slot {
    /// A request is in flight: never evicted from now on.
    pub(super) fn busy(&self) {
        self.state.store(BUSY, Ordering::Relaxed);
    }

    /// Completes when the slot is taken from this connection.
    pub(super) async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// The slots of the admitted connections.
#[derive(Default)]
pub(super) struct Slots {
    next: std::sync::atomic::AtomicU64,
    all: Mutex<HashMap<u64, Arc<Slot>>>,
}

/// What [`Slots::evict_one`] did.
pub(super) enum Evict {
    /// Told a connection to give its slot up.
    Evicted,
    /// Nothing evictable yet; the earliest a connection becomes evictable.
    NotBefore(Instant),
    /// Every connection is busy.
    Nothing,
}

/// Removes its slot from the table when the connection ends.
pub(super) struct Registered {
    slots: Arc<Slots>,
    id: u64,
    pub(super) slot: Arc<Slot>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.slots
            .all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

impl Slots {
    /// Registers a newly admitted connection (fresh).
    pub(super) fn register(self: &Arc<Self>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot {
            admitted: Instant::now(),
            state: AtomicU8::new(FRESH),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        });
        self.all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, slot.clone());
        Registered {
            slots: self.clone(),
            id,
            slot,
        }
    }

    /// Evicts the best victim (see the module docs), if there is one.
    pub(super) fn evict_one(&self, now: Instant) -> Evict {
        let all = self.all.lock().unwrap_or_else(PoisonError::into_inner);
        let mut victim: Option<(&Arc<Slot>, (u8, Instant))> = None;
        let mut earliest: Option<Instant> = None;
        for slot in all.values() {
            let state = slot.state.load(Ordering::Relaxed);
            if state == BUSY || slot.evicted.load(Ordering::Relaxed) {
                continue;
            }
            let eligible = slot.admitted + GRACE;
            if eligible > now {
                earliest = Some(earliest.map_or(eligible, |e| e.min(eligible)));
                continue;
            }
            let key = (state, slot.admitted);
            if victim.as_ref().is_none_or(|(_, k)| key < *k) {
                victim = Some((slot, key));
            }
        }
        match (victim, earliest) {
            (Some((slot, _)), _) => {
                slot.evicted.store(true, Ordering::Relaxed);
                slot.evict.notify_one();
                Evict::Evicted
            }
            (None, Some(at)) => Evict::NotBefore(at),
            (None, None) => Evict::Nothing,
        }
    }
}

/// The connection's stream, noting its first byte (fresh -> head).
pub(super) struct Watched {
    pub(super) inner: TcpStream,
    pub(super) slot: Arc<Slot>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let _ =
                self.slot
                    .state
                    .compare_exchange(FRESH, HEAD, Ordering::Relaxed, Ordering::Relaxed);
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
