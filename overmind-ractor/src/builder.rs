//! [`OvermindBuilder`]: the store, the actor types, and how to spawn.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use overmind_core::{StateStore, validate_kind};
use ractor::{Actor, ActorCell};

use crate::{
    Overmind, StartError, VirtualActor,
    overmind::Inner,
    registry::{AnyKind, Kind},
    runtime::Runtime,
    supervisor::Supervisor,
};

type MakeKind = Box<dyn FnOnce(Arc<Runtime>) -> Arc<dyn AnyKind> + Send>;

enum StoreChoice {
    #[cfg(feature = "sled")]
    DataDir(PathBuf),
    Store(Arc<dyn StateStore>),
}

/// Configures and spawns an [`Overmind`]. Start with [`Overmind::builder`].
#[derive(Default)]
#[must_use = "call .spawn() to start Overmind"]
pub struct OvermindBuilder {
    store: Option<StoreChoice>,
    kinds: Vec<(&'static str, &'static str, MakeKind)>,
}

impl OvermindBuilder {
    /// Keeps state in an embedded sled database in `dir` (created if needed).
    #[cfg(feature = "sled")]
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.store = Some(StoreChoice::DataDir(dir.into()));
        self
    }

    /// Keeps state in the given store.
    pub fn store(mut self, store: Arc<dyn StateStore>) -> Self {
        self.store = Some(StoreChoice::Store(store));
        self
    }

    /// Registers an actor type whose actor value is `A::default()`.
    pub fn register<A: VirtualActor + Default>(self) -> Self {
        self.register_with(|_| A::default())
    }

    /// Registers an actor type built by `make` for each activation. `make` gets the
    /// [`Overmind`], so an actor can keep it to message other virtual actors; give it a
    /// database pool or a config the same way.
    pub fn register_with<A: VirtualActor>(
        mut self,
        make: impl Fn(&Overmind) -> A + Send + Sync + 'static,
    ) -> Self {
        let make_kind: MakeKind = Box::new(move |rt| Arc::new(Kind::<A>::new(rt, Box::new(make))));
        self.kinds
            .push((A::KIND, std::any::type_name::<A>(), make_kind));
        self
    }

    /// Spawns the Overmind supervisor on its own.
    pub async fn spawn(self) -> Result<Overmind, StartError> {
        self.start(None).await
    }

    /// Spawns the Overmind supervisor as a child of `supervisor` in your supervision tree.
    pub async fn spawn_linked(self, supervisor: ActorCell) -> Result<Overmind, StartError> {
        self.start(Some(supervisor)).await
    }

    async fn start(self, parent: Option<ActorCell>) -> Result<Overmind, StartError> {
        let tokio = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let mut seen: HashMap<&'static str, &'static str> = HashMap::new();
        for (kind, type_name, _) in &self.kinds {
            validate_kind(kind)?;
            if let Some(first) = seen.insert(kind, type_name) {
                return Err(StartError::DuplicateKind {
                    kind,
                    first,
                    second: type_name,
                });
            }
        }
        let (store, owned): (Arc<dyn StateStore>, bool) =
            match self.store.ok_or(StartError::NoStore)? {
                #[cfg(feature = "sled")]
                StoreChoice::DataDir(dir) => {
                    (Arc::new(overmind_core::store::SledStore::open(dir)?), true)
                }
                StoreChoice::Store(store) => (store, false),
            };
        let rt = Arc::new(Runtime::new(store, owned, tokio));
        let kinds = self
            .kinds
            .into_iter()
            .map(|(kind, _, make)| (kind, make(rt.clone())))
            .collect();
        let inner = Arc::new(Inner {
            rt: rt.clone(),
            kinds,
            supervisor: OnceLock::new(),
        });
        for kind in inner.kinds.values() {
            kind.set_overmind(Arc::downgrade(&inner));
        }
        let supervisor = Supervisor {
            inner: inner.clone(),
        };
        let (supervisor, _) = match parent {
            Some(parent) => Actor::spawn_linked(None, supervisor, (), parent).await,
            None => Actor::spawn(None, supervisor, ()).await,
        }
        .map_err(|e| StartError::Spawn(e.to_string()))?;
        let _ = rt.supervisor.set(supervisor.get_cell());
        let _ = inner.supervisor.set(supervisor);
        Ok(Overmind::from_inner(inner))
    }
}
