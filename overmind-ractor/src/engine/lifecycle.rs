//! The lifecycle of one actor id's activations on this node: one task per busy slot.
//!
//! ```text
//!            first message
//!   Idle ───────────────────▶ Starting ──load + spawn ok──▶ Active
//!    ▲                          │  ▲                          │ idle for passivate_after,
//!    │        load/start failed │  │ messages queued          │ shutdown, or a failed handler
//!    │  (queued calls get the   │  │ while stopping           ▼
//!    │   activation error)      │  └──────────────────── Stopping (draining the mailbox)
//!    └──────────────────────────┘                             │ mailbox drained, actor stopped
//!    ◀────────────────────────────── nothing queued ──────────┘
//! ```

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, atomic::Ordering},
};

use futures::FutureExt;

use crate::{
    ActivationError, Error, VirtualActor,
    engine::distribution,
    engine::host::{self, Loaded, Running},
    engine::mailbox::{Letter, Mailbox},
    engine::placement::{Decision, Handover},
    engine::reply,
    engine::slot::{AfterStop, Queued, Slot},
};
use overmind_core::{
    applied::AppliedCalls,
    codec::{self, Payload, Record, RecordError},
    migration::{Read, SchemaError},
};

/// What the lifecycle may do next.
enum Next {
    /// Activate here, allowed under this epoch, for this registration (member id), on this
    /// condition.
    Activate(Grant),
    /// The actor lives on another node.
    Elsewhere(overmind_core::membership::Member),
    /// It cannot be placed now.
    Unavailable(String),
}

/// What a lifecycle may activate under.
#[derive(Clone, Copy)]
struct Grant {
    /// The epoch of the view that decided.
    epoch: u64,
    /// The registration (member id) the activation belongs to.
    member: u64,
    /// What the stored record must show first.
    handover: Handover,
    /// The placement's change count when it decided: a wait after this grant failed ends at
    /// once if placement changed since (the change may be what would have let it through).
    decided_at: u64,
}

/// Waits until the actor can be activated here or is known to live elsewhere, for at most
/// the placement's patience.
async fn placeable<A: VirtualActor>(slot: &Slot<A>) -> Next {
    let rt = &slot.kind.rt;
    let placement = &rt.placement;
    let key = slot.key.to_string();
    // Subscribed before deciding, so a change made after a decision always wakes the wait.
    let mut changes = placement.subscribe();
    let mut shutdown = rt.shutdown_signal();
    let deadline = tokio::time::Instant::now() + placement.unavailable_after();
    loop {
        let decided_at = *changes.borrow_and_update();
        match placement.decide(&key) {
            Decision::Activate {
                epoch,
                member,
                handover,
            } => {
                return Next::Activate(Grant {
                    epoch,
                    member,
                    handover,
                    decided_at,
                });
            }
            Decision::Elsewhere(owner) => return Next::Elsewhere(owner),
            Decision::Wait(reason) => {
                if rt.is_closing() {
                    return Next::Unavailable(format!("{reason}, and this node is shutting down"));
                }
                // A decision changes only with the view or the lease, and placement announces
                // both (the lease watcher wakes at the lease's expiry); shutdown ends the wait.
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() {
                        return Next::Unavailable(reason.to_owned());
                    },
                    _ = shutdown.wait_for(|closing| *closing) => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        return Next::Unavailable(format!("{reason} (waited {:?})", placement.unavailable_after()));
                    }
                }
            }
        }
    }
}

/// Runs activations for `slot` until it goes idle. Started by the slot on its first message.
pub(crate) async fn run<A: VirtualActor>(slot: Arc<Slot<A>>) {
    let rt = slot.kind.rt.clone();
    // Since when another activation's lease has kept this one from starting.
    let mut blocked_since = None;
    loop {
        let grant = match placeable(&slot).await {
            Next::Activate(grant) => grant,
            Next::Elsewhere(owner) => {
                let queued = slot.give_up();
                tracing::debug!(key = %slot.key, owner = %owner.name, messages = queued.len(), "passing the actor's messages to its owner");
                distribution::forward(slot.kind.elsewhere(), &slot.key, &owner, queued);
                break;
            }
            Next::Unavailable(reason) => {
                fail_unavailable(&slot, reason);
                break;
            }
        };
        if !slot.claim(grant.epoch) {
            continue; // retired in a newer epoch while deciding: decide again
        }
        if let Some(done) = slot.take_delete() {
            match delete_record(&slot, grant).await {
                Err(blocked) if is_blocked(&blocked) && !rt.is_closing() => {
                    slot.requeue_delete(done);
                    if wait_out(&slot, grant, &blocked, &mut blocked_since).await {
                        continue;
                    }
                    break;
                }
                outcome => {
                    blocked_since = None;
                    let _ = done.send(outcome.map_err(|cause| Error::DeleteFailed {
                        key: slot.key.clone(),
                        cause,
                    }));
                    if let AfterStop::Done = slot.stopped() {
                        break;
                    }
                    continue;
                }
            }
        }
        match activate(&slot, grant).await {
            Err(blocked) if is_blocked(&blocked) && !rt.is_closing() => {
                // Another activation's lease stands in the way for now (a newer epoch, a
                // concurrent writer, or a previous owner still stopping): wait for what
                // clears it, then decide again.
                tracing::debug!(key = %slot.key, %blocked, "activation waits");
                if wait_out(&slot, grant, &blocked, &mut blocked_since).await {
                    continue;
                }
                break;
            }
            Err(cause) => {
                rt.stats.activation_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key = %slot.key, %cause, "activation failed");
                let error = Error::ActivationFailed {
                    key: slot.key.clone(),
                    cause,
                };
                let (queued, delete_next) = slot.give_up_until_delete();
                fail_all(queued, error);
                if delete_next {
                    continue; // the delete waiting behind them still runs
                }
                break;
            }
            Ok(Started {
                host,
                mailbox,
                activation,
            }) => {
                blocked_since = None;
                tracing::debug!(key = %slot.key, epoch = grant.epoch, handover = ?grant.handover, "activated");
                rt.activation_event(
                    &slot.key,
                    activation,
                    grant.member,
                    crate::ActivationEventKind::Started,
                );
                rt.stats.activations.fetch_add(1, Ordering::Relaxed);
                rt.stats.active.fetch_add(1, Ordering::Relaxed);
                slot.activated(&mailbox);
                drop(mailbox);
                // The host catches the application's panics; one of its own must still leave
                // the slot able to serve again.
                if let Err(panic) = AssertUnwindSafe(host.serve()).catch_unwind().await {
                    let error = Error::HandlerFailed {
                        key: slot.key.clone(),
                        reason: format!("the activation host {}", host::panic_message(panic)),
                    };
                    tracing::error!(key = %slot.key, %error, "activation host panicked");
                    slot.begin_stop();
                    slot.gate.close(&Err(error), &mut Vec::new());
                }
                rt.stats.active.fetch_sub(1, Ordering::Relaxed);
                if let AfterStop::Done = slot.stopped() {
                    break;
                }
            }
        }
    }
    drop(slot);
    rt.lifecycle_ended();
}

/// Gives up the claim after `blocked` and waits until trying again is worth it (true), within
/// `unavailable_after` of when the first block began; otherwise fails what the slot holds.
async fn wait_out<A: VirtualActor>(
    slot: &Slot<A>,
    grant: Grant,
    blocked: &ActivationError,
    blocked_since: &mut Option<tokio::time::Instant>,
) -> bool {
    slot.unclaim();
    let patience = slot.kind.rt.placement.unavailable_after();
    let since = *blocked_since.get_or_insert_with(tokio::time::Instant::now);
    if retry_after_blocked(slot, grant, blocked, since + patience).await {
        return true;
    }
    fail_unavailable(slot, format!("{blocked} (waited {patience:?})"));
    false
}

/// Whether `error` only means another activation's lease is in the way for now.
fn is_blocked(error: &ActivationError) -> bool {
    matches!(
        error,
        ActivationError::Superseded { .. }
            | ActivationError::Contended
            | ActivationError::NotReleased { .. }
    )
}

/// Waits until activation is worth trying again after `blocked`, and says whether it is:
/// for a lease from a newer epoch, once this node's view has reached that epoch; for a lease
/// not released yet, once a release notice arrives or the view changes (the
/// epoch becoming stable settles the actor here); after a concurrent writer, after a short
/// pause. False once `deadline` passes first.
async fn retry_after_blocked<A: VirtualActor>(
    slot: &Slot<A>,
    grant: Grant,
    blocked: &ActivationError,
    deadline: tokio::time::Instant,
) -> bool {
    let rt = &slot.kind.rt;
    let placement = &rt.placement;
    let mut changes = placement.subscribe();
    let mut shutdown = rt.shutdown_signal();
    match blocked {
        ActivationError::Superseded { held, .. } => loop {
            if placement.epoch() >= *held {
                return true;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return false },
                // The next attempt sees the shutdown and fails its messages with the cause.
                _ = shutdown.wait_for(|closing| *closing) => return true,
                _ = tokio::time::sleep_until(deadline) => return false,
            }
        },
        ActivationError::NotReleased { node, .. } => {
            if let Some(distribution) = rt.distribution() {
                distribution.ask_release(&slot.key, node);
            }
            // The epoch may have become stable (settling the actor here, and forgetting the
            // notices) while the record was read.
            if *changes.borrow_and_update() != grant.decided_at {
                return true;
            }
            tokio::select! {
                _ = slot.released.notified() => true,
                changed = changes.changed() => changed.is_ok(),
                _ = shutdown.wait_for(|closing| *closing) => true,
                _ = tokio::time::sleep_until(deadline) => false,
            }
        }
        _ => {
            // The other writer's save has landed by the time the record is read again.
            let pause = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
            tokio::time::sleep_until(pause.min(deadline)).await;
            tokio::time::Instant::now() < deadline
        }
    }
}

/// Gives the slot up and fails every message that waited in it with `error`.
fn fail_queued<A: VirtualActor>(slot: &Slot<A>, error: Error) {
    fail_all(slot.give_up(), error);
}

/// Gives the slot up because the actor cannot be served here now: every message that
/// waited gets [`Error::Unavailable`] with `reason`.
fn fail_unavailable<A: VirtualActor>(slot: &Slot<A>, reason: String) {
    tracing::warn!(key = %slot.key, %reason, "cannot serve the actor; failing its queued messages");
    let key = slot.key.clone();
    fail_queued(slot, Error::Unavailable { key, reason });
}

fn fail_all<M>(queued: Vec<Queued<M>>, error: Error) {
    for q in queued {
        match q {
            Queued::Message(Letter {
                relay: Some(relay), ..
            }) => reply::fail(&relay, error.clone()),
            Queued::Message(Letter { relay: None, .. }) => {}
            Queued::Delete(done) => {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
}

/// Deletes the actor's record, fenced like a save: refused while a newer epoch's lease
/// holds it, and conditional on the version read. No activation runs meanwhile (the
/// lifecycle is between activations), so nothing can write the state back.
async fn delete_record<A: VirtualActor>(
    slot: &Slot<A>,
    grant: Grant,
) -> Result<(), ActivationError> {
    let rt = &slot.kind.rt;
    let Some(stored) = rt
        .store
        .load(&slot.key)
        .await
        .map_err(ActivationError::Store)?
    else {
        return Ok(());
    };
    // A damaged record can still be deleted (an erasure request must be able to): the
    // conditional delete fences it as well as a readable lease would.
    let lease = Record::decode(&stored.bytes).ok().and_then(|r| r.lease);
    check_lease(slot, lease.as_ref(), grant)?;
    rt.store
        .delete(&slot.key, stored.version)
        .await
        .map_err(fenced)
}

/// Whether the stored lease lets this grant take the actor: not one from a newer epoch, and,
/// before the epoch is stable here, one whose activation its node said has stopped. The
/// write that follows is conditional on the record read, so the check holds when it lands.
fn check_lease<A: VirtualActor>(
    slot: &Slot<A>,
    lease: Option<&overmind_core::codec::Lease>,
    grant: Grant,
) -> Result<(), ActivationError> {
    let Some(lease) = lease else {
        return Ok(());
    };
    if lease.epoch > grant.epoch {
        return Err(ActivationError::Superseded {
            held: lease.epoch,
            ours: grant.epoch,
        });
    }
    if grant.handover == Handover::IfReleased && !was_released(slot, lease) {
        return Err(ActivationError::NotReleased {
            node: lease.node.clone(),
            epoch: lease.epoch,
        });
    }
    Ok(())
}

fn was_released<A: VirtualActor>(slot: &Slot<A>, lease: &overmind_core::codec::Lease) -> bool {
    slot.kind.was_released(slot.key.id(), lease)
}

/// A conditional write's failure: another writer got there first (retried), or the store
/// failed.
fn fenced(e: overmind_core::StoreError) -> ActivationError {
    if e.is_conflict() {
        ActivationError::Contended
    } else {
        ActivationError::Store(e)
    }
}

/// Reads the stored state by the schema that wrote it. A migrated state is encoded in the
/// current schema, and a state stored without a shape is stamped with it, to be stored
/// before the activation serves.
fn read_state<A: VirtualActor>(
    slot: &Slot<A>,
    payload: Option<&Payload>,
) -> Result<Option<(A::PersistedState, Payload, Fresh)>, ActivationError> {
    let Some(payload) = payload else {
        return Ok(None);
    };
    let schema = &slot.kind.schema;
    let read = schema.read(payload).map_err(|e| match e {
        // The current type does not read its own version: damage, or a serde shape that
        // does not round-trip, rather than a schema change.
        SchemaError::Undecodable { stored, cause, .. }
            if stored.version == schema.current().version =>
        {
            ActivationError::UndecodableState(cause)
        }
        e => ActivationError::Schema(e),
    })?;
    match read {
        // Stored before records had a shape: stamp it with this build's, so a later
        // undeclared change of the type is caught for this actor too.
        Read::Current(state) if schema.is_stale(payload.schema) => {
            let stamped = Payload {
                schema: schema.current(),
                bytes: payload.bytes.clone(),
            };
            Ok(Some((state, stamped, Fresh::Rewrite)))
        }
        Read::Current(state) => Ok(Some((state, payload.clone(), Fresh::Stored))),
        Read::Migrated(state) => {
            let bytes = codec::encode_state(&state).map_err(|e| {
                ActivationError::Schema(SchemaError::MigrationFailed {
                    stored: payload.schema,
                    reason: format!("the migrated state does not encode: {e}"),
                })
            })?;
            let migrated = Payload {
                schema: schema.current(),
                bytes,
            };
            Ok(Some((state, migrated, Fresh::Rewrite)))
        }
    }
}

/// Whether the state an activation starts from is already in the store as it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fresh {
    Stored,
    /// Migrated from an older schema, or stamped with the current shape: the store still
    /// holds the old record, and the activation stores the new one before it serves.
    Rewrite,
}

/// A host ready to serve.
struct Started<A: VirtualActor> {
    host: Running<A>,
    mailbox: Mailbox<A::Msg>,
    /// Its activation number (its lease's, in a cluster).
    activation: u64,
}

/// Loads the stored state, takes the lease (in a cluster) and spawns the host, for
/// registration `grant.member`.
async fn activate<A: VirtualActor>(
    slot: &Arc<Slot<A>>,
    grant: Grant,
) -> Result<Started<A>, ActivationError> {
    let rt = &slot.kind.rt;
    let (version, record) = load_record(slot).await?;
    let stored = read_state(slot, record.as_ref().and_then(|r| r.payload.as_ref()))?;
    let applied_bytes = record
        .as_ref()
        .map(|r| r.applied.clone())
        .unwrap_or_default();
    let applied = AppliedCalls::decode(&applied_bytes)
        .map_err(|_| ActivationError::CorruptRecord(RecordError::Malformed("applied calls")))?;
    let (version, lease) = store_before_serving(slot, grant, version, record, &stored).await?;
    let activation = lease
        .as_ref()
        .map_or_else(|| rt.placement.next_activation(), |l| l.activation);
    let loaded = Loaded {
        version,
        stored: stored.map(|(state, payload, _)| (state, payload.bytes)),
        lease,
        activation,
        member: grant.member,
        applied: (applied, applied_bytes),
    };
    let (host, mailbox) = host::start(slot, loaded).await?;
    Ok(Started {
        host,
        mailbox,
        activation,
    })
}

/// The actor's stored record and its version (absent if never stored).
async fn load_record<A: VirtualActor>(
    slot: &Slot<A>,
) -> Result<(overmind_core::Version, Option<Record>), ActivationError> {
    let stored = slot
        .kind
        .rt
        .store
        .load(&slot.key)
        .await
        .map_err(ActivationError::Store)?;
    match stored {
        None => Ok((overmind_core::Version::ABSENT, None)),
        Some(stored) => Ok((
            stored.version,
            Some(
                Record::decode_for(&stored.bytes, A::KIND)
                    .map_err(ActivationError::CorruptRecord)?,
            ),
        )),
    }
}

/// What must be stored before the activation serves, returning the record's new version and
/// the lease taken. In a cluster, the lease: the write moves the record's version, so any
/// other activation of this actor can no longer save (fencing), and every save of this one is
/// conditional on the version it returns; a migrated state goes in the same write. On a
/// single node, only a migrated state, conditional like every save.
async fn store_before_serving<A: VirtualActor>(
    slot: &Slot<A>,
    grant: Grant,
    version: overmind_core::Version,
    record: Option<Record>,
    stored: &Option<(A::PersistedState, Payload, Fresh)>,
) -> Result<(overmind_core::Version, Option<overmind_core::codec::Lease>), ActivationError> {
    let rt = &slot.kind.rt;
    let state = stored
        .as_ref()
        .map(|(_, p, _)| (p.schema, p.bytes.as_slice()));
    let Some(lease) = rt.placement.new_lease(grant.epoch, grant.member) else {
        if !stored
            .as_ref()
            .is_some_and(|(_, _, f)| *f == Fresh::Rewrite)
        {
            return Ok((version, None));
        }
        let applied = record.as_ref().map_or(&[][..], |r| &r.applied);
        let bytes = codec::encode_record(A::KIND, None, state, applied);
        let version = rt
            .store
            .save(&slot.key, version, &bytes)
            .await
            .map_err(fenced)?;
        return Ok((version, None));
    };
    check_lease(slot, record.as_ref().and_then(|r| r.lease.as_ref()), grant)?;
    let applied = record.as_ref().map_or(&[][..], |r| &r.applied);
    let taken = codec::encode_record(A::KIND, Some(&lease), state, applied);
    let version = rt
        .store
        .save(&slot.key, version, &taken)
        .await
        .map_err(fenced)?;
    Ok((version, Some(lease)))
}
