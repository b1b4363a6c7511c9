//! The node's local lease: how long it may serve without hearing from the coordination
//! service again.
//!
//! The ZooKeeper driver extends the lease to `t0 + 0.8 × session timeout` each time a request
//! sent at `t0` is answered. The server expires a session only after a full session timeout
//! without contact, counted from when it heard the client, which is no earlier than `t0`. So
//! the lease always runs out before the session can be expired and the node's actors handed to
//! someone else. The clock is monotonic and keeps running while the process is frozen, so a
//! node woken after `SIGSTOP` finds its lease expired.
//!
//! That argument needs the server to remember the session. When ZooKeeper loses its data, every
//! session vanishes at once, so a paused node may still hold a lease it was granted just before.
//! The leader covers this: having found the loss, it waits one session timeout before it
//! publishes any view that lets a node activate (see
//! [`protocol::recovery_view`](super::protocol::recovery_view)), which every such lease has
//! run out by.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use tokio::sync::watch;

/// No registration holds the lease.
const NO_HOLDER: u64 = u64::MAX;

/// A monotonic-clock lease, held by one registration (member id) at a time. Cheap to check
/// on every message.
///
/// The holder matters after a session expires: the node rejoins as a new member and is
/// granted a fresh lease, but whatever it decided or activated under the old registration
/// belongs to a membership the cluster has already replaced. Checks that name the
/// registration ([`Self::is_valid_for`]) fail for those, whatever the clock says.
#[derive(Debug)]
pub struct Lease {
    base: Instant,
    /// Nanoseconds after `base` until which the lease holds; 0 when revoked or never granted.
    until_ns: AtomicU64,
    /// The registration the lease belongs to. Written before `until_ns` on a grant, so a
    /// reader that sees the new expiry also sees the new holder.
    holder: AtomicU64,
    /// Earlier holders and when their leases ended, for dating what they did.
    ended: Mutex<Vec<(u64, Instant)>>,
    changes: watch::Sender<u64>,
}

impl Lease {
    /// A lease that has not been granted.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            until_ns: AtomicU64::new(0),
            holder: AtomicU64::new(NO_HOLDER),
            ended: Mutex::new(Vec::new()),
            changes: watch::channel(0).0,
        }
    }

    /// A lease that never runs out, held by registration 0 (a single node needs no
    /// coordination).
    pub fn forever() -> Self {
        let lease = Self::new();
        lease.holder.store(0, Ordering::Release);
        lease.until_ns.store(u64::MAX, Ordering::Release);
        lease
    }

    fn ns(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base)
            .as_nanos()
            .min(u64::MAX as u128 - 1) as u64
    }

    /// Grants the lease to registration `holder` until `until`. A new holder takes over only
    /// a lease that has ended (a session ends with [`Self::revoke`]); the same holder's
    /// lease is extended (never shortened).
    pub fn grant(&self, holder: u64, until: Instant) {
        let previous = self.holder.load(Ordering::Acquire);
        if previous != holder {
            if let Some(at) = self.expires_at() {
                if previous != NO_HOLDER {
                    let mut ended = self.ended.lock();
                    ended.push((previous, at.min(Instant::now())));
                    // A node rejoins rarely; keep the last few.
                    let excess = ended.len().saturating_sub(8);
                    ended.drain(..excess);
                }
            }
            self.revoke();
            self.holder.store(holder, Ordering::Release);
        }
        self.extend(until);
    }

    /// Extends the current holder's lease to `until` (never shortens it).
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

    /// Whether the node may serve now (under whichever registration holds the lease).
    pub fn is_valid(&self) -> bool {
        let until = self.until_ns.load(Ordering::Acquire);
        until == u64::MAX || self.ns(Instant::now()) < until
    }

    /// Whether registration `holder` may serve now: the lease is valid and still its own.
    pub fn is_valid_for(&self, holder: u64) -> bool {
        // Expiry first: a grant writes the holder before the expiry, so a valid expiry seen
        // here comes with its holder.
        self.is_valid() && self.holder.load(Ordering::Acquire) == holder
    }

    /// The registration the lease belongs to, if it was ever granted.
    pub fn holder(&self) -> Option<u64> {
        Some(self.holder.load(Ordering::Acquire)).filter(|h| *h != NO_HOLDER)
    }

    /// When registration `holder`'s lease ended; `None` while it is valid. For a holder
    /// this lease no longer remembers, the earliest end it does remember: later than the
    /// truth, never earlier.
    pub fn ended_for(&self, holder: u64) -> Option<Instant> {
        if self.is_valid_for(holder) {
            return None;
        }
        if self.holder() == Some(holder) {
            return self.expires_at();
        }
        let ended = self.ended.lock();
        ended
            .iter()
            .find(|(h, _)| *h == holder)
            .or_else(|| ended.first())
            .map(|(_, at)| *at)
            .or_else(|| self.expires_at())
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

    #[test]
    fn a_lease_belongs_to_one_registration() {
        let lease = Lease::new();
        let later = || Instant::now() + Duration::from_secs(60);
        lease.grant(3, later());
        assert!(lease.is_valid_for(3));
        assert_eq!(lease.ended_for(3), None);
        // The session expires; the node rejoins as member 5.
        lease.revoke();
        let ended = lease.expires_at().expect("ended");
        lease.grant(5, later());
        assert!(lease.is_valid());
        assert!(lease.is_valid_for(5));
        assert!(
            !lease.is_valid_for(3),
            "the old registration may not serve under the new one's lease"
        );
        assert_eq!(
            lease.ended_for(3),
            Some(ended),
            "dated when it really ended"
        );
        assert_eq!(lease.ended_for(5), None);
        // A registration it never knew is dated no earlier than the earliest it remembers.
        assert_eq!(lease.ended_for(1), Some(ended));
        // Granting to a new holder ends the old lease even if nobody revoked it.
        lease.grant(6, later());
        assert!(!lease.is_valid_for(5) && lease.is_valid_for(6));
        assert!(lease.ended_for(5).is_some_and(|at| at <= Instant::now()));
    }
}
