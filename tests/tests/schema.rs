//! State schemas over releases: each recipe of the README's "Changing a state type" table
//! writes with the old type (one Overmind, as the old release) and reads with the new one
//! (another Overmind on the same store, as the new release); undeclared changes are refused
//! with the record untouched; eager migration, listing, deleting, and the actor's key inside
//! its handlers.
//!
//! Single-node build only: the test actors share one generic message type, and the cluster
//! build's message derive does not take generics. Deleting in a cluster is tested in
//! `cluster.rs`.
#![cfg(not(feature = "cluster"))]

use std::sync::Arc;

use overmind_core::{
    ActorKey, StateStore,
    codec::{self, Record, SchemaId},
    schema::Fingerprint,
    store::MemoryStore,
};
use overmind_ractor::{
    ActivationError, Error, Migrations, Overmind, SchemaError, VirtualActor, prelude::*,
};
use serde::{Deserialize, Serialize};

/// What every test actor understands: replace the state, or read it.
enum Msg<S> {
    Put(S),
    Get(RpcReplyPort<S>),
}

/// An actor of kind `$kind` whose state is `$state`, with the given extra options.
macro_rules! actor {
    ($name:ident, $state:ty, $($options:tt)*) => {
        #[derive(Default)]
        pub(super) struct $name;

        #[virtual_actor($($options)*)]
        impl Actor for $name {
            type Msg = Msg<$state>;
            type State = $state;

            async fn handle(
                &self,
                _myself: ActorRef<Self::Msg>,
                msg: Self::Msg,
                state: &mut $state,
            ) -> Result<(), ActorProcessingErr> {
                match msg {
                    Msg::Put(new) => *state = new,
                    Msg::Get(reply) => {
                        let _ = reply.send(state.clone());
                    }
                }
                Ok(())
            }
        }
    };
}

async fn start<A: VirtualActor + Default>(store: &Arc<MemoryStore>) -> Overmind {
    Overmind::builder()
        .store(store.clone())
        .register::<A>()
        .spawn()
        .await
        .expect("overmind starts")
}

/// Stores `state` for `id` as the release that runs actor `A` would.
async fn write<A>(store: &Arc<MemoryStore>, id: &str, state: A::PersistedState)
where
    A: VirtualActor<Msg = Msg<<A as VirtualActor>::PersistedState>> + Default,
    A::PersistedState: Clone,
{
    let om = start::<A>(store).await;
    let actor = om.actor::<A>(id);
    actor.cast(Msg::Put(state)).expect("accepted");
    actor.call(Msg::Get, None).await.expect("stored");
    om.shutdown().await.expect("shutdown");
}

/// Reads `id`'s state as the release that runs actor `A` would.
async fn read<A>(store: &Arc<MemoryStore>, id: &str) -> Result<A::PersistedState, Error>
where
    A: VirtualActor<Msg = Msg<<A as VirtualActor>::PersistedState>> + Default,
    A::PersistedState: Clone,
{
    let om = start::<A>(store).await;
    let state = om.actor::<A>(id).call(Msg::Get, None).await;
    om.shutdown().await.expect("shutdown");
    state
}

async fn stored_bytes(store: &MemoryStore, kind: &'static str, id: &str) -> Vec<u8> {
    let key = ActorKey::new(kind, id).expect("a valid key");
    store
        .load(&key)
        .await
        .expect("loads")
        .expect("a record")
        .bytes
}

async fn stored_schema(store: &MemoryStore, kind: &'static str, id: &str) -> SchemaId {
    let bytes = stored_bytes(store, kind, id).await;
    Record::decode(&bytes)
        .expect("a readable record")
        .payload
        .expect("a state")
        .schema
}

// --- Recipe: add a field (with a default for the old states) -----------------------------

mod add_field {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct ProfileV1 {
        pub(super) name: String,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct Profile {
        pub(super) name: String,
        pub(super) age: Option<u32>,
    }

    impl From<ProfileV1> for Profile {
        fn from(old: ProfileV1) -> Self {
            Self {
                name: old.name,
                age: None,
            }
        }
    }

    actor!(Old, ProfileV1, kind = "add_field");
    actor!(
        New,
        Profile,
        kind = "add_field",
        state_version = 2,
        migrate_from(1 = ProfileV1)
    );
    // The same change, undeclared: the version stays 1.
    actor!(Undeclared, Profile, kind = "add_field");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_add_a_field() {
    use add_field::*;
    let store = Arc::new(MemoryStore::new());
    write::<Old>(&store, "p1", ProfileV1 { name: "Ann".into() }).await;
    let before = stored_bytes(&store, "add_field", "p1").await;

    // Forgetting the version bump is caught, and the record stays byte for byte.
    let err = read::<Undeclared>(&store, "p1").await.unwrap_err();
    let Error::ActivationFailed {
        cause:
            ActivationError::Schema(SchemaError::UndeclaredChange {
                stored, registered, ..
            }),
        ..
    } = &err
    else {
        panic!("expected an undeclared change, got {err}");
    };
    assert_eq!(stored.version, 1);
    assert_eq!(registered.version, 1);
    assert_ne!(stored.fingerprint, registered.fingerprint);
    let text = err.to_string();
    for needed in [
        "add_field/p1",
        "state_version",
        "migrate_from(1 = ",
        "left untouched",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from: {text}");
    }
    println!("the error a user sees for an undeclared change:\n{text}");
    assert_eq!(stored_bytes(&store, "add_field", "p1").await, before);

    // Declared, it migrates on activation and is stored in the new schema at once.
    let read_back = read::<New>(&store, "p1").await.unwrap();
    assert_eq!(
        read_back,
        Profile {
            name: "Ann".into(),
            age: None
        }
    );
    assert_eq!(stored_schema(&store, "add_field", "p1").await.version, 2);
    // And the old release now refuses it instead of misreading it.
    let err = read::<Old>(&store, "p1").await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ActivationFailed {
                cause: ActivationError::Schema(SchemaError::Newer { .. }),
                ..
            }
        ),
        "{err}"
    );
}

// --- Recipe: remove a field ----------------------------------------------------------------

mod remove_field {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct CartV1 {
        pub(super) items: Vec<String>,
        pub(super) coupon: String,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct Cart {
        pub(super) items: Vec<String>,
    }

    impl From<CartV1> for Cart {
        fn from(old: CartV1) -> Self {
            Self { items: old.items }
        }
    }

    actor!(Old, CartV1, kind = "remove_field");
    actor!(
        New,
        Cart,
        kind = "remove_field",
        state_version = 2,
        migrate_from(1 = CartV1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_remove_a_field() {
    use remove_field::*;
    let store = Arc::new(MemoryStore::new());
    let old = CartV1 {
        items: vec!["tea".into(), "cup".into()],
        coupon: "SAVE5".into(),
    };
    write::<Old>(&store, "c1", old).await;
    assert_eq!(
        read::<New>(&store, "c1").await.unwrap(),
        Cart {
            items: vec!["tea".into(), "cup".into()]
        }
    );
}

// --- Recipe: rename a field ----------------------------------------------------------------

mod rename_field {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct UserV1 {
        pub(super) name: String,
        pub(super) logins: u64,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct User {
        pub(super) display_name: String,
        pub(super) logins: u64,
    }

    impl From<UserV1> for User {
        fn from(old: UserV1) -> Self {
            Self {
                display_name: old.name,
                logins: old.logins,
            }
        }
    }

    actor!(Old, UserV1, kind = "rename_field");
    actor!(
        New,
        User,
        kind = "rename_field",
        state_version = 2,
        migrate_from(1 = UserV1)
    );
    actor!(Undeclared, User, kind = "rename_field");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_rename_a_field() {
    use rename_field::*;
    let store = Arc::new(MemoryStore::new());
    write::<Old>(
        &store,
        "u1",
        UserV1 {
            name: "Bo".into(),
            logins: 3,
        },
    )
    .await;
    // The bytes of a renamed field are the same: bincode alone would read it silently.
    // The fingerprint has the field names, so the rename is caught.
    let err = read::<Undeclared>(&store, "u1").await.unwrap_err();
    assert!(err.to_string().contains("state_version"), "{err}");
    assert_eq!(
        read::<New>(&store, "u1").await.unwrap(),
        User {
            display_name: "Bo".into(),
            logins: 3
        }
    );
}

// --- Recipe: change a field's type ---------------------------------------------------------

mod change_type {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct StockV1 {
        pub(super) units: u32,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct Stock {
        pub(super) units: i32,
    }

    impl From<StockV1> for Stock {
        fn from(old: StockV1) -> Self {
            Self {
                units: i32::try_from(old.units).unwrap_or(i32::MAX),
            }
        }
    }

    actor!(Old, StockV1, kind = "change_type");
    actor!(
        New,
        Stock,
        kind = "change_type",
        state_version = 2,
        migrate_from(1 = StockV1)
    );
    actor!(Undeclared, Stock, kind = "change_type");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_change_a_fields_type() {
    use change_type::*;
    let store = Arc::new(MemoryStore::new());
    write::<Old>(&store, "s1", StockV1 { units: 4 }).await;
    // bincode reads a stored u32 4 as the i32 2 (zigzag): the undeclared change is refused
    // instead of misread.
    let err = read::<Undeclared>(&store, "s1").await.unwrap_err();
    assert!(
        matches!(
            &err,
            Error::ActivationFailed {
                cause: ActivationError::Schema(SchemaError::UndeclaredChange { .. }),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(read::<New>(&store, "s1").await.unwrap(), Stock { units: 4 });
}

// --- Recipe: add an enum variant -----------------------------------------------------------

mod add_variant {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) enum StatusV1 {
        #[default]
        Open,
        Closed {
            reason: String,
        },
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct OrderV1 {
        pub(super) status: StatusV1,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) enum Status {
        #[default]
        Open,
        Closed {
            reason: String,
        },
        OnHold(u32),
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct Order {
        pub(super) status: Status,
    }

    impl From<OrderV1> for Order {
        fn from(old: OrderV1) -> Self {
            let status = match old.status {
                StatusV1::Open => Status::Open,
                StatusV1::Closed { reason } => Status::Closed { reason },
            };
            Self { status }
        }
    }

    actor!(Old, OrderV1, kind = "add_variant");
    actor!(
        New,
        Order,
        kind = "add_variant",
        state_version = 2,
        migrate_from(1 = OrderV1)
    );
    actor!(Undeclared, Order, kind = "add_variant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_add_an_enum_variant() {
    use add_variant::*;
    let store = Arc::new(MemoryStore::new());
    let closed = StatusV1::Closed {
        reason: "paid".into(),
    };
    write::<Old>(&store, "o1", OrderV1 { status: closed }).await;
    // An added variant changes no stored byte, but it is a change of the type all the same.
    let err = read::<Undeclared>(&store, "o1").await.unwrap_err();
    assert!(err.to_string().contains("state_version"), "{err}");
    assert_eq!(
        read::<New>(&store, "o1").await.unwrap(),
        Order {
            status: Status::Closed {
                reason: "paid".into()
            }
        }
    );
}

// --- Recipe: split a struct in two, over two versions --------------------------------------

mod split_struct {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct CustomerV1 {
        pub(super) name: String,
        pub(super) street: String,
        pub(super) city: String,
    }

    /// Version 2 added a phone number.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct CustomerV2 {
        pub(super) name: String,
        pub(super) street: String,
        pub(super) city: String,
        pub(super) phone: Option<String>,
    }

    impl From<CustomerV1> for CustomerV2 {
        fn from(old: CustomerV1) -> Self {
            Self {
                name: old.name,
                street: old.street,
                city: old.city,
                phone: None,
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct Address {
        pub(super) street: String,
        pub(super) city: String,
    }

    /// Version 3 splits the address out.
    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct Customer {
        pub(super) name: String,
        pub(super) address: Address,
        pub(super) phone: Option<String>,
    }

    impl From<CustomerV2> for Customer {
        fn from(old: CustomerV2) -> Self {
            Self {
                name: old.name,
                address: Address {
                    street: old.street,
                    city: old.city,
                },
                phone: old.phone,
            }
        }
    }

    actor!(V1, CustomerV1, kind = "split_struct");
    actor!(
        V2,
        CustomerV2,
        kind = "split_struct",
        state_version = 2,
        migrate_from(1 = CustomerV1)
    );
    actor!(
        New,
        Customer,
        kind = "split_struct",
        state_version = 3,
        migrate_from(1 = CustomerV1, 2 = CustomerV2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipe_split_a_struct_in_two_across_two_versions() {
    use split_struct::*;
    let store = Arc::new(MemoryStore::new());
    let v1 = CustomerV1 {
        name: "Cy".into(),
        street: "1 Main St".into(),
        city: "Oslo".into(),
    };
    // One customer stored by release 1, one by release 2: release 3 reads both.
    write::<V1>(&store, "from-v1", v1.clone()).await;
    write::<V2>(
        &store,
        "from-v2",
        CustomerV2 {
            phone: Some("555".into()),
            ..CustomerV2::from(v1)
        },
    )
    .await;
    assert_eq!(
        stored_schema(&store, "split_struct", "from-v1")
            .await
            .version,
        1
    );
    assert_eq!(
        stored_schema(&store, "split_struct", "from-v2")
            .await
            .version,
        2
    );
    let address = Address {
        street: "1 Main St".into(),
        city: "Oslo".into(),
    };
    assert_eq!(
        read::<New>(&store, "from-v1").await.unwrap(),
        Customer {
            name: "Cy".into(),
            address: address.clone(),
            phone: None
        }
    );
    assert_eq!(
        read::<New>(&store, "from-v2").await.unwrap(),
        Customer {
            name: "Cy".into(),
            address,
            phone: Some("555".into())
        }
    );
}

// --- States stored before records carried a schema -------------------------------------------

/// A record as format 3 wrote it: no schema.
fn format_3_record(kind: &str, payload: &[u8]) -> Vec<u8> {
    let record = Record {
        kind: kind.into(),
        lease: None,
        payload: Some(codec::Payload {
            schema: SchemaId::LEGACY,
            bytes: payload.to_vec(),
        }),
        applied: Vec::new(),
    };
    overmind_tests::fuzz::encode_old_record(&record, 3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_stored_before_schemas_read_as_version_1_and_get_their_shape() {
    use add_field::*;
    let store = Arc::new(MemoryStore::new());
    let payload = codec::encode_state(&ProfileV1 { name: "Old".into() }).unwrap();
    for id in ["legacy-1", "legacy-2", "legacy-3"] {
        let key = ActorKey::new("add_field", id).unwrap();
        let record = format_3_record("add_field", &payload);
        store
            .save(&key, overmind_core::Version::ABSENT, &record)
            .await
            .unwrap();
    }
    assert_eq!(
        stored_schema(&store, "add_field", "legacy-1").await,
        SchemaId::LEGACY
    );
    // Version 1 reads it as it is, and stamps it with its shape before serving: from now on
    // an undeclared change of the type is caught for it too.
    assert_eq!(
        read::<Old>(&store, "legacy-1").await.unwrap(),
        ProfileV1 { name: "Old".into() }
    );
    let stamped = Record::decode(&stored_bytes(&store, "add_field", "legacy-1").await)
        .unwrap()
        .payload
        .unwrap();
    assert_eq!(stamped.schema.version, 1);
    assert_eq!(
        stamped.schema.fingerprint,
        overmind_core::schema::trace::<ProfileV1>()
            .unwrap()
            .fingerprint()
    );
    assert_eq!(stamped.bytes, payload, "the state itself is unchanged");
    // An eager run stamps the others.
    let om = start::<Old>(&store).await;
    let run = om.migrate::<Old>(None, |_| {}).await.unwrap();
    assert_eq!((run.scanned, run.migrated, run.current), (3, 2, 1));
    om.shutdown().await.unwrap();
    // Version 2 migrates them like any version-1 state.
    assert_eq!(
        read::<New>(&store, "legacy-2").await.unwrap(),
        Profile {
            name: "Old".into(),
            age: None
        }
    );
}

// --- Eager migration -------------------------------------------------------------------------

mod eager {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct CounterV1 {
        pub(super) n: u32,
    }

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct Counter {
        pub(super) n: u64,
        pub(super) label: String,
    }

    /// A conversion that can fail: 113 is refused.
    pub(super) fn migrations() -> Migrations<Counter> {
        Migrations::new().from_version(1, |old: CounterV1| {
            if old.n == 113 {
                Err("113 is unlucky")
            } else {
                Ok(Counter {
                    n: u64::from(old.n),
                    label: format!("was {}", old.n),
                })
            }
        })
    }

    actor!(Old, CounterV1, kind = "eager");
    actor!(
        New,
        Counter,
        kind = "eager",
        state_version = 2,
        migrations = "self::migrations"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_kind_migrates_eagerly_resumably_with_progress() {
    use eager::*;
    let store = Arc::new(MemoryStore::new());
    let om = start::<Old>(&store).await;
    let ids: Vec<String> = (0..600).map(|i| format!("c{i:04}")).collect();
    for (i, id) in ids.iter().enumerate() {
        // Never the default (0), which a new actor holds without storing it.
        let n = u32::try_from(i).unwrap() + 100;
        om.actor::<Old>(id.as_str())
            .cast(Msg::Put(CounterV1 { n }))
            .unwrap();
    }
    for id in &ids {
        om.actor::<Old>(id.as_str())
            .call(Msg::Get, None)
            .await
            .unwrap();
    }
    om.shutdown().await.unwrap();

    let om = start::<New>(&store).await;
    // Listing pages through the kind in id order.
    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = om.list::<New>(after.as_deref(), 250).await.unwrap();
        let Some(last) = page.last().cloned() else {
            break;
        };
        listed.extend(page);
        after = Some(last);
    }
    assert_eq!(listed, ids);

    // An interrupted run is resumed after the last id it reported.
    let mut pages = Vec::new();
    let first = om
        .migrate::<New>(None, |p| pages.push(p.scanned))
        .await
        .unwrap();
    assert_eq!(pages, vec![256, 512, 600], "progress after every page");
    assert_eq!(first.scanned, 600);
    assert_eq!(first.migrated, 599);
    assert_eq!(first.failures, 1);
    assert_eq!(first.failed[0].0, "c0013");
    assert!(
        first.failed[0].1.contains("113 is unlucky"),
        "{:?}",
        first.failed
    );
    assert_eq!(first.last_id.as_deref(), Some("c0599"));
    assert_eq!(stored_schema(&store, "eager", "c0599").await.version, 2);
    assert_eq!(
        stored_schema(&store, "eager", "c0013").await.version,
        1,
        "left as it was"
    );

    let resumed = om
        .migrate::<New>(Some("c0299".into()), |_| {})
        .await
        .unwrap();
    assert_eq!(resumed.scanned, 300);
    assert_eq!(resumed.migrated, 0, "already migrated");
    assert_eq!(resumed.current, 300);

    let got = om.actor::<New>("c0042").call(Msg::Get, None).await.unwrap();
    assert_eq!(
        got,
        Counter {
            n: 142,
            label: "was 142".into()
        }
    );
    let err = om
        .actor::<New>("c0013")
        .call(Msg::Get, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("113 is unlucky"), "{err}");
    om.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_declaration_is_refused_at_start() {
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    struct S {
        v: u8,
    }
    // Hand-written, as the macro refuses this at compile time.
    #[derive(Default)]
    struct Bad;
    impl Actor for Bad {
        type Msg = Msg<S>;
        type State = S;
        type Arguments = overmind_ractor::Activation<S>;
        async fn pre_start(
            &self,
            _myself: ActorRef<Self::Msg>,
            activation: overmind_ractor::Activation<S>,
        ) -> Result<S, ActorProcessingErr> {
            Ok(activation.into_state_or_default())
        }
    }
    impl VirtualActor for Bad {
        type PersistedState = S;
        const KIND: &'static str = "bad";
        const STATE_VERSION: u32 = 2;
        fn migrations() -> Migrations<S> {
            Migrations::new().from_version(2, |s: S| Ok::<_, String>(s))
        }
    }
    let err = Overmind::builder()
        .store(Arc::new(MemoryStore::new()))
        .register::<Bad>()
        .spawn()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not older than state_version 2"),
        "{err}"
    );
}

// --- Deleting --------------------------------------------------------------------------------

mod deleting {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
    pub(super) struct Tally {
        pub(super) n: u64,
    }

    actor!(Tallies, Tally, kind = "tally");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_actor_starts_again_as_new() {
    use deleting::*;
    let store = Arc::new(MemoryStore::new());
    let om = start::<Tallies>(&store).await;
    let t = om.actor::<Tallies>("t1");
    t.cast(Msg::Put(Tally { n: 5 })).unwrap();
    assert_eq!(t.call(Msg::Get, None).await.unwrap(), Tally { n: 5 });

    om.delete::<Tallies>("t1").await.unwrap();
    let key = ActorKey::new("tally", "t1").unwrap();
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "durable on return"
    );
    assert_eq!(t.call(Msg::Get, None).await.unwrap(), Tally::default());
    assert!(om.list::<Tallies>(None, 10).await.unwrap().is_empty());
    // Deleting what has no record is fine.
    om.delete::<Tallies>("never-seen").await.unwrap();
    om.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_is_ordered_with_the_messages_around_it() {
    use deleting::*;
    let store = Arc::new(MemoryStore::new());
    let om = start::<Tallies>(&store).await;
    for round in 0..20u64 {
        let t = om.actor::<Tallies>(format!("ordered-{round}"));
        t.cast(Msg::Put(Tally { n: 1 })).unwrap();
        t.cast(Msg::Put(Tally { n: 2 })).unwrap();
        let delete = t.delete();
        tokio::pin!(delete);
        // The first poll queues the delete behind the two casts...
        let _ = futures::poll!(&mut delete);
        // ...and ahead of this one, which starts the new actor.
        t.cast(Msg::Put(Tally { n: 3 + round })).unwrap();
        delete.await.unwrap();
        assert_eq!(
            t.call(Msg::Get, None).await.unwrap(),
            Tally { n: 3 + round }
        );
    }
    om.shutdown().await.unwrap();
}

// --- The actor's key inside its handlers -----------------------------------------------------

#[derive(Default)]
struct WhoAmI;

enum WhoMsg {
    Ask(RpcReplyPort<(Option<String>, Option<String>)>),
}

#[virtual_actor(kind = "whoami")]
impl Actor for WhoAmI {
    type Msg = WhoMsg;
    type State = ();

    async fn handle(
        &self,
        myself: ActorRef<WhoMsg>,
        msg: WhoMsg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let WhoMsg::Ask(reply) = msg;
        let here = myself.actor_key().map(|k| k.to_string());
        // Not on a task the handler spawns: the key belongs to the handler's own call.
        let me = myself.clone();
        let spawned = tokio::spawn(async move { me.actor_key().map(|k| k.to_string()) })
            .await
            .ok()
            .flatten();
        let _ = reply.send((here, spawned));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_knows_its_actors_key() {
    let om = Overmind::builder()
        .store(Arc::new(MemoryStore::new()))
        .register::<WhoAmI>()
        .spawn()
        .await
        .unwrap();
    for id in ["a", "b/c"] {
        let (here, spawned) = om
            .actor::<WhoAmI>(id)
            .call(WhoMsg::Ask, None)
            .await
            .unwrap();
        assert_eq!(here, Some(format!("whoami/{id}")));
        assert_eq!(spawned, None);
    }
    om.shutdown().await.unwrap();
}

/// The stored shape is what the tracer computes for the state type: a fingerprint the
/// release after this one can check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_state_types_shape() {
    use add_field::*;
    let store = Arc::new(MemoryStore::new());
    write::<New>(
        &store,
        "p9",
        Profile {
            name: "Di".into(),
            age: Some(40),
        },
    )
    .await;
    let schema = stored_schema(&store, "add_field", "p9").await;
    let traced: Fingerprint = overmind_core::schema::trace::<Profile>()
        .unwrap()
        .fingerprint();
    assert_eq!(
        schema,
        SchemaId {
            version: 2,
            fingerprint: traced
        }
    );
}

// --- Deleting from the actor itself, and a damaged record --------------------------------------

struct SelfDeleting {
    om: Overmind,
}

enum SelfMsg {
    Bump,
    /// Deletes itself and waits: refused.
    DeleteAndWait(RpcReplyPort<String>),
    /// Deletes itself from a spawned task: runs once the handler returned.
    DeleteLater(RpcReplyPort<()>),
    Count(RpcReplyPort<u32>),
}

#[virtual_actor(kind = "self_deleting")]
impl Actor for SelfDeleting {
    type Msg = SelfMsg;
    type State = u32;

    async fn handle(
        &self,
        myself: ActorRef<SelfMsg>,
        msg: SelfMsg,
        count: &mut u32,
    ) -> Result<(), ActorProcessingErr> {
        let id = myself.actor_key().expect("its own handler").id().to_owned();
        match msg {
            SelfMsg::Bump => *count += 1,
            SelfMsg::DeleteAndWait(reply) => {
                let outcome = self.om.delete::<SelfDeleting>(id).await;
                let _ = reply.send(format!("{outcome:?}"));
            }
            SelfMsg::DeleteLater(reply) => {
                let om = self.om.clone();
                tokio::spawn(async move {
                    om.delete::<SelfDeleting>(id).await.expect("deleted");
                    let _ = reply.send(());
                });
            }
            SelfMsg::Count(reply) => {
                let _ = reply.send(*count);
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_deletes_itself_from_a_spawned_task_not_from_its_handler() {
    let om = Overmind::builder()
        .store(Arc::new(MemoryStore::new()))
        .register_with(|om| SelfDeleting { om: om.clone() })
        .spawn()
        .await
        .unwrap();
    let me = om.actor::<SelfDeleting>("s1");
    me.cast(SelfMsg::Bump).unwrap();
    let refused = me.call(SelfMsg::DeleteAndWait, None).await.unwrap();
    assert!(refused.contains("DeleteFromOwnHandler"), "{refused}");
    assert_eq!(
        me.call(SelfMsg::Count, None).await.unwrap(),
        1,
        "not deleted"
    );
    me.call(SelfMsg::DeleteLater, None).await.unwrap();
    assert_eq!(
        me.call(SelfMsg::Count, None).await.unwrap(),
        0,
        "a new actor"
    );
    om.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_can_be_deleted_even_behind_messages() {
    use deleting::*;
    let store = Arc::new(MemoryStore::new());
    let key = ActorKey::new("tally", "broken").unwrap();
    store
        .save(&key, overmind_core::Version::ABSENT, b"not a record")
        .await
        .unwrap();
    let om = start::<Tallies>(&store).await;
    let t = om.actor::<Tallies>("broken");
    let call = t.call(Msg::Get, None);
    let delete = t.delete();
    let (got, deleted) = tokio::join!(call, delete);
    assert!(
        matches!(got, Err(Error::ActivationFailed { .. })),
        "{got:?}"
    );
    deleted.expect("the delete behind the failed message still runs");
    assert!(store.load(&key).await.unwrap().is_none());
    assert_eq!(t.call(Msg::Get, None).await.unwrap(), Tally::default());
    om.shutdown().await.unwrap();
}
