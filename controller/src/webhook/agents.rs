//! Which node a node agent's request comes from: the node of the pod its token is bound to,
//! read from the apiserver once per pod.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;

use crate::admission::Denial;
use crate::admission::agent::{self, AgentAccount, NodeAgent, Requester};

/// How long a review waits for the agent's pod. The apiserver calls the webhook with a few
/// seconds' timeout; a refusal the agent retries beats a timeout.
const POD_LOOKUP: Duration = Duration::from_secs(2);
/// How many agent pods are remembered. A pod's node never changes and the apiserver itself
/// refuses a token whose pod is gone, so entries never go stale; this only bounds memory
/// across many agent restarts.
const REMEMBERED_PODS: usize = 10_000;

/// The node agents' ServiceAccount and the nodes of the pods its tokens were bound to.
#[derive(Debug)]
pub struct AgentPods {
    account: AgentAccount,
    pods: Api<Pod>,
    known: Mutex<HashMap<String, NodeAgent>>,
}

impl AgentPods {
    /// Agents run as `account`, their pods in its namespace.
    pub fn new(client: Client, account: AgentAccount) -> Self {
        AgentPods {
            pods: Api::namespaced(client, &account.namespace),
            account,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The node agent `user` is, if it is one: `Ok(None)` for anyone else (at once, without a
    /// request), `Err` when it is the agents' account but its node cannot be known.
    pub async fn identify(&self, user: &UserInfo) -> Result<Option<NodeAgent>, Denial> {
        let bound = match agent::requester(&self.account, user)? {
            Requester::Other => return Ok(None),
            Requester::Agent(bound) => bound,
        };
        if let Some(known) = self.known().get(&bound.uid) {
            return Ok(Some(known.clone()));
        }
        let name = format!("{}/{}", self.account.namespace, bound.name);
        let pod = match tokio::time::timeout(POD_LOOKUP, self.pods.get_opt(&bound.name)).await {
            Ok(Ok(Some(pod))) => pod,
            Ok(Ok(None)) => {
                return Err(Denial {
                    code: 403,
                    reason: "Forbidden",
                    message: format!(
                        "the node agent's token is bound to pod {name}, which does not exist"
                    ),
                });
            }
            Ok(Err(error)) => return Err(unavailable(&name, &error.to_string())),
            Err(_) => return Err(unavailable(&name, "no answer in time")),
        };
        let found = agent::pod_node(&self.account, &bound, &pod)?;
        let mut known = self.known();
        if known.len() >= REMEMBERED_PODS {
            known.clear();
        }
        known.insert(bound.uid, found.clone());
        Ok(Some(found))
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeAgent>> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn unavailable(pod: &str, error: &str) -> Denial {
    tracing::warn!(pod, error, "could not read a node agent's pod");
    Denial {
        code: 503,
        reason: "ServiceUnavailable",
        message: format!(
            "could not read the node agent's pod {pod} to learn its node ({error}); try again"
        ),
    }
}
