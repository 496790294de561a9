//! An in-memory view of the cluster, indexed for the questions placement answers.
//!
//! The controller builds it from watch events (its `cache`), the kubectl plugin from one
//! read of the cluster; the migration [`check`](crate::check), the controller's network
//! status aggregation and the admission webhook read it. Everything is keyed by name so that
//! a check for one interface on one node is a handful of hash lookups, whatever the size of
//! the cluster.
//!
//! Pure: no I/O. The conversions from API objects live here too, so they are unit-tested.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use switchyard_crds::{ConditionStatus, Network, NetworkNode, NetworkPort, NodeNetwork};

pub use crate::port_key::PortKey;
use crate::realisation;

/// What the controller needs to know about a Kubernetes Node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's labels, matched against network selectors.
    pub labels: BTreeMap<String, String>,
    /// Whether the node's `Ready` condition is `True`.
    pub ready: bool,
    /// Why it is not ready, from the `Ready` condition (empty when ready).
    pub not_ready_reason: String,
    /// Whether the node is cordoned: no new pod, so no migration target, lands on it.
    pub unschedulable: bool,
}

impl NodeInfo {
    /// The parts of a Node the controller uses.
    pub fn from_node(node: &Node) -> Self {
        let status = node.status.as_ref();
        let ready_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
        let ready = ready_condition.is_some_and(|c| c.status == "True");
        let not_ready_reason = match ready_condition {
            _ if ready => String::new(),
            None => "the node reports no Ready condition".to_string(),
            Some(c) => {
                let why = [c.reason.as_deref(), c.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(": ");
                if why.is_empty() {
                    format!("Ready is {}", c.status)
                } else {
                    format!("Ready is {} ({why})", c.status)
                }
            }
        };
        Self {
            labels: node.metadata.labels.clone().unwrap_or_default(),
            ready,
            not_ready_reason,
            unschedulable: node
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
        }
    }
}

/// What a node's agent reports in its `NetworkNode`, indexed by network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentReport {
    /// Whether the agent's `Ready` condition is `True` (it recovered and serves ports).
    pub ready: bool,
    /// Why it is not ready (empty when ready).
    pub not_ready_reason: String,
    /// Every network the agent serves or tries to, by name.
    pub networks: HashMap<String, NodeNetwork>,
}

impl AgentReport {
    /// The report in a `NetworkNode`'s status. A NetworkNode without status is an agent that
    /// has not finished starting.
    pub fn from_network_node(node: &NetworkNode) -> Self {
        let Some(status) = node.status.as_ref() else {
            return Self {
                ready: false,
                not_ready_reason: "the agent has not reported yet".to_string(),
                networks: HashMap::new(),
            };
        };
        let ready_condition = status.conditions.iter().find(|c| c.kind == "Ready");
        let ready = ready_condition.is_some_and(|c| c.status == ConditionStatus::True);
        let not_ready_reason = match ready_condition {
            _ if ready => String::new(),
            None => "the agent reports no Ready condition".to_string(),
            Some(c) if c.message.is_empty() => c.reason.clone(),
            Some(c) => format!("{}: {}", c.reason, c.message),
        };
        Self {
            ready,
            not_ready_reason,
            networks: status
                .networks
                .iter()
                .map(|n| (n.name.clone(), n.clone()))
                .collect(),
        }
    }
}

/// What a live port uses, for refusing network changes that would pull devices or portgroups
/// from under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortUse {
    /// The port.
    pub key: PortKey,
    /// Its network.
    pub network: String,
    /// Its node.
    pub node: String,
    /// The portgroup it names in its spec.
    pub requested_portgroup: Option<String>,
    /// The portgroup that applied (the default one when it names none), once realised.
    pub actual_portgroup: Option<String>,
    /// The pool device it sits on, once realised.
    pub actual_device: Option<String>,
    /// Whether it lacks the node or network label the agents select ports by.
    pub needs_labels: bool,
}

impl PortUse {
    /// What a NetworkPort uses.
    pub fn from_port(port: &NetworkPort) -> Self {
        let actual = port.status.as_ref().and_then(|s| s.actual.as_ref());
        let labels = port.metadata.labels.as_ref();
        let label = |key: &str| labels.and_then(|labels| labels.get(key));
        let needs_labels = label(switchyard_crds::LABEL_NODE) != Some(&port.spec.node)
            || label(switchyard_crds::LABEL_NETWORK) != Some(&port.spec.network);
        Self {
            key: PortKey::of(port),
            network: port.spec.network.clone(),
            node: port.spec.node.clone(),
            requested_portgroup: port.spec.portgroup.clone(),
            actual_portgroup: actual.and_then(|a| a.portgroup.clone()),
            actual_device: actual.and_then(|a| a.device.clone()),
            needs_labels,
        }
    }

    /// Whether the port uses this portgroup, by name or as the default that applied.
    pub fn uses_portgroup(&self, portgroup: &str) -> bool {
        self.requested_portgroup.as_deref() == Some(portgroup)
            || self.actual_portgroup.as_deref() == Some(portgroup)
    }
}

/// Networks, Nodes, agent reports and ports, by name.
#[derive(Debug, Default, Clone)]
pub struct Index {
    networks: HashMap<String, Arc<Network>>,
    nodes: HashMap<String, NodeInfo>,
    agents: HashMap<String, AgentReport>,
    ports: HashMap<PortKey, PortUse>,
    ports_by_network: HashMap<String, BTreeSet<PortKey>>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// A network by name.
    pub fn network(&self, name: &str) -> Option<&Arc<Network>> {
        self.networks.get(name)
    }

    /// Every network, in no particular order.
    pub fn networks(&self) -> impl Iterator<Item = &Arc<Network>> {
        self.networks.values()
    }

    /// Adds or replaces a network; returns the one it replaced.
    pub fn upsert_network(&mut self, network: Arc<Network>) -> Option<Arc<Network>> {
        self.networks.insert(name_of(&network.metadata), network)
    }

    /// Removes a network; returns it.
    pub fn remove_network(&mut self, name: &str) -> Option<Arc<Network>> {
        self.networks.remove(name)
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    /// Every node, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &NodeInfo)> {
        self.nodes.iter()
    }

    /// Every node name, sorted.
    pub fn node_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Adds or replaces a node; returns what it replaced.
    pub fn upsert_node(&mut self, name: &str, info: NodeInfo) -> Option<NodeInfo> {
        self.nodes.insert(name.to_string(), info)
    }

    /// Removes a node; returns it.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeInfo> {
        self.nodes.remove(name)
    }

    /// The agent report of a node.
    pub fn agent(&self, node: &str) -> Option<&AgentReport> {
        self.agents.get(node)
    }

    /// Adds or replaces a node's agent report; returns what it replaced.
    pub fn upsert_agent(&mut self, node: &str, report: AgentReport) -> Option<AgentReport> {
        self.agents.insert(node.to_string(), report)
    }

    /// Removes a node's agent report; returns it.
    pub fn remove_agent(&mut self, node: &str) -> Option<AgentReport> {
        self.agents.remove(node)
    }

    /// One network as a node's agent reports it.
    pub fn node_network(&self, node: &str, network: &str) -> Option<&NodeNetwork> {
        self.agents.get(node)?.networks.get(network)
    }

    /// A port by key.
    pub fn port(&self, key: &PortKey) -> Option<&PortUse> {
        self.ports.get(key)
    }

    /// Adds or replaces a port; returns what it replaced.
    pub fn upsert_port(&mut self, port: PortUse) -> Option<PortUse> {
        let old = self.remove_port(&port.key);
        self.ports_by_network
            .entry(port.network.clone())
            .or_default()
            .insert(port.key.clone());
        self.ports.insert(port.key.clone(), port);
        old
    }

    /// Removes a port; returns it.
    pub fn remove_port(&mut self, key: &PortKey) -> Option<PortUse> {
        let old = self.ports.remove(key)?;
        if let Some(keys) = self.ports_by_network.get_mut(&old.network) {
            keys.remove(key);
            if keys.is_empty() {
                self.ports_by_network.remove(&old.network);
            }
        }
        Some(old)
    }

    /// The ports of a network, in key order.
    pub fn ports_of_network<'a>(&'a self, network: &str) -> impl Iterator<Item = &'a PortUse> {
        self.ports_by_network
            .get(network)
            .into_iter()
            .flatten()
            .filter_map(|key| self.ports.get(key))
    }

    /// How many ports each network has (networks with ports only).
    pub fn port_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.ports_by_network
            .iter()
            .map(|(network, keys)| (network.as_str(), keys.len()))
    }

    /// Every port key (for relists).
    pub fn port_keys(&self) -> Vec<PortKey> {
        self.ports.keys().cloned().collect()
    }

    /// Every network name (for relists).
    pub fn network_names(&self) -> Vec<String> {
        self.networks.keys().cloned().collect()
    }

    /// Every node name with an agent report (for relists).
    pub fn agent_names(&self) -> Vec<String> {
        self.agents.keys().cloned().collect()
    }

    /// Networks whose selector matches any of these label sets: the networks a change to a
    /// node can affect.
    pub fn networks_selecting<'a>(
        &'a self,
        label_sets: &'a [&'a BTreeMap<String, String>],
    ) -> impl Iterator<Item = &'a Arc<Network>> + 'a {
        self.networks.values().filter(move |network| {
            label_sets
                .iter()
                .any(|labels| realisation::selects(&network.spec, labels))
        })
    }
}

/// An object's name, or its generated-name prefix before the apiserver named it.
fn name_of(metadata: &ObjectMeta) -> String {
    metadata
        .name
        .clone()
        .or_else(|| metadata.generate_name.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};
    use switchyard_crds::{
        Condition, NetworkNodeSpec, NetworkNodeStatus, NetworkPortSpec, NetworkPortStatus,
        NetworkSpec, NodeSelector, PortActual,
    };

    fn node(ready: Option<&str>, unschedulable: bool) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("a".into()),
                labels: Some([("rack".to_string(), "1".to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                unschedulable: Some(unschedulable),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: ready.map(|status| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        reason: Some("KubeletNotReady".into()),
                        message: Some("PLEG is not healthy".into()),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn node_readiness_comes_from_its_ready_condition() {
        let info = NodeInfo::from_node(&node(Some("True"), false));
        assert!(info.ready && info.not_ready_reason.is_empty() && !info.unschedulable);
        assert_eq!(info.labels.get("rack").map(String::as_str), Some("1"));

        let info = NodeInfo::from_node(&node(Some("False"), true));
        assert!(!info.ready && info.unschedulable);
        assert_eq!(
            info.not_ready_reason,
            "Ready is False (KubeletNotReady: PLEG is not healthy)"
        );

        let info = NodeInfo::from_node(&node(None, false));
        assert!(!info.ready);
        assert_eq!(info.not_ready_reason, "the node reports no Ready condition");
    }

    #[test]
    fn agent_report_indexes_networks_and_reads_readiness() {
        let mut nn = NetworkNode::new("a", NetworkNodeSpec {});
        assert!(!AgentReport::from_network_node(&nn).ready);
        nn.status = Some(NetworkNodeStatus {
            networks: vec![NodeNetwork {
                name: "n1".into(),
                ready: true,
                ..Default::default()
            }],
            conditions: vec![Condition {
                kind: "Ready".into(),
                status: ConditionStatus::False,
                reason: "Recovering".into(),
                message: "listing links".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let report = AgentReport::from_network_node(&nn);
        assert!(!report.ready);
        assert_eq!(report.not_ready_reason, "Recovering: listing links");
        assert!(report.networks["n1"].ready);

        nn.status.as_mut().unwrap().conditions[0].status = ConditionStatus::True;
        assert!(AgentReport::from_network_node(&nn).ready);
    }

    fn port(ns: &str, name: &str, network: &str, device: Option<&str>) -> NetworkPort {
        let mut port = NetworkPort::new(
            name,
            NetworkPortSpec {
                network: network.into(),
                node: "a".into(),
                mac: "52:54:00:00:00:01".into(),
                portgroup: Some("pg".into()),
                ..Default::default()
            },
        );
        port.metadata.namespace = Some(ns.into());
        port.status = device.map(|d| NetworkPortStatus {
            actual: Some(PortActual {
                device: Some(d.into()),
                portgroup: Some("pg".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        port
    }

    #[test]
    fn ports_are_indexed_by_network_and_move_when_their_network_changes() {
        let mut index = Index::new();
        index.upsert_port(PortUse::from_port(&port("ns", "p1", "n1", Some("eth1"))));
        index.upsert_port(PortUse::from_port(&port("ns", "p2", "n1", None)));
        let names: Vec<_> = index
            .ports_of_network("n1")
            .map(|p| p.key.name.as_str())
            .collect();
        assert_eq!(names, ["p1", "p2"]);
        let p1 = index.ports_of_network("n1").next().unwrap();
        assert_eq!(p1.actual_device.as_deref(), Some("eth1"));
        assert!(p1.uses_portgroup("pg") && !p1.uses_portgroup("other"));
        assert!(p1.needs_labels);

        index.upsert_port(PortUse::from_port(&port("ns", "p2", "n2", None)));
        assert_eq!(index.ports_of_network("n1").count(), 1);
        assert_eq!(index.ports_of_network("n2").count(), 1);
        let key = PortKey::new("ns", "p1");
        assert!(index.remove_port(&key).is_some());
        assert_eq!(index.ports_of_network("n1").count(), 0);
        let counts: Vec<_> = index.port_counts().collect();
        assert_eq!(counts, [("n2", 1)]);
    }

    #[test]
    fn labelled_ports_need_no_labels() {
        let mut p = port("ns", "p1", "n1", None);
        p.metadata.labels = Some(
            [
                (switchyard_crds::LABEL_NODE.to_string(), "a".to_string()),
                (switchyard_crds::LABEL_NETWORK.to_string(), "n1".to_string()),
            ]
            .into(),
        );
        assert!(!PortUse::from_port(&p).needs_labels);
    }

    #[test]
    fn networks_selecting_a_node_follow_their_selectors() {
        let mut index = Index::new();
        let everywhere = Network::new("everywhere", NetworkSpec::default());
        let mut rack1 = Network::new("rack1", NetworkSpec::default());
        rack1.spec.node_selector = Some(NodeSelector {
            match_labels: [("rack".to_string(), "1".to_string())].into(),
            ..Default::default()
        });
        index.upsert_network(Arc::new(everywhere));
        index.upsert_network(Arc::new(rack1));
        let rack2: BTreeMap<String, String> = [("rack".to_string(), "2".to_string())].into();
        let mut names: Vec<_> = index
            .networks_selecting(&[&rack2])
            .map(|n| name_of(&n.metadata))
            .collect();
        names.sort();
        assert_eq!(names, ["everywhere"]);
        let rack1_labels: BTreeMap<String, String> = [("rack".to_string(), "1".to_string())].into();
        assert_eq!(
            index.networks_selecting(&[&rack2, &rack1_labels]).count(),
            2
        );
    }
}
