//! The node's local lease: how long it may serve without hearing from the coordination
//! service again.
//!
//! The ZooKeeper driver extends the lease to `t0 + 0.8 × session timeout` each time a request
//! sent at `t0` is answered. The server expires a session only after a full session timeout
//! without contact, counted from when it heard the client, which is no earlier than `t0`. So
//! the lease always runs out before the session can be expired and the node's actors handed to
//! someone else. The clock is monotonic and keeps running while the process is frozen, so a
//! node woken after `SIGSTOP` finds its lease expired.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use tokio::sync::watch;

/// A monotonic-clock lease. Cheap to check on every message.
#[derive(Debug)]
pub struct Lease {
    base: Instant,
    /// Nanoseconds after `base` until which the lease holds; 0 when revoked or never granted.
    until_ns: AtomicU64,
    changes: watch::Sender<u64>,
}

impl Lease {
    /// A lease that has not been granted.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            until_ns: AtomicU64::new(0),
            changes: watch::channel(0).0,
        }
    }

    /// A lease that never runs out (a single node needs no coordination).
    pub fn forever() -> Self {
        let lease = Self::new();
        lease.until_ns.store(u64::MAX, Ordering::Release);
        lease
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    /// Extends the lease to `until` (never shortens it).
    pub fn extend(&self, until: Instant) {
        let ns = self.ns(until).max(1);
        let before = self.until_ns.fetch_max(ns, Ordering::AcqRel);
        if before < ns {
            self.changes.send_replace(ns);
        }
    }

    /// Ends the lease now (if it has not ended already). [`Self::expires_at`] then tells when
    /// it stopped being valid.
    pub fn revoke(&self) {
        let now = self.ns(Instant::now()).max(1);
        let before = self
            .until_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |until| {
                (until > now).then_some(now)
            });
        if before.is_ok() {
            self.changes.send_replace(now);
        }
    }

    /// Whether the node may serve now.
    pub fn is_valid(&self) -> bool {
        let until = self.until_ns.load(Ordering::Acquire);
        until == u64::MAX || self.ns(Instant::now()) < until
    }

    /// When the lease runs (or ran) out; `None` when never granted, or unlimited.
    pub fn expires_at(&self) -> Option<Instant> {
        match self.until_ns.load(Ordering::Acquire) {
            0 | u64::MAX => None,
            ns => Some(self.base + Duration::from_nanos(ns)),
        }
    }

    /// How long the lease has left (zero when expired, `None` when unlimited).
    pub fn remaining(&self) -> Option<Duration> {
        match self.until_ns.load(Ordering::Acquire) {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(
                ns.saturating_sub(self.ns(Instant::now())),
            )),
        }
    }

    /// Notified whenever the lease is extended or revoked.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

impl Default for Lease {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_expires_and_revokes() {
        let lease = Lease::new();
        assert!(!lease.is_valid(), "not granted yet");
        lease.extend(Instant::now() + Duration::from_secs(60));
        assert!(lease.is_valid());
        lease.extend(Instant::now());
        assert!(
            lease.is_valid(),
            "extending to an earlier time never shortens"
        );
        lease.revoke();
        assert!(!lease.is_valid());
        assert!(
            lease.expires_at().is_some_and(|at| at <= Instant::now()),
            "it remembers when it ended"
        );
        lease.extend(Instant::now() - Duration::from_millis(1));
        assert!(!lease.is_valid(), "a lease granted in the past has expired");
        assert!(Lease::forever().is_valid());
        assert_eq!(Lease::forever().remaining(), None);
    }
}
