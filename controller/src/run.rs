//! The controller process: flags, start-up, the long-running parts, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use futures::{Stream, StreamExt, stream};
use kube::Client;
use kube::Resource;
use kube::ResourceExt;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::{Predicate, PredicateConfig, predicates};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use switchyard_crds::{ANNOTATION_RECHECK, MigrationCheck, Network};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admission::agent::AgentAccount;
use crate::cache::{self, typed_watch};
use crate::metrics::Metrics;
use crate::probes::{self, Health, ProbeState};
use crate::reconcile::{
    self, Context, ReconcileError, migration, nads, network, node_labels, port_labels,
};
use crate::tls;
use crate::webhook::{self, AgentPods, WebhookState};

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The controller's flags; each can also be set by its environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "switchyard-controller",
    version,
    about = "switchyard's cluster controller: network status, migration checks, admission webhook"
)]
pub struct Args {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (plain HTTP).
    #[arg(long, env = "SWITCHYARD_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Where the admission webhook is served (HTTPS).
    #[arg(long, env = "SWITCHYARD_WEBHOOK_ADDR", default_value = "0.0.0.0:8443")]
    pub webhook_addr: SocketAddr,
    /// The webhook's serving certificate (PEM, chain first). Without it the webhook is off.
    #[arg(long, env = "SWITCHYARD_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The webhook certificate's private key (PEM).
    #[arg(long, env = "SWITCHYARD_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// How long an answered MigrationCheck is kept before the controller deletes it, in
    /// seconds (a check is answered once, not kept current; see the CRD's documentation).
    #[arg(long, env = "SWITCHYARD_CHECK_TTL", default_value_t = reconcile::migration::DEFAULT_TTL.as_secs())]
    pub check_ttl: u64,
    /// The node agents' ServiceAccount, `<namespace>/<name>`. Its requests are let through
    /// only for the agent's own node (the node of the pod its token is bound to). Left out,
    /// agents are held to RBAC alone, which cannot tell one node's agent from another's.
    #[arg(long, env = "SWITCHYARD_AGENT_SERVICE_ACCOUNT")]
    pub agent_service_account: Option<AgentAccount>,
    /// The namespaces (comma-separated) each Network's Multus NetworkAttachmentDefinitions
    /// are generated in: `<network>` and `<network>-<portgroup>`. Empty: none are generated
    /// and existing ones are left alone.
    #[arg(long, env = "SWITCHYARD_NAD_NAMESPACES", value_delimiter = ',')]
    pub nad_namespaces: Vec<String>,
    /// `text` or `json`. The level comes from `RUST_LOG` (default `info`).
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable Kubernetes configuration (KUBECONFIG or in-cluster).
    #[error("connecting to Kubernetes")]
    Kube(#[from] kube::Error),
    /// The flags do not make sense together.
    #[error("{0}")]
    Flags(&'static str),
    /// The webhook's certificate could not be loaded or its address bound.
    #[error("webhook")]
    Tls(#[from] tls::TlsError),
    /// The metrics address could not be bound.
    #[error("binding the metrics address {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// How long the parts get to finish after SIGTERM before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How often every Network's NetworkAttachmentDefinitions are applied again (server-side
/// apply of unchanged objects writes nothing), restoring those changed or deleted by others.
const NAD_RESYNC: Duration = Duration::from_secs(300);
/// Network status waits this long for related changes to settle before it is recomputed.
const NETWORK_DEBOUNCE: Duration = Duration::from_millis(200);

/// Runs the controller until SIGTERM or SIGINT.
pub async fn run(args: Args) -> Result<(), RunError> {
    let webhook_tls = match (&args.tls_cert_file, &args.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
        (None, None) => None,
        _ => {
            return Err(RunError::Flags(
                "--tls-cert-file and --tls-key-file must be given together",
            ));
        }
    };
    let client = Client::try_default().await?;
    let metrics_listener = TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| RunError::Bind {
            addr: args.metrics_addr,
            source,
        })?;
    let webhook_listener = match &webhook_tls {
        Some(_) => Some(tls::bind(args.webhook_addr).await?),
        None => None,
    };

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let (caches, triggers, watch_all) = cache::caches(client.clone());
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let mut ctx = Context::new(
        client.clone(),
        caches.clone(),
        metrics.clone(),
        std::env::var("HOSTNAME").ok(),
    );
    ctx.check_ttl = Duration::from_secs(args.check_ttl.max(1));
    ctx.nad_namespaces = args
        .nad_namespaces
        .iter()
        .map(|namespace| namespace.trim().to_string())
        .filter(|namespace| !namespace.is_empty())
        .collect();
    let ctx = Arc::new(ctx);
    let mut parts = Parts {
        tasks: JoinSet::new(),
        health: health.clone(),
        shutdown: shutdown.clone(),
    };

    parts.until_shutdown("watches", watch_all);
    let probes = probes::router(ProbeState {
        caches: caches.clone(),
        metrics: metrics.clone(),
        health,
    });
    let stop = shutdown.clone();
    parts.spawn("metrics server", async move {
        let served = axum::serve(metrics_listener, probes)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "metrics server failed");
        }
    });
    match (webhook_tls, webhook_listener) {
        (Some(acceptor), Some(listener)) => {
            let agents = match &args.agent_service_account {
                Some(account) => {
                    tracing::info!(%account, "node agents may write only their own node's objects");
                    Some(Arc::new(AgentPods::new(client.clone(), account.clone())))
                }
                None => {
                    tracing::warn!(
                        "no --agent-service-account: node agents are not held to their own node"
                    );
                    None
                }
            };
            let router = webhook::router(WebhookState {
                caches: caches.clone(),
                client: client.clone(),
                metrics: metrics.clone(),
                agents,
            });
            parts.spawn(
                "webhook server",
                tls::serve(listener, acceptor, router, shutdown.clone()),
            );
        }
        _ => {
            tracing::warn!("no --tls-cert-file / --tls-key-file: the admission webhook is disabled")
        }
    }

    let cache::Triggers {
        networks,
        networks_all,
        nodes,
        nodes_all,
        ports,
        ports_all,
    } = triggers;
    parts.spawn(
        "network reconciler",
        drain(
            network::NAME,
            reconciler(
                network::reconcile,
                network::error_policy,
                ctx.clone(),
                caches.networks.clone(),
                networks.map(Ok),
                networks_all,
                controller::Config::default().debounce(NETWORK_DEBOUNCE),
                shutdown.clone(),
            ),
        ),
    );
    parts.spawn(
        "node label reconciler",
        drain(
            node_labels::NAME,
            reconciler(
                node_labels::reconcile,
                node_labels::error_policy,
                ctx.clone(),
                caches.nodes.clone(),
                nodes.map(Ok),
                nodes_all,
                controller::Config::default(),
                shutdown.clone(),
            ),
        ),
    );
    parts.spawn(
        "port label reconciler",
        drain(
            port_labels::NAME,
            reconciler(
                port_labels::reconcile,
                port_labels::error_policy,
                ctx.clone(),
                caches.ports.clone(),
                ports.map(Ok),
                ports_all,
                controller::Config::default(),
                shutdown.clone(),
            ),
        ),
    );
    // MigrationChecks are not in the index: their own watch feeds their store and queue. A
    // check is answered when it asks (created, spec changed, recheck annotation), so only
    // those changes wake it; the controller's own status writes and cluster changes do not.
    let (check_store, check_writer) = reflector::store();
    let asked = predicates::generation.combine(|check: &MigrationCheck| {
        check
            .annotations()
            .get(ANNOTATION_RECHECK)
            .map(|value| hash_of(value))
    });
    let changed_checks = typed_watch::<MigrationCheck>(client.clone())
        .reflect(check_writer)
        .applied_objects()
        .predicate_filter(asked, PredicateConfig::default())
        .map_ok(|check| ObjectRef::from_obj(&check));
    parts.spawn(
        "migration check reconciler",
        drain(
            migration::NAME,
            reconciler(
                migration::reconcile,
                migration::error_policy,
                ctx.clone(),
                check_store,
                changed_checks,
                stream::empty(),
                controller::Config::default(),
                shutdown.clone(),
            ),
        ),
    );
    if ctx.nad_namespaces.is_empty() {
        tracing::info!("no --nad-namespaces: NetworkAttachmentDefinitions are not generated");
    } else {
        // A Network's NADs depend on its spec (portgroups) and identity (the owner's UID)
        // only: its own watch wakes this reconciler for those, not for every status write
        // (its own condition included). The periodic pass puts back NADs someone changed or
        // deleted.
        let (network_store, network_writer) = reflector::store();
        let spec_or_identity = |network: &Network| {
            Some(hash_of(&format!(
                "{}/{}",
                network.uid().unwrap_or_default(),
                network.meta().generation.unwrap_or_default()
            )))
        };
        let changed_networks = typed_watch::<Network>(client.clone())
            .reflect(network_writer)
            .applied_objects()
            .predicate_filter(spec_or_identity, PredicateConfig::default())
            .map_ok(|network| ObjectRef::from_obj(&network));
        let every_pass = stream::unfold((), |()| async {
            tokio::time::sleep(NAD_RESYNC).await;
            Some(((), ()))
        });
        tracing::info!(namespaces = ?ctx.nad_namespaces, "generating NetworkAttachmentDefinitions");
        parts.spawn(
            "attachment definition reconciler",
            drain(
                nads::NAME,
                reconciler(
                    nads::reconcile,
                    nads::error_policy,
                    ctx.clone(),
                    network_store,
                    changed_networks,
                    every_pass,
                    controller::Config::default(),
                    shutdown.clone(),
                ),
            ),
        );
    }
    tracing::info!(
        metrics_addr = %args.metrics_addr,
        webhook_addr = %args.webhook_addr,
        "controller started"
    );

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    if tokio::time::timeout(SHUTDOWN_GRACE, parts.join())
        .await
        .is_err()
    {
        tracing::warn!("some parts did not stop in time");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The long-running parts, and what to do when one ends.
struct Parts {
    tasks: JoinSet<()>,
    health: Arc<Health>,
    shutdown: CancellationToken,
}

impl Parts {
    /// Runs a part that stops by itself at shutdown; ending before that is a failure.
    fn spawn(&mut self, name: &'static str, part: impl Future<Output = ()> + Send + 'static) {
        let health = self.health.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            part.await;
            if !shutdown.is_cancelled() {
                health.stopped(name);
            }
        });
    }

    /// Runs a part that never ends by itself, dropping it at shutdown.
    fn until_shutdown(
        &mut self,
        name: &'static str,
        part: impl Future<Output = ()> + Send + 'static,
    ) {
        let shutdown = self.shutdown.clone();
        self.spawn(name, async move {
            tokio::select! {
                () = part => {}
                () = shutdown.cancelled() => {}
            }
        });
    }

    async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Runs a reconciler over the objects of `store`: those `changed` names, and all of them on
/// each item of `all`. Stops taking work at shutdown and ends once the work in hand is done.
#[allow(clippy::too_many_arguments)]
fn reconciler<K, Fut>(
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
    error_policy: fn(Arc<K>, &ReconcileError, Arc<Context>) -> Action,
    ctx: Arc<Context>,
    store: Store<K>,
    changed: impl Stream<Item = Result<ObjectRef<K>, watcher::Error>> + Send + 'static,
    all: impl Stream<Item = ()> + Send + 'static,
    config: controller::Config,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<(ObjectRef<K>, Action), controller::Error<ReconcileError, watcher::Error>>>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    let everything = store.clone();
    let all = all.flat_map(move |()| {
        let refs: Vec<_> = everything
            .state()
            .iter()
            .map(|object| Ok(ObjectRef::from_obj(object.as_ref())))
            .collect();
        stream::iter(refs)
    });
    let queue = stream::select(changed, all).take_until(shutdown.cancelled_owned());
    controller::applier(
        move |object, ctx| Box::pin(reconcile(object, ctx)),
        error_policy,
        ctx,
        store,
        queue,
        config,
    )
}

/// Consumes a controller's results; failures were already logged by its error policy.
async fn drain<T: std::fmt::Debug, E: std::fmt::Display>(
    controller: &'static str,
    results: impl Stream<Item = Result<T, E>>,
) {
    results
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(controller, %error, "reconcile not completed");
            }
        })
        .await;
}

/// A hash of `value`, as kube-runtime's predicates compare them.
fn hash_of(value: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
            }
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    shutdown.cancel();
}
