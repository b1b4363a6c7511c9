//! Reading states that older releases stored: a kind's declared schema, the migrations from
//! its older versions, and the rule that decides how a stored state is read.
//!
//! bincode is not self-describing, so a state is only ever decoded as the type that wrote
//! it: every record says which schema wrote its state (the kind's `state_version` and a
//! fingerprint of the state type's serde shape, see [`crate::schema`]), and loading
//! picks the reader by that, never by trying.

use std::{collections::BTreeMap, fmt, sync::Arc};

use crate::{
    ActorKey, StateStore, StoreError,
    codec::{self, CodecError, Payload, Record, SchemaId},
    schema::{self, Fingerprint},
};
use serde::de::DeserializeOwned;

/// How a kind reads states stored by older versions of its state type: one step per old
/// version, each decoding the old type and converting it to the current one.
///
/// `#[virtual_actor(state_version = 3, migrate_from(1 = ProfileV1, 2 = ProfileV2))]` builds
/// this for you from a chain of `From` impls (`ProfileV1` → `ProfileV2` → the current
/// state). Write it by hand (`migrations = "path::to::fn"`) for a conversion that can fail:
///
/// ```
/// # use overmind_core::migration::Migrations;
/// # use serde::Deserialize;
/// #[derive(Deserialize)]
/// struct ProfileV1 { name: String }
/// struct Profile { first: String, last: String }
///
/// fn profile_migrations() -> Migrations<Profile> {
///     Migrations::new().from_version(1, |old: ProfileV1| match old.name.split_once(' ') {
///         Some((first, last)) => Ok(Profile { first: first.into(), last: last.into() }),
///         None => Err(format!("{:?} is not a first and a last name", old.name)),
///     })
/// }
/// ```
pub struct Migrations<S> {
    steps: BTreeMap<u32, Step<S>>,
    /// A version given twice: reported when the kind is registered.
    duplicate: Option<u32>,
}

type ReadOld<S> = Arc<dyn Fn(&[u8]) -> Result<S, StepError> + Send + Sync>;

struct Step<S> {
    type_name: &'static str,
    trace: fn() -> Result<schema::Shape, schema::TraceError>,
    read: ReadOld<S>,
}

enum StepError {
    Decode(CodecError),
    Convert(String),
}

impl<S> Default for Migrations<S> {
    fn default() -> Self {
        Self {
            steps: BTreeMap::new(),
            duplicate: None,
        }
    }
}

impl<S> fmt::Debug for Migrations<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let steps: Vec<_> = self.steps.iter().map(|(v, s)| (v, s.type_name)).collect();
        f.debug_struct("Migrations").field("from", &steps).finish()
    }
}

impl<S: 'static> Migrations<S> {
    /// No migrations: only states of the current version are read.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads states stored under `version` as `Old` (the state type as it was then, kept as a
    /// plain serde struct), then converts them with `convert`. A conversion error fails that
    /// actor's activation and leaves its record as it is.
    pub fn from_version<Old, E>(
        mut self,
        version: u32,
        convert: impl Fn(Old) -> Result<S, E> + Send + Sync + 'static,
    ) -> Self
    where
        Old: DeserializeOwned + 'static,
        E: fmt::Display,
    {
        let read: ReadOld<S> = Arc::new(move |bytes: &[u8]| {
            let old = codec::decode_state::<Old>(bytes).map_err(StepError::Decode)?;
            convert(old).map_err(|e| StepError::Convert(e.to_string()))
        });
        let step = Step {
            type_name: std::any::type_name::<Old>(),
            trace: schema::trace::<Old>,
            read,
        };
        if self.steps.insert(version, step).is_some() {
            self.duplicate.get_or_insert(version);
        }
        self
    }
}

/// Why a stored state cannot be read by this build. The record is left as it is.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The state type's shape differs from the one that stored the state, under the same
    /// version: the type changed and nobody declared it.
    #[error(
        "its state was stored by {stored}, but this build's {type_name} is {registered}: the \
         state type changed without a new state_version, and reading it would misread it. \
         Keep the old type as a plain serde struct, raise `state_version` to {next}, and add \
         `migrate_from({version} = OldType)` (see the README, \"Changing a state type\")",
        version = stored.version,
        next = stored.version.saturating_add(1)
    )]
    UndeclaredChange {
        /// What stored the state.
        stored: SchemaId,
        /// What this build registered.
        registered: SchemaId,
        /// The current state type.
        type_name: &'static str,
    },
    /// The state is from an older version this build has no migration from.
    #[error(
        "its state was stored by {stored}; this build's state is {registered} and it has no \
         migration from version {version} (it reads versions {readable}). Add \
         `migrate_from({version} = TheStateTypeOfVersion{version})` to the kind",
        version = stored.version,
        readable = Versions(readable)
    )]
    NoMigration {
        /// What stored the state.
        stored: SchemaId,
        /// What this build registered.
        registered: SchemaId,
        /// The versions this build reads.
        readable: Vec<u32>,
    },
    /// The state was stored by a newer release than this one.
    #[error(
        "its state was stored by {stored}, newer than this build's {registered}: a newer \
         release wrote it. Run that release; states are never read by an older one"
    )]
    Newer {
        /// What stored the state.
        stored: SchemaId,
        /// What this build registered.
        registered: SchemaId,
    },
    /// The type kept to read an old version is not the type that stored it.
    #[error(
        "its state was stored by {stored}, but {type_name}, the type this build reads version \
         {version} with, has shape {kept}: it is not the type that stored the state. Restore \
         the old type's fields exactly as they were",
        version = stored.version
    )]
    OldTypeMismatch {
        /// What stored the state.
        stored: SchemaId,
        /// The old type registered for that version.
        type_name: &'static str,
        /// Its shape.
        kept: Fingerprint,
    },
    /// The state does not decode as the type registered for its version.
    #[error(
        "its state, stored by {stored}, does not decode as {type_name}: {cause}. The record \
         is damaged, or the type kept for that version is not the one that stored it"
    )]
    Undecodable {
        /// What stored the state.
        stored: SchemaId,
        /// The type it was decoded as.
        type_name: &'static str,
        /// The decoder's explanation.
        cause: CodecError,
    },
    /// The migration's conversion refused the old state.
    #[error(
        "migrating its state from {stored} failed: {reason}. Fix the conversion (or the \
         stored state) and activate the actor again"
    )]
    MigrationFailed {
        /// What stored the state.
        stored: SchemaId,
        /// The conversion's error.
        reason: String,
    },
}

struct Versions<'a>(&'a [u32]);

impl fmt::Display for Versions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

/// A kind's migrations were declared wrongly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidMigrations(pub String);

/// A registered kind's schema: the current one and the steps from older ones, with every
/// type's shape traced once, when it is made.
pub struct KindSchema<S> {
    current: SchemaId,
    type_name: &'static str,
    steps: BTreeMap<u32, ReadyStep<S>>,
}

struct ReadyStep<S> {
    type_name: &'static str,
    shape: Fingerprint,
    read: ReadOld<S>,
}

/// How a stored state was read.
#[derive(Debug)]
pub enum Read<S> {
    /// It is of the current schema.
    Current(S),
    /// It was migrated from an older version; it is not stored yet.
    Migrated(S),
}

/// A type's fingerprint, or UNKNOWN (logged) for one the tracer cannot follow: such a
/// kind is checked by its version alone.
fn fingerprint_of(
    kind: &str,
    type_name: &str,
    trace: fn() -> Result<schema::Shape, schema::TraceError>,
) -> Fingerprint {
    // The trace runs the type's own `Deserialize`, which may panic on the sample values.
    let traced = std::panic::catch_unwind(trace).unwrap_or_else(|_| {
        Err(schema::TraceError::Untraceable {
            type_name: "",
            site: String::new(),
            reason: "its Deserialize panicked".into(),
        })
    });
    match traced {
        Ok(shape) => shape.fingerprint(),
        Err(error) => {
            tracing::warn!(
                kind,
                type_name,
                %error,
                "cannot trace the state type's serde shape: changes to it are checked by state_version alone"
            );
            Fingerprint::UNKNOWN
        }
    }
}

impl<S: DeserializeOwned + 'static> KindSchema<S> {
    /// Traces the current state type (`S`, declared as `version`) and every old one, and
    /// checks the declaration: versions from 1, every migration from an older version.
    pub fn new(
        kind: &str,
        version: u32,
        migrations: Migrations<S>,
    ) -> Result<Self, InvalidMigrations> {
        if version == 0 {
            return Err(InvalidMigrations("state_version must be at least 1".into()));
        }
        if let Some(v) = migrations.duplicate {
            return Err(InvalidMigrations(format!(
                "two migrations from version {v}"
            )));
        }
        if let Some((&v, _)) = migrations.steps.range(version..).next() {
            return Err(InvalidMigrations(format!(
                "a migration from version {v}, which is not older than state_version {version}"
            )));
        }
        if migrations.steps.contains_key(&0) {
            return Err(InvalidMigrations("a migration from version 0".into()));
        }
        let type_name = std::any::type_name::<S>();
        let current = SchemaId {
            version,
            fingerprint: fingerprint_of(kind, type_name, schema::trace::<S>),
        };
        let steps = migrations
            .steps
            .into_iter()
            .map(|(v, step)| {
                let shape = fingerprint_of(kind, step.type_name, step.trace);
                let ready = ReadyStep {
                    type_name: step.type_name,
                    shape,
                    read: step.read,
                };
                (v, ready)
            })
            .collect();
        Ok(Self {
            current,
            type_name,
            steps,
        })
    }

    /// The schema this build stores states with.
    pub fn current(&self) -> SchemaId {
        self.current
    }

    /// Reads a stored state by the schema that wrote it: the current type, a migration, or
    /// a typed refusal. Never a guess.
    pub fn read(&self, payload: &Payload) -> Result<Read<S>, SchemaError> {
        let stored = payload.schema;
        let differs = |a: Fingerprint, b: Fingerprint| a.is_known() && b.is_known() && a != b;
        if stored.version > self.current.version {
            return Err(SchemaError::Newer {
                stored,
                registered: self.current,
            });
        }
        if stored.version == self.current.version {
            if differs(stored.fingerprint, self.current.fingerprint) {
                return Err(SchemaError::UndeclaredChange {
                    stored,
                    registered: self.current,
                    type_name: self.type_name,
                });
            }
            return codec::decode_state::<S>(&payload.bytes)
                .map(Read::Current)
                .map_err(|cause| SchemaError::Undecodable {
                    stored,
                    type_name: self.type_name,
                    cause,
                });
        }
        let Some(step) = self.steps.get(&stored.version) else {
            return Err(SchemaError::NoMigration {
                stored,
                registered: self.current,
                readable: self
                    .steps
                    .keys()
                    .copied()
                    .chain([self.current.version])
                    .collect(),
            });
        };
        if differs(stored.fingerprint, step.shape) {
            return Err(SchemaError::OldTypeMismatch {
                stored,
                type_name: step.type_name,
                kept: step.shape,
            });
        }
        match (step.read)(&payload.bytes) {
            Ok(state) => Ok(Read::Migrated(state)),
            Err(StepError::Decode(cause)) => Err(SchemaError::Undecodable {
                stored,
                type_name: step.type_name,
                cause,
            }),
            Err(StepError::Convert(reason)) => Err(SchemaError::MigrationFailed { stored, reason }),
        }
    }

    /// Whether a stored state should be rewritten in the current schema: it is of an older
    /// version, or of the current one without a recorded shape (stored before records had
    /// one) while this build knows its shape. Until it is, an undeclared change of the type
    /// in a later release cannot be caught for it.
    pub fn is_stale(&self, stored: SchemaId) -> bool {
        stored.version < self.current.version
            || (stored.version == self.current.version
                && !stored.fingerprint.is_known()
                && self.current.fingerprint.is_known())
    }
}

/// How far an eager migration ([`migrate_kind`]; `Overmind::migrate` in overmind-ractor) got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationProgress {
    /// Actors looked at so far.
    pub scanned: u64,
    /// States rewritten in the current schema.
    pub migrated: u64,
    /// Actors that needed nothing: their state already is of the current version (or
    /// they hold no state).
    pub current: u64,
    /// Actors whose state could not be migrated (their records are left as they are).
    pub failures: u64,
    /// The first [`MAX_REPORTED_FAILURES`] of those: the id and why.
    pub failed: Vec<(String, String)>,
    /// The last id looked at, in the store's listing order: pass it to resume.
    pub last_id: Option<String>,
}

/// How many failed ids a [`MigrationProgress`] keeps (it counts them all).
pub const MAX_REPORTED_FAILURES: usize = 1000;

/// How many ids an eager migration lists at a time.
const PAGE: usize = 256;

/// How often one actor's migration is retried after another writer changed its record
/// between the read and the conditional write.
const CONFLICT_RETRIES: usize = 8;

impl MigrationProgress {
    fn fail(&mut self, id: &str, why: String) {
        self.failures += 1;
        if self.failed.len() < MAX_REPORTED_FAILURES {
            self.failed.push((id.to_owned(), why));
        }
    }
}

/// What migrating one actor came to.
enum Outcome {
    Migrated,
    Current,
    Failed(String),
}

/// Rewrites, in the current schema, every stored state of `kind` that an older version
/// wrote, after `after` in the store's listing order. Each write is conditional on the
/// version read, so an activation that stores meanwhile wins and the actor is read again;
/// the lease in the record is kept. Calls `progress` after every page.
pub async fn migrate_kind<S: DeserializeOwned + serde::Serialize + 'static>(
    store: &dyn StateStore,
    kind: &'static str,
    schema: &KindSchema<S>,
    after: Option<String>,
    progress: &mut (dyn FnMut(&MigrationProgress) + Send),
) -> Result<MigrationProgress, StoreError> {
    let mut report = MigrationProgress {
        last_id: after,
        ..MigrationProgress::default()
    };
    loop {
        let ids = store.list(kind, report.last_id.as_deref(), PAGE).await?;
        let Some(last) = ids.last().cloned() else {
            return Ok(report);
        };
        for id in &ids {
            report.scanned += 1;
            match migrate_one(store, kind, schema, id).await? {
                Outcome::Migrated => report.migrated += 1,
                Outcome::Current => report.current += 1,
                Outcome::Failed(why) => report.fail(id, why),
            }
        }
        report.last_id = Some(last);
        progress(&report);
    }
}

async fn migrate_one<S: DeserializeOwned + serde::Serialize + 'static>(
    store: &dyn StateStore,
    kind: &'static str,
    schema: &KindSchema<S>,
    id: &str,
) -> Result<Outcome, StoreError> {
    let key = match ActorKey::new(kind, id) {
        Ok(key) => key,
        Err(e) => return Ok(Outcome::Failed(e.to_string())),
    };
    for _ in 0..CONFLICT_RETRIES {
        let Some(stored) = store.load(&key).await? else {
            return Ok(Outcome::Current); // deleted meanwhile
        };
        let record = match Record::decode_for(&stored.bytes, kind) {
            Ok(record) => record,
            Err(e) => return Ok(Outcome::Failed(format!("unreadable record: {e}"))),
        };
        let Some(payload) = record.payload.as_ref() else {
            return Ok(Outcome::Current); // a lease only: no state to migrate
        };
        if payload.schema.version > schema.current().version {
            return Ok(Outcome::Failed(format!(
                "stored by {}, newer than this build's {}",
                payload.schema,
                schema.current()
            )));
        }
        if !schema.is_stale(payload.schema) {
            return Ok(Outcome::Current);
        }
        let state = match schema.read(payload) {
            Ok(Read::Migrated(state) | Read::Current(state)) => state,
            Err(e) => return Ok(Outcome::Failed(e.to_string())),
        };
        let bytes = match codec::encode_state(&state) {
            Ok(bytes) => bytes,
            Err(e) => {
                return Ok(Outcome::Failed(format!(
                    "the migrated state does not encode: {e}"
                )));
            }
        };
        let rewritten = codec::encode_record(
            kind,
            record.lease.as_ref(),
            Some((schema.current(), &bytes)),
            &record.applied,
        );
        match store.save(&key, stored.version, &rewritten).await {
            Ok(_) => return Ok(Outcome::Migrated),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome::Failed(format!(
        "its record kept changing ({CONFLICT_RETRIES} conflicting writes)"
    )))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V1 {
        name: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct V2 {
        name: String,
        age: u32,
    }

    fn schema() -> KindSchema<V2> {
        let migrations = Migrations::new().from_version(1, |old: V1| {
            if old.name.is_empty() {
                Err("no name")
            } else {
                Ok(V2 {
                    name: old.name,
                    age: 0,
                })
            }
        });
        KindSchema::new("profile", 2, migrations).unwrap()
    }

    fn payload<T: Serialize>(version: u32, fingerprint: Fingerprint, value: &T) -> Payload {
        Payload {
            schema: SchemaId {
                version,
                fingerprint,
            },
            bytes: codec::encode_state(value).unwrap(),
        }
    }

    fn shape<T: DeserializeOwned>() -> Fingerprint {
        schema::trace::<T>().unwrap().fingerprint()
    }

    #[test]
    fn current_states_read_as_the_current_type() {
        let s = schema();
        let v2 = V2 {
            name: "a".into(),
            age: 3,
        };
        let read = s.read(&payload(2, shape::<V2>(), &v2)).unwrap();
        assert!(matches!(read, Read::Current(v) if v == v2));
        // A state stored before fingerprints existed is trusted by its version.
        let read = s.read(&payload(2, Fingerprint::UNKNOWN, &v2)).unwrap();
        assert!(matches!(read, Read::Current(_)));
    }

    #[test]
    fn old_states_are_migrated_and_refusals_are_typed() {
        let s = schema();
        let read = s
            .read(&payload(1, shape::<V1>(), &V1 { name: "a".into() }))
            .unwrap();
        assert!(matches!(read, Read::Migrated(V2 { age: 0, .. })));
        let err = s
            .read(&payload(1, shape::<V1>(), &V1 { name: "".into() }))
            .err()
            .unwrap();
        assert!(
            matches!(&err, SchemaError::MigrationFailed { reason, .. } if reason == "no name"),
            "{err}"
        );
        // The shape under version 1 is not V1's: the kept type is wrong.
        let err = s.read(&payload(1, shape::<V2>(), &V1 { name: "a".into() }));
        assert!(matches!(err, Err(SchemaError::OldTypeMismatch { .. })));
        // The shape under version 2 is not V2's: an undeclared change.
        let err = s.read(&payload(2, shape::<V1>(), &V1 { name: "a".into() }));
        let err = err.err().unwrap();
        assert!(
            matches!(err, SchemaError::UndeclaredChange { .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("state_version") && text.contains("migrate_from(2 = "),
            "{text}"
        );
        let err = s.read(&payload(3, Fingerprint(7), &V1 { name: "a".into() }));
        assert!(matches!(err, Err(SchemaError::Newer { .. })));
    }

    #[test]
    fn a_version_without_a_migration_is_refused() {
        let s = KindSchema::<V2>::new("profile", 3, Migrations::new()).unwrap();
        let err = s
            .read(&payload(1, Fingerprint::UNKNOWN, &V1 { name: "a".into() }))
            .err()
            .unwrap();
        assert!(matches!(err, SchemaError::NoMigration { .. }), "{err:?}");
        assert!(err.to_string().contains("reads versions 3"), "{err}");
    }

    #[test]
    fn wrong_declarations_are_refused() {
        let newer = Migrations::<V2>::new().from_version(2, |v: V2| Ok::<_, String>(v));
        assert!(KindSchema::new("k", 2, newer).is_err());
        assert!(KindSchema::<V2>::new("k", 0, Migrations::new()).is_err());
        let twice = Migrations::<V2>::new()
            .from_version(1, |v: V2| Ok::<_, String>(v))
            .from_version(1, |v: V2| Ok::<_, String>(v));
        assert!(KindSchema::new("k", 2, twice).is_err());
    }
}
