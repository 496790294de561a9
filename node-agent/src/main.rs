//! switchyard-node-agent: realises this node's NetworkPorts as macvtap links and bridge ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use switchyard_libvirt::firewall::{SWITCHYARD_TABLE, check_table_name};
use switchyard_node_agent::agent::liveness::DEFAULT_LIVENESS_LIMIT;
use switchyard_node_agent::agent::{Agent, AgentConfig};
use switchyard_node_agent::cleanup;
use switchyard_node_agent::cni::CniConfig;
use switchyard_node_agent::cni::install;
use switchyard_node_agent::device_plugin::DevicePluginConfig;
use switchyard_node_agent::netlink::NetnsTarget;
use switchyard_node_agent::ownership::LinkGroups;
use switchyard_node_agent::virtual_network::{DEFAULT_STATE_DIR, VirtualNetworkConfig};
use tracing::info;

/// The switchyard node agent (one per node, as a DaemonSet).
#[derive(Debug, Parser)]
#[command(version, about, subcommand_negates_reqs = true)]
struct Args {
    /// A one-off job instead of serving a node.
    #[command(subcommand)]
    tool: Option<Tool>,
    /// The node this agent serves (from the downward API in a DaemonSet).
    #[arg(long, env = "NODE_NAME", required = true)]
    node_name: Option<String>,
    /// The network namespace holding the node's devices: a path like /run/netns/X or a name
    /// under /run/netns. Left out, the agent's own (the host's, with hostNetwork).
    #[arg(long, env = "SWITCHYARD_NETNS")]
    netns: Option<String>,
    /// Serves /healthz, /readyz and /metrics.
    #[arg(long, env = "SWITCHYARD_METRICS_ADDR", default_value = "0.0.0.0:9641")]
    metrics_addr: SocketAddr,
    /// text or json.
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    /// Refuse bridge ports beyond this many per bridge (the kernel's limit is 1023).
    #[arg(long, env = "SWITCHYARD_BRIDGE_PORT_LIMIT")]
    bridge_port_limit: Option<u32>,
    /// How often device presence and link state are re-read, in seconds.
    #[arg(long, env = "SWITCHYARD_REPORT_INTERVAL", default_value_t = 5)]
    report_interval: u64,
    /// Port reconciles in flight at once.
    #[arg(long, env = "SWITCHYARD_CONCURRENCY", default_value_t = 32)]
    concurrency: u16,
    /// The socket switchyard-cni calls. Left out: /run/switchyard/cni.sock when the agent
    /// serves its own (the host's) namespace, and no CNI server with --netns (stand-in nodes
    /// on one host share its /run).
    #[arg(long, env = "SWITCHYARD_CNI_SOCKET")]
    cni_socket: Option<PathBuf>,
    /// Where the CNI server keeps its records of pod interfaces.
    #[arg(
        long,
        env = "SWITCHYARD_CNI_STATE_DIR",
        default_value = "/run/switchyard/cni"
    )]
    cni_state_dir: PathBuf,
    /// How often pod interfaces whose pod or namespace is gone are looked for, in seconds.
    #[arg(long, env = "SWITCHYARD_CNI_SWEEP_INTERVAL", default_value_t = 30)]
    cni_sweep_interval: u64,
    /// Where isolated, nat, route and open networks keep their dnsmasq files, pid files and
    /// lease files.
    #[arg(long, env = "SWITCHYARD_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Serve the kubelet device plugin from this directory (the kubelet's, normally
    /// /var/lib/kubelet/device-plugins): one resource switchyard.dev/<network> per network,
    /// owned by the kubelet from then on. Left out, the agent patches the Node's capacity
    /// itself (nodes without a kubelet).
    #[arg(long, env = "SWITCHYARD_DEVICE_PLUGIN_DIR")]
    device_plugin_dir: Option<PathBuf>,
    /// The kubelet's pod resources socket: which slots a pod got, when the CNI call does not
    /// say (no Multus).
    #[arg(
        long,
        env = "SWITCHYARD_POD_RESOURCES_SOCKET",
        default_value = switchyard_kubelet_api::podresources::SOCKET
    )]
    pod_resources_socket: PathBuf,
    /// Where the device plugin keeps which network has which block of ifindexes.
    #[arg(
        long,
        env = "SWITCHYARD_DEVICE_PLUGIN_BLOCKS",
        default_value = "/run/switchyard/device-plugin/blocks.json"
    )]
    device_plugin_blocks: PathBuf,
    /// The nftables table (ip and ip6) of those networks' rules; never libvirt's own.
    #[arg(long, env = "SWITCHYARD_NFT_TABLE", default_value = SWITCHYARD_TABLE)]
    nft_table: String,
    /// Seconds the reconcile loop or the link deletion thread may go without progress before
    /// /healthz fails (and the kubelet restarts the agent).
    #[arg(long, env = "SWITCHYARD_LIVENESS_TIMEOUT", default_value_t = DEFAULT_LIVENESS_LIMIT.as_secs_f64())]
    liveness_timeout: f64,
}

#[derive(Debug, Subcommand)]
enum Tool {
    /// Copy the switchyard-cni shim into the host's CNI bin directory, replacing an older one
    /// atomically (the chart's install-cni init container).
    InstallCni {
        /// The host's CNI bin directory, as mounted in this container.
        #[arg(long)]
        dir: PathBuf,
        /// The shim to install; left out, the switchyard-cni beside this program.
        #[arg(long)]
        shim: Option<PathBuf>,
    },
    /// Remove what the agents and the controller leave in the cluster once they are gone for
    /// good: the ports' finalizer, every NetworkNode, the Nodes' switchyard.dev/* extended
    /// resources and net.switchyard.dev/* labels (the chart's post-delete hook).
    Cleanup {
        /// The namespace of the agents' pods; left out, every namespace.
        #[arg(long)]
        agents_namespace: Option<String>,
        /// The label selector of the agents' pods, waited for until they are gone.
        #[arg(
            long,
            default_value = "app.kubernetes.io/name=switchyard,app.kubernetes.io/component=node-agent"
        )]
        agents_selector: String,
        /// How long to wait for the agents' pods before cleaning up anyway, in seconds.
        #[arg(long, default_value_t = 60)]
        wait_seconds: u64,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn cni_config(args: &Args, netns: &NetnsTarget) -> Option<CniConfig> {
    let socket = match (&args.cni_socket, netns) {
        (Some(socket), _) => socket.clone(),
        (None, NetnsTarget::Current) => CniConfig::default().socket,
        (None, NetnsTarget::Path(_)) => return None,
    };
    Some(CniConfig {
        socket,
        state_dir: args.cni_state_dir.clone(),
        sweep_interval: Duration::from_secs(args.cni_sweep_interval.max(1)),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr, as the apiserver's and kubectl's do; stdout stays free for output.
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => subscriber.json().init(),
        LogFormat::Text => subscriber.init(),
    }
    match args.tool {
        Some(tool) => run_tool(tool).await,
        None => serve(args).await,
    }
}

async fn run_tool(tool: Tool) -> anyhow::Result<()> {
    match tool {
        Tool::InstallCni { dir, shim } => {
            let shim = match shim {
                Some(shim) => shim,
                None => std::env::current_exe()
                    .context("finding this program's own path")?
                    .with_file_name(install::SHIM_NAME),
            };
            let installed = install::install_shim(&shim, &dir)?;
            info!(shim = %installed.display(), "CNI shim installed");
            Ok(())
        }
        Tool::Cleanup {
            agents_namespace,
            agents_selector,
            wait_seconds,
        } => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes")?;
            let config = cleanup::CleanupConfig {
                agents_namespace,
                agents_selector,
                wait: Duration::from_secs(wait_seconds),
            };
            cleanup::run(client, &config).await?;
            Ok(())
        }
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let node_name = args
        .node_name
        .clone()
        .context("--node-name (or NODE_NAME) is required")?;

    let netns = match &args.netns {
        None => NetnsTarget::Current,
        Some(path) if path.contains('/') => NetnsTarget::Path(PathBuf::from(path)),
        Some(name) => NetnsTarget::named(name),
    };
    check_table_name(&args.nft_table).context("--nft-table")?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes")?;
    let cni = cni_config(&args, &netns);
    let config = AgentConfig {
        node_name: node_name.clone(),
        netns: netns.clone(),
        groups: LinkGroups::DEFAULT,
        bridge_port_limit: args.bridge_port_limit,
        report_interval: Duration::from_secs(args.report_interval.max(1)),
        concurrency: args.concurrency,
        cni,
        virtual_networks: VirtualNetworkConfig {
            netns: netns.clone(),
            state_dir: args.state_dir.clone(),
            table: args.nft_table.clone(),
        },
        liveness_limit: Duration::try_from_secs_f64(args.liveness_timeout)
            .ok()
            .filter(|limit| !limit.is_zero())
            .context("--liveness-timeout must be a positive number of seconds")?,
        device_plugin: args
            .device_plugin_dir
            .clone()
            .map(|dir| DevicePluginConfig {
                dir,
                pod_resources: args.pod_resources_socket.clone(),
                blocks_file: args.device_plugin_blocks.clone(),
            }),
    };
    info!(node = %node_name, netns = ?config.netns, "starting");
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    // Recovery runs before the endpoints exist: until then the probes fail, which is what
    // "not ready" means.
    let agent = Agent::start(client, config)
        .await
        .context("starting the agent")?;
    let server = tokio::spawn(switchyard_node_agent::http::serve(
        args.metrics_addr,
        agent.context.clone(),
        async move {
            let _ = http_stopped.await;
        },
    ));
    info!(addr = %args.metrics_addr, "ready");
    agent.wait().await;
    let _ = stop_http.send(());
    server
        .await
        .context("the HTTP server task")?
        .context("the HTTP server")?;
    info!("stopped");
    Ok(())
}
