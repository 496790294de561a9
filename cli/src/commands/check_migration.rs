//! `check-migration`: could a guest with these interfaces move to these nodes right now?
//!
//! Reads the live cluster (Networks, Nodes and the agents' NetworkNodes), builds the
//! placement index and asks placement's check — the one the controller answers a
//! `MigrationCheck` with and its NetworkPort admission webhook refuses ports by.
//!
//! Exit codes: 0 when at least one candidate node can take every interface; 1 when none can
//! (the reasons are printed); 2 usage error or unreadable file; 3 cluster unreachable.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, Config};
use switchyard_crds::{
    InterfaceRequest, MigrationCheck, MigrationCheckSpec, Network, NetworkNode, NodeVerdict,
};
use switchyard_placement::check::{check_migration, code_name, eligible_nodes, summary};
use switchyard_placement::index::{AgentReport, Index, NodeInfo};

use crate::failure::Failure;
use crate::input::Source;
use crate::output;

/// Arguments of `check-migration`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit codes: 0 some candidate node is eligible, 1 none is, 2 usage error or unreadable file, 3 cluster unreachable."
)]
pub struct Args {
    /// A file with the guest's interfaces: a MigrationCheck object or its spec (YAML); - reads
    /// standard input.
    #[arg(short = 'f', long = "filename", value_name = "FILE.yaml")]
    file: Option<String>,
    /// An interface on this network (added to the file's interfaces).
    #[arg(long)]
    network: Option<String>,
    /// The portgroup of the --network interface.
    #[arg(long, requires = "network")]
    portgroup: Option<String>,
    /// A candidate node; repeat for several. Left out, the file's nodes, else every node.
    #[arg(long = "node", value_name = "NODE")]
    nodes: Vec<String>,
    /// `table` or `yaml` (the verdicts as a MigrationCheck's status would hold them).
    #[arg(short = 'o', long, default_value = "table", value_parser = ["table", "yaml"])]
    output: String,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let spec = request(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .map_err(Failure::Cluster)?;
    let index = runtime.block_on(load(&spec)).map_err(Failure::Cluster)?;
    let verdicts = check_migration(&index, &spec);
    let text = match args.output.as_str() {
        "yaml" => serde_yaml::to_string(&verdicts)
            .context("writing YAML")
            .map_err(Failure::Input)?,
        _ => table(&verdicts),
    };
    output::emit(&text)?;
    if eligible_nodes(&verdicts).is_empty() {
        return Err(Failure::Invalid(format!(
            "no candidate node can take every interface ({} checked)",
            verdicts.len()
        )));
    }
    Ok(())
}

/// The question: the file's interfaces and nodes, plus those on the command line.
fn request(args: &Args) -> Result<MigrationCheckSpec, Failure> {
    let mut spec = match args.file.as_deref() {
        Some(file) => parse_spec(&Source::read(file)?)?,
        None => MigrationCheckSpec::default(),
    };
    if let Some(network) = &args.network {
        spec.interfaces.push(InterfaceRequest {
            name: Some(format!("net{}", spec.interfaces.len())),
            network: network.clone(),
            portgroup: args.portgroup.clone(),
            ..Default::default()
        });
    }
    if !args.nodes.is_empty() {
        spec.nodes = args.nodes.clone();
    }
    if spec.interfaces.is_empty() {
        return Err(Failure::Input(anyhow::anyhow!(
            "no interface to check: give --network NAME, or -f with a MigrationCheck"
        )));
    }
    Ok(spec)
}

/// A MigrationCheck object, or just its spec.
fn parse_spec(source: &Source) -> Result<MigrationCheckSpec, Failure> {
    let value: serde_yaml::Value = serde_yaml::from_str(&source.text)
        .with_context(|| format!("{}: not YAML", source.name))
        .map_err(Failure::Input)?;
    let parsed = if value.get("kind").is_some() {
        serde_yaml::from_value::<MigrationCheck>(value).map(|check| check.spec)
    } else {
        serde_yaml::from_value::<MigrationCheckSpec>(value)
    };
    parsed
        .with_context(|| format!("{}: not a MigrationCheck or its spec", source.name))
        .map_err(Failure::Input)
}

/// The cluster state the check reads: the interfaces' networks, and the candidate nodes with
/// their agents' reports (every node when there are no candidates).
async fn load(spec: &MigrationCheckSpec) -> anyhow::Result<Index> {
    let mut config = Config::infer()
        .await
        .context("finding the cluster (set KUBECONFIG, or run inside a pod)")?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(20));
    let client = Client::try_from(config).context("creating the Kubernetes client")?;
    let networks: Api<Network> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let agents: Api<NetworkNode> = Api::all(client);

    let mut index = Index::new();
    let wanted: BTreeSet<&str> = spec.interfaces.iter().map(|i| i.network.as_str()).collect();
    for name in wanted {
        if let Some(network) = networks
            .get_opt(name)
            .await
            .with_context(|| format!("reading network {name}"))?
        {
            index.upsert_network(network.into());
        }
    }
    if spec.nodes.is_empty() {
        for node in nodes
            .list(&Default::default())
            .await
            .context("listing nodes")?
        {
            index.upsert_node(
                &kube::ResourceExt::name_any(&node),
                NodeInfo::from_node(&node),
            );
        }
        for agent in agents
            .list(&Default::default())
            .await
            .context("listing NetworkNodes")?
        {
            index.upsert_agent(
                &kube::ResourceExt::name_any(&agent),
                AgentReport::from_network_node(&agent),
            );
        }
    } else {
        for name in &spec.nodes {
            if let Some(node) = nodes
                .get_opt(name)
                .await
                .with_context(|| format!("reading node {name}"))?
            {
                index.upsert_node(name, NodeInfo::from_node(&node));
            }
            if let Some(agent) = agents
                .get_opt(name)
                .await
                .with_context(|| format!("reading NetworkNode {name}"))?
            {
                index.upsert_agent(name, AgentReport::from_network_node(&agent));
            }
        }
    }
    Ok(index)
}

/// One row per node; each reason on its own line.
fn table(verdicts: &[NodeVerdict]) -> String {
    let width = verdicts
        .iter()
        .map(|v| v.node.len())
        .max()
        .unwrap_or(0)
        .max("NODE".len());
    let mut out = format!("{:<width$}  {:<8}  REASONS\n", "NODE", "ELIGIBLE");
    for verdict in verdicts {
        let eligible = if verdict.eligible { "yes" } else { "no" };
        if verdict.reasons.is_empty() {
            out.push_str(&format!("{:<width$}  {eligible}\n", verdict.node));
        }
        for (i, reason) in verdict.reasons.iter().enumerate() {
            let (node, eligible) = if i == 0 {
                (verdict.node.as_str(), eligible)
            } else {
                ("", "")
            };
            let interface = reason
                .interface
                .as_deref()
                .map(|i| format!("{i}: "))
                .unwrap_or_default();
            out.push_str(&format!(
                "{node:<width$}  {eligible:<8}  {interface}{}: {}\n",
                code_name(reason.code),
                reason.message
            ));
        }
    }
    let eligible = eligible_nodes(verdicts);
    out.push_str(&format!("\n{} nodes eligible", summary(verdicts)));
    if !eligible.is_empty() {
        out.push_str(&format!(": {}", eligible.join(", ")));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_crds::{IneligibleReason, ReasonCode};

    #[test]
    fn table_lists_every_reason_under_its_node() {
        let verdicts = vec![
            NodeVerdict {
                node: "node-b".into(),
                eligible: false,
                reasons: vec![
                    IneligibleReason {
                        interface: None,
                        code: ReasonCode::NodeNotReady,
                        message: "node \"node-b\" is cordoned".into(),
                    },
                    IneligibleReason {
                        interface: Some("net0".into()),
                        code: ReasonCode::NoFreeDevice,
                        message: "no device".into(),
                    },
                ],
            },
            NodeVerdict {
                node: "c".into(),
                eligible: true,
                reasons: vec![],
            },
        ];
        assert_eq!(
            table(&verdicts),
            "NODE    ELIGIBLE  REASONS\n\
             node-b  no        NodeNotReady: node \"node-b\" is cordoned\n\
             \x20                 net0: NoFreeDevice: no device\n\
             c       yes\n\
             \n\
             1/2 nodes eligible: c\n"
        );
    }

    #[test]
    fn a_migration_check_file_or_its_spec_is_accepted() {
        let object = Source {
            name: "vm.yaml".into(),
            text: "apiVersion: switchyard.dev/v1alpha1\nkind: MigrationCheck\nmetadata: {name: vm1}\nspec:\n  interfaces: [{name: net0, network: sriov}]\n  nodes: [a]\n".into(),
        };
        let spec = parse_spec(&object).unwrap();
        assert_eq!(spec.interfaces[0].network, "sriov");
        assert_eq!(spec.nodes, ["a"]);
        let bare = Source {
            name: "spec.yaml".into(),
            text: "interfaces: [{network: sriov, portgroup: gold}]\n".into(),
        };
        assert_eq!(
            parse_spec(&bare).unwrap().interfaces[0]
                .portgroup
                .as_deref(),
            Some("gold")
        );
    }
}
