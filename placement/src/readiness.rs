//! Whether a network is ready on a node, and every reason it is not.
//!
//! One rule for the Network status (which nodes serve it, why the others do not) and the
//! migration check (which candidate nodes can take an interface), so both name the same
//! reasons in the same words. A cordoned node is not part of it: it still serves the ports
//! it has, so the Network status counts it; only the migration check refuses it as a target
//! ([`crate::check::check_node`]).

use switchyard_crds::{Network, NodeNetwork, ReasonCode};

use crate::index::{AgentReport, Index, NodeInfo};
use crate::realisation::selects;

/// One reason a network is not ready on a node, most fundamental first: see
/// [`network_on_node`] for the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady<'a> {
    /// The index has no Node of that name.
    NodeNotFound,
    /// The network's nodeSelector does not match the node's labels.
    NotSelected,
    /// The Node's `Ready` condition is not True; why, from that condition.
    NodeNotReady(&'a str),
    /// No NetworkNode reports for the node: no agent runs there (yet).
    NoAgent,
    /// The node's agent says it is not ready; why, from its report.
    AgentNotReady(&'a str),
    /// The agent is there but does not report the network (yet).
    NotReported,
    /// The agent reports the network not ready, with its reason and message.
    NetworkNotReady {
        /// The agent's CamelCase reason (`DeviceMissing`).
        reason: Option<&'a str>,
        /// The agent's message.
        message: Option<&'a str>,
    },
}

impl NotReady<'_> {
    /// Whether it holds for every network on the node (the node or its agent), not only this
    /// one.
    pub fn node_wide(&self) -> bool {
        matches!(
            self,
            NotReady::NodeNotFound
                | NotReady::NodeNotReady(_)
                | NotReady::NoAgent
                | NotReady::AgentNotReady(_)
        )
    }

    /// The CamelCase reason a Network's `status.unreadyNodes` gives: the agent's own for a
    /// network it reports not ready.
    pub fn reason(&self) -> &str {
        match self {
            NotReady::NodeNotFound => "NodeNotFound",
            NotReady::NotSelected => "NotSelected",
            NotReady::NodeNotReady(_) => "NodeNotReady",
            NotReady::NoAgent => "NoAgent",
            NotReady::AgentNotReady(_) => "AgentNotReady",
            NotReady::NotReported => "NotReported",
            NotReady::NetworkNotReady { reason, .. } => reason.unwrap_or("NotReady"),
        }
    }

    /// The migration check's reason code.
    pub fn code(&self) -> ReasonCode {
        match self {
            NotReady::NodeNotFound => ReasonCode::NodeNotFound,
            NotReady::NotSelected => ReasonCode::NetworkNotOnNode,
            NotReady::NodeNotReady(_) | NotReady::NoAgent | NotReady::AgentNotReady(_) => {
                ReasonCode::NodeNotReady
            }
            NotReady::NotReported | NotReady::NetworkNotReady { .. } => ReasonCode::NetworkNotReady,
        }
    }

    /// A sentence naming the node, the network where it matters, and the reason.
    pub fn message(&self, node: &str, network: &str) -> String {
        match self {
            NotReady::NodeNotFound => format!("node \"{node}\" does not exist"),
            NotReady::NotSelected => format!(
                "network \"{network}\" is not available on node \"{node}\": its nodeSelector does not match the node's labels"
            ),
            NotReady::NodeNotReady(why) => format!("node \"{node}\" is not ready: {why}"),
            NotReady::NoAgent => format!(
                "no switchyard agent reports for node \"{node}\" (no NetworkNode \"{node}\")"
            ),
            NotReady::AgentNotReady(why) => {
                format!("the switchyard agent on node \"{node}\" is not ready: {why}")
            }
            NotReady::NotReported => {
                format!("the agent on node \"{node}\" does not report network \"{network}\" yet")
            }
            NotReady::NetworkNotReady { reason, message } => {
                let why = match (reason, message) {
                    (Some(r), Some(m)) => format!("{r}: {m}"),
                    (Some(r), None) => r.to_string(),
                    (None, Some(m)) => m.to_string(),
                    (None, None) => "the agent gives no reason".to_string(),
                };
                format!("network \"{network}\" is not ready on node \"{node}\": {why}")
            }
        }
    }
}

/// Every reason the node cannot serve any network: it does not exist (then alone), it is not
/// ready, it has no agent or its agent is not ready.
pub fn node_problems<'a>(index: &'a Index, node: &str) -> Vec<NotReady<'a>> {
    match index.node(node) {
        None => vec![NotReady::NodeNotFound],
        Some(info) => problems_of(info, index.agent(node)),
    }
}

fn problems_of<'a>(info: &'a NodeInfo, agent: Option<&'a AgentReport>) -> Vec<NotReady<'a>> {
    let mut problems = Vec::new();
    if !info.ready {
        problems.push(NotReady::NodeNotReady(&info.not_ready_reason));
    }
    match agent {
        None => problems.push(NotReady::NoAgent),
        Some(agent) if !agent.ready => {
            problems.push(NotReady::AgentNotReady(&agent.not_ready_reason))
        }
        Some(_) => {}
    }
    problems
}

/// What the node's agent reports for the network when the network is ready there; otherwise
/// every reason it is not, most fundamental first: the node does not exist (alone); the
/// network does not select it; the node is not ready; it has no agent, or its agent is not
/// ready; the agent does not report the network, or reports it not ready. The network-level
/// reasons are looked at only when an agent reports; a network the nodeSelector leaves out
/// gets no network-level reason.
pub fn network_on_node<'a>(
    index: &'a Index,
    network: &Network,
    node: &str,
) -> Result<&'a NodeNetwork, Vec<NotReady<'a>>> {
    let Some(info) = index.node(node) else {
        return Err(vec![NotReady::NodeNotFound]);
    };
    let selected = selects(&network.spec, &info.labels);
    let agent = index.agent(node);
    let mut problems = problems_of(info, agent);
    if !selected {
        problems.insert(0, NotReady::NotSelected);
        return Err(problems);
    }
    let Some(agent) = agent else {
        return Err(problems);
    };
    let name = network.metadata.name.as_deref().unwrap_or_default();
    match agent.networks.get(name) {
        None => problems.push(NotReady::NotReported),
        Some(served) if !served.ready => problems.push(NotReady::NetworkNotReady {
            reason: served.reason.as_deref(),
            message: served.message.as_deref(),
        }),
        Some(served) if problems.is_empty() => return Ok(served),
        Some(_) => {}
    }
    Err(problems)
}

#[cfg(test)]
mod tests;
