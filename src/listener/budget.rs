//! The byte budget of responses in flight: bodies rendered and not yet
//! written to their sockets.
//!
//! Handlers return whole bodies, and a client that never reads keeps its
//! body in the process until the request timeout (30 s by default). The
//! budget bounds what all such bodies hold together: a body is *charged*
//! when its handler returns and *released* when hyper has written its last
//! byte to the socket or the connection is dropped (the charge lives in the
//! body's `Bytes` owner, so it ends exactly when the last reference does).
//!
//! A body that does not fit gets `503` with `Retry-After` instead (counted
//! in `ServerStats::over_budget`). Two exceptions keep the server useful:
//! a body is always admitted when nothing is charged (so a body larger than
//! the whole budget can still be served, one at a time), and bodies up to
//! [`SMALL`] are never refused nor charged (`/metrics`, the index, errors:
//! a scrape is never refused because someone else's large responses are
//! stuck), which adds at most `max_connections` x 256 KiB (16 MiB at the
//! defaults) to the bound.
//!
//! Bytes held by unsent responses: at most `budget` + one body + that
//! small-response allowance. Rendering itself is bounded separately, by the
//! worker count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hyper::body::Bytes;

/// Bodies up to this size are neither charged nor refused.
pub(super) const SMALL: usize = 256 * 1024;

/// The budget, shared by the listener's connections.
pub(super) struct Budget {
    limit: u64,
    held: AtomicU64,
}

impl Budget {
    pub(super) fn new(limit: usize) -> Self {
        Budget {
            limit: limit as u64,
            held: AtomicU64::new(0),
        }
    }

    /// Bytes charged now.
    pub(super) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The body as `Bytes` carrying its charge, or `Err(body)` when it
    /// does not fit.
    pub(super) fn charge(self: &Arc<Self>, body: Vec<u8>) -> Result<Bytes, Vec<u8>> {
        if body.len() <= SMALL {
            return Ok(Bytes::from(body));
        }
        let n = body.len() as u64;
        let fits = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held == 0 || held.saturating_add(n) <= self.limit).then(|| held + n)
            })
            .is_ok();
        if !fits {
            return Err(body);
        }
        Ok(Bytes::from_owner(Charged {
            body,
            budget: self.clone(),
        }))
    }
}

/// A body and its charge, released when the last `Bytes` of it is dropped.
struct Charged {
    body: Vec<u8>,
    budget: Arc<Budget>,
}

impl AsRef<[u8]> for Charged {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        self.budget
            .held
            .fetch_sub(self.body.len() as u64, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_released_with_the_last_reference() {
        let b = Arc::new(Budget::new(3 * SMALL));
        let one = b.charge(vec![0; 2 * SMALL]).expect("fits");
        assert_eq!(b.held(), 2 * SMALL as u64);
        // Small bodies are free.
        assert!(b.charge(vec![0; SMALL]).is_ok());
        assert_eq!(b.held(), 2 * SMALL as u64);
        // Over the budget.
        assert_eq!(b.charge(vec![0; 2 * SMALL]).unwrap_err().len(), 2 * SMALL);
        let mut tail = one.slice(SMALL..);
        drop(one);
        assert_eq!(b.held(), 2 * SMALL as u64, "a slice still holds it");
        let _ = bytes_advance(&mut tail);
        drop(tail);
        assert_eq!(b.held(), 0);
        // Larger than the whole budget: admitted when nothing is held.
        let big = b.charge(vec![0; 4 * SMALL]).expect("alone");
        assert!(b.charge(vec![0; SMALL + 1]).is_err());
        drop(big);
        assert_eq!(b.held(), 0);
    }

    fn bytes_advance(b: &mut Bytes) -> usize {
        let n = b.len();
        *b = b.slice(n..);
        n
    }
}
