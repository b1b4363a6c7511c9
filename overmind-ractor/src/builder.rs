//! [`OvermindBuilder`]: the store, the actor types, and how to spawn.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use overmind_core::{StateStore, migration::KindSchema, validate_kind};
use ractor::{Actor, ActorCell};

use crate::{
    Overmind, StartError, VirtualActor, VirtualMessage,
    engine::overmind::{Inner, Leave},
    engine::placement::{Placement, SingleNode},
    engine::registry::{AnyKind, Kind},
    engine::runtime::Runtime,
    engine::supervisor::Supervisor,
};

fn single_node() -> Arc<dyn Placement> {
    Arc::new(SingleNode::new("local"))
}

type MakeKind = Box<dyn FnOnce(Arc<Runtime>) -> MadeKind + Send>;

/// A registered kind, made for the runtime: the engine's, and the cluster's port to it.
struct MadeKind {
    engine: Arc<dyn AnyKind>,
    #[cfg(feature = "cluster")]
    port: Arc<dyn crate::cluster::port::KindPort>,
}

/// Checks a kind's declaration (tracing its state types' shapes) and returns how to make it.
type PrepareKind = Box<dyn FnOnce() -> Result<MakeKind, StartError> + Send>;

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
    on_activation: Option<crate::engine::runtime::ActivationHook>,
    kinds: Vec<(&'static str, &'static str, PrepareKind)>,
    #[cfg(feature = "cluster")]
    cluster: Option<crate::cluster::ClusterConfig>,
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

    /// Calls `hook` whenever an activation starts or stops serving (for metrics, tracing, or a
    /// test's record of who served what, when). Keep it quick: it runs on the activation's task.
    pub fn on_activation(
        mut self,
        hook: impl Fn(&crate::ActivationEvent) + Send + Sync + 'static,
    ) -> Self {
        self.on_activation = Some(Arc::new(hook));
        self
    }

    /// Registers an actor type whose actor value is `A::default()`. In a cluster its message
    /// type must derive [`VirtualMessage`](crate::VirtualMessage).
    pub fn register<A: VirtualActor + Default>(self) -> Self
    where
        A::Msg: VirtualMessage,
    {
        self.register_with(|_| A::default())
    }

    /// Registers an actor type built by `make` for each activation. `make` gets the
    /// [`Overmind`], so an actor can keep it to message other virtual actors; give it a
    /// database pool or a config the same way. In a cluster its message type must derive
    /// [`VirtualMessage`](crate::VirtualMessage).
    pub fn register_with<A: VirtualActor>(
        mut self,
        make: impl Fn(&Overmind) -> A + Send + Sync + 'static,
    ) -> Self
    where
        A::Msg: VirtualMessage,
    {
        let prepare: PrepareKind = Box::new(move || {
            let schema =
                KindSchema::new(A::KIND, A::STATE_VERSION, A::migrations()).map_err(|e| {
                    StartError::InvalidSchema {
                        kind: A::KIND,
                        reason: e.0,
                    }
                })?;
            let make_kind: MakeKind = Box::new(move |rt| {
                let kind = Arc::new(Kind::<A>::new(rt, schema, Box::new(make)));
                MadeKind {
                    #[cfg(feature = "cluster")]
                    port: crate::cluster::port::port(kind.clone()),
                    engine: kind,
                }
            });
            Ok(make_kind)
        });
        self.kinds
            .push((A::KIND, std::any::type_name::<A>(), prepare));
        self
    }

    /// Makes this node a member of a cluster (feature `cluster`). Without it, Overmind runs
    /// as a single node that owns every actor.
    #[cfg(feature = "cluster")]
    pub fn cluster(mut self, config: crate::cluster::ClusterConfig) -> Self {
        self.cluster = Some(config);
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
        let mut kinds = Vec::with_capacity(self.kinds.len());
        for (kind, type_name, prepare) in self.kinds {
            validate_kind(kind)?;
            if let Some(first) = seen.insert(kind, type_name) {
                return Err(StartError::DuplicateKind {
                    kind,
                    first,
                    second: type_name,
                });
            }
            kinds.push((kind, prepare()?));
        }
        let (store, owned): (Arc<dyn StateStore>, bool) =
            match self.store.ok_or(StartError::NoStore)? {
                #[cfg(feature = "sled")]
                StoreChoice::DataDir(dir) => {
                    (Arc::new(overmind_core::store::SledStore::open(dir)?), true)
                }
                StoreChoice::Store(store) => (store, false),
            };
        #[cfg(feature = "cluster")]
        let cluster = match self.cluster {
            Some(config) => Some(crate::cluster::start::prepare(config, store.clone())?),
            None => None,
        };
        #[cfg(feature = "cluster")]
        let placement = match &cluster {
            Some(c) => c.placement(),
            None => single_node(),
        };
        #[cfg(not(feature = "cluster"))]
        let placement = single_node();
        let rt = Arc::new(Runtime::new(
            placement,
            store,
            owned,
            tokio,
            self.on_activation,
        ));
        let made: Vec<(&'static str, MadeKind)> = kinds
            .into_iter()
            .map(|(kind, make)| (kind, make(rt.clone())))
            .collect();
        let inner = Arc::new(Inner {
            rt: rt.clone(),
            kinds: made
                .iter()
                .map(|(name, made)| (*name, made.engine.clone()))
                .collect(),
            supervisor: OnceLock::new(),
            finished: OnceLock::new(),
        });
        for kind in inner.kinds.values() {
            kind.set_overmind(Arc::downgrade(&inner));
        }
        let spawn_err = |e: ractor::SpawnErr| StartError::Spawn(e.to_string());
        // The activations' supervisor stays out of the caller's tree; see `supervisor`.
        let names = crate::engine::supervisor::Names::next();
        let (hosts, _) = Actor::spawn(Some(names.activations), Supervisor, ())
            .await
            .map_err(spawn_err)?;
        let _ = rt.supervisor.set(hosts.get_cell());
        let spawned = match parent {
            Some(parent) => Actor::spawn_linked(Some(names.overmind), Supervisor, (), parent).await,
            None => Actor::spawn(Some(names.overmind), Supervisor, ()).await,
        };
        let (supervisor, ended) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                hosts.stop(None);
                return Err(spawn_err(e));
            }
        };
        let _ = inner.supervisor.set(supervisor);
        // However the supervisor ends — `shutdown`, a stop, or a kill from its parent's tree —
        // Overmind shuts down gracefully. This task keeps Overmind alive until then.
        let watched = inner.clone();
        tokio::spawn(async move {
            let _ = ended.await;
            if let Err(error) = watched.shutdown(Leave::Gracefully).await {
                tracing::error!(%error, "flushing the store at shutdown failed");
            }
        });
        #[cfg(feature = "cluster")]
        if let Some(cluster) = cluster {
            let ports = made.into_iter().map(|(_, made)| made.port).collect();
            if let Err(e) = cluster.start(&rt, ports).await {
                // The node never joined: nothing to hand over.
                let _ = inner.shutdown(Leave::Skip).await;
                return Err(e);
            }
        }
        Ok(Overmind::from_inner(inner))
    }
}
