//! Controllers of the control plane: each watches resources through an [`informer::Informer`]
//! and reconciles the world toward them (deployments, scheduling, garbage collection).
#![forbid(unsafe_code)]

pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod functions;
pub mod gc;
pub mod identities;
pub mod informer;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod queue;
pub mod scheduling;

use apiserver::Registry;
use tokio::task::JoinSet;

use informer::Informer;

/// The shared caches every controller reads.
#[derive(Clone)]
pub struct Caches {
    /// Pods.
    pub pods: Informer<api::Pod>,
    /// Deployments.
    pub deployments: Informer<api::Deployment>,
    /// Nodes.
    pub nodes: Informer<api::Node>,
    /// Namespaces.
    pub namespaces: Informer<api::Namespace>,
    /// Leases (node heartbeats).
    pub leases: Informer<api::Lease>,
    /// Functions.
    pub functions: Informer<api::function::Function>,
    /// Identities.
    pub identities: Informer<api::identity::Identity>,
    /// Services.
    pub services: Informer<api::Service>,
    /// Endpoints.
    pub endpoints: Informer<api::Endpoints>,
}

impl Caches {
    /// Starts the informers and waits until each has listed once.
    pub async fn start(registry: &Registry, tasks: &mut JoinSet<()>) -> Caches {
        let caches = Caches {
            pods: Informer::start(registry.clone(), tasks),
            deployments: Informer::start(registry.clone(), tasks),
            nodes: Informer::start(registry.clone(), tasks),
            namespaces: Informer::start(registry.clone(), tasks),
            leases: Informer::start(registry.clone(), tasks),
            functions: Informer::start(registry.clone(), tasks),
            identities: Informer::start(registry.clone(), tasks),
            services: Informer::start(registry.clone(), tasks),
            endpoints: Informer::start(registry.clone(), tasks),
        };
        caches.pods.wait_synced().await;
        caches.deployments.wait_synced().await;
        caches.nodes.wait_synced().await;
        caches.namespaces.wait_synced().await;
        caches.leases.wait_synced().await;
        caches.functions.wait_synced().await;
        caches.identities.wait_synced().await;
        caches.services.wait_synced().await;
        caches.endpoints.wait_synced().await;
        caches
    }
}

/// Settings of the controllers that have any.
#[derive(Clone, Debug, Default)]
pub struct ControllerOptions {
    /// The scheduler's (cluster-wide strategy, sampling, seed).
    pub scheduler: scheduler::SchedulerConfig,
    /// Node lifecycle (heartbeat grace).
    pub lifecycle: nodelifecycle::LifecycleConfig,
    /// Which pod networks nodes get.
    pub node_ipam: nodeipam::NodeIpamConfig,
    /// How long an Identity no pod needs is kept; `None` is [`identities::GRACE`].
    pub identity_grace: Option<std::time::Duration>,
    /// How long Events are kept; `None` is [`gc::EVENT_TTL`].
    pub event_ttl: Option<std::time::Duration>,
    /// Where the Functions' dispatchers count; `None` keeps the counts to themselves.
    pub function_metrics: Option<std::sync::Arc<functions::FunctionMetrics>>,
}

/// Starts every controller on `registry`; they run until the returned tasks are dropped.
pub async fn start_all(registry: Registry, options: ControllerOptions) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    let caches = Caches::start(&registry, &mut tasks).await;
    let recorder = events::Recorder::new(registry.clone(), "flotilla-controllers");
    tasks.spawn(deployment::run(registry.clone(), caches.clone(), recorder.clone()));
    tasks.spawn(scheduling::run(registry.clone(), caches.clone(), events::Recorder::new(registry.clone(), "default-scheduler"), options.scheduler));
    tasks.spawn(functions::run(registry.clone(), caches.clone(), options.function_metrics.clone().unwrap_or_default()));
    tasks.spawn(gc::run(registry.clone(), caches.clone(), options.event_ttl.unwrap_or(gc::EVENT_TTL)));
    tasks.spawn(nodelifecycle::run(registry.clone(), caches.clone(), events::Recorder::new(registry.clone(), "node-controller"), options.lifecycle));
    tasks.spawn(identities::run(registry.clone(), caches.clone(), options.identity_grace.unwrap_or(identities::GRACE)));
    tasks.spawn(endpoints::run(registry.clone(), caches.clone()));
    tasks.spawn(nodeipam::run(registry.clone(), caches.clone(), events::Recorder::new(registry.clone(), "node-ipam-controller"), options.node_ipam));
    tasks
}
