use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use switchyard_crds::{ANNOTATION_CNI_CONTAINER_ID, NetworkPortSpec};

use super::*;

fn account() -> AgentAccount {
    "switchyard-system/switchyard-agent".parse().unwrap()
}

fn agent_on(node: &str) -> NodeAgent {
    NodeAgent {
        node: node.into(),
        pod: format!("switchyard-system/agent-{node}"),
    }
}

fn message(decision: Decision) -> String {
    match decision {
        Decision::Deny(denial) => {
            assert_eq!((denial.code, denial.reason), (403, "Forbidden"));
            denial.message
        }
        Decision::Allow => panic!("allowed"),
    }
}

fn user(name: &str, extra: &[(&str, &str)]) -> UserInfo {
    UserInfo {
        username: Some(name.into()),
        extra: Some(
            extra
                .iter()
                .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
                .collect(),
        ),
        ..Default::default()
    }
}

#[test]
fn the_agents_account_is_written_namespace_slash_name() {
    assert_eq!(
        account().username(),
        "system:serviceaccount:switchyard-system:switchyard-agent"
    );
    for bad in ["switchyard-agent", "/x", "a/", "a/b/c"] {
        assert!(bad.parse::<AgentAccount>().is_err(), "{bad}");
    }
}

#[test]
fn an_agent_is_known_by_its_username_and_the_pod_its_token_is_bound_to() {
    let agent = "system:serviceaccount:switchyard-system:switchyard-agent";
    let bound = [(POD_NAME_KEY, "agent-a"), (POD_UID_KEY, "u1")];
    assert_eq!(
        requester(&account(), &user(agent, &bound)),
        Ok(Requester::Agent(BoundPod {
            name: "agent-a".into(),
            uid: "u1".into()
        }))
    );
    // Other users, other ServiceAccounts (even in the same namespace), kubelets: not agents.
    for other in [
        "admin",
        "system:serviceaccount:switchyard-system:switchyard-controller",
        "system:node:a",
    ] {
        assert_eq!(
            requester(&account(), &user(other, &bound)),
            Ok(Requester::Other)
        );
    }
    // The agents' account with a token bound to no pod: its node is unknown.
    let denial = requester(&account(), &user(agent, &[])).unwrap_err();
    assert!(denial.message.contains(POD_NAME_KEY), "{}", denial.message);
    assert!(
        denial.message.contains("projected service-account token"),
        "{}",
        denial.message
    );
}

fn pod(uid: &str, account: &str, node: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("agent-a".into()),
            uid: Some(uid.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            service_account_name: Some(account.into()),
            node_name: node.map(str::to_string),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn the_agents_node_is_its_pods_when_the_pod_is_the_bound_one() {
    let bound = BoundPod {
        name: "agent-a".into(),
        uid: "u1".into(),
    };
    assert_eq!(
        pod_node(
            &account(),
            &bound,
            &pod("u1", "switchyard-agent", Some("a"))
        ),
        Ok(NodeAgent {
            node: "a".into(),
            pod: "switchyard-system/agent-a".into()
        })
    );
    let refused = |pod: Pod| pod_node(&account(), &bound, &pod).unwrap_err().message;
    assert!(refused(pod("u2", "switchyard-agent", Some("a"))).contains("no longer exists"));
    assert!(refused(pod("u1", "default", Some("a"))).contains("spec.serviceAccountName"));
    assert!(refused(pod("u1", "switchyard-agent", None)).contains("spec.nodeName is empty"));
}

#[test]
fn an_agent_writes_only_its_own_nodes_network_node() {
    assert_eq!(review_network_node(&agent_on("a"), "a"), Decision::Allow);
    let message = message(review_network_node(&agent_on("a"), "b"));
    assert_eq!(
        message,
        "the node agent of node \"a\" (pod switchyard-system/agent-a) may write only its own node's NetworkNode, not NetworkNode \"b\" (metadata.name must be \"a\")"
    );
}

fn port(node: &str) -> NetworkPort {
    let mut port = NetworkPort::new(
        "p1",
        NetworkPortSpec {
            network: "vepa".into(),
            node: node.into(),
            mac: "52:54:00:00:00:01".into(),
            ..Default::default()
        },
    );
    port.metadata.namespace = Some("vms".into());
    port.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    port
}

#[test]
fn an_agent_changes_its_own_ports_status_and_its_finalizer_only() {
    let a = agent_on("a");
    let old = port("a");
    let mut finalized = old.clone();
    finalized
        .metadata
        .finalizers
        .as_mut()
        .unwrap()
        .push(PORT_FINALIZER.into());
    assert_eq!(
        review_port(&a, None, &finalized, Some(&old)),
        Decision::Allow
    );
    assert_eq!(
        review_port(&a, None, &old, Some(&finalized)),
        Decision::Allow
    );
    assert_eq!(
        review_port(&a, Some("status"), &old, Some(&old)),
        Decision::Allow
    );

    // Another node's port: neither its status nor its finalizer.
    let theirs = port("b");
    for sub_resource in [Some("status"), None] {
        let message = message(review_port(&a, sub_resource, &theirs, Some(&theirs)));
        assert!(
            message.contains(
                "may write only its own node's ports: NetworkPort \"vms/p1\" has spec.node \"b\""
            ),
            "{message}"
        );
    }
    // Nor may it move a port to or from its node.
    let moved = port("b");
    assert!(message(review_port(&a, None, &moved, Some(&old))).contains("spec.node \"b\""));

    // Never a spec, nor other metadata, nor someone else's finalizer.
    let mut respecced = old.clone();
    respecced.spec.mac = "52:54:00:00:00:02".into();
    let message_of = |port: &NetworkPort| message(review_port(&a, None, port, Some(&old)));
    assert_eq!(
        message_of(&respecced),
        format!(
            "the node agent of node \"a\" (pod switchyard-system/agent-a) may not change a port's spec: spec.mac of NetworkPort \"vms/p1\" changed; it may change only the status and its finalizer {PORT_FINALIZER}"
        )
    );
    let mut relabelled = old.clone();
    relabelled.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    assert!(message_of(&relabelled).contains("metadata.labels of NetworkPort \"vms/p1\" changed"));
    let mut unfinalized = old.clone();
    unfinalized.metadata.finalizers = None;
    assert!(message_of(&unfinalized).contains("metadata.finalizers of NetworkPort"));

    // It creates no user's port, even on its node.
    assert!(message(review_port(&a, None, &old, None)).contains(
        "may create only a pod's port for its CNI server: NetworkPort \"vms/p1\" needs label"
    ));
}

fn pod_port(node: &str, owner_uid: &str) -> NetworkPort {
    let mut port = port(node);
    port.metadata.labels = Some([(LABEL_POD_UID.to_string(), "uid-1".to_string())].into());
    port.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: "vm-launcher".into(),
        uid: owner_uid.into(),
        ..Default::default()
    }]);
    port.metadata.annotations =
        Some([(ANNOTATION_CNI_CONTAINER_ID.to_string(), "c1".to_string())].into());
    port
}

#[test]
fn an_agent_creates_pod_ports_for_its_own_node_only() {
    let a = agent_on("a");
    assert_eq!(
        review_port(&a, None, &pod_port("a", "uid-1"), None),
        Decision::Allow
    );
    assert!(
        message(review_port(&a, None, &pod_port("b", "uid-1"), None)).contains(
            "may create only its own node's ports: NetworkPort \"vms/p1\" has spec.node \"b\""
        )
    );
    // The owner must be the Pod the label names.
    assert!(
        message(review_port(&a, None, &pod_port("a", "uid-2"), None))
            .contains("needs label switchyard.dev/cni-pod-uid")
    );

    // A new sandbox of the pod changes the CNI annotations; other annotations stay fixed.
    let old = pod_port("a", "uid-1");
    let mut adopted = old.clone();
    adopted
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(ANNOTATION_CNI_CONTAINER_ID.into(), "c2".into());
    assert_eq!(review_port(&a, None, &adopted, Some(&old)), Decision::Allow);
    adopted
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("example.com/other".into(), "x".into());
    assert!(
        message(review_port(&a, None, &adopted, Some(&old)))
            .contains("metadata.annotations of NetworkPort \"vms/p1\" changed")
    );
    // A user's port gets no such leeway.
    let user_port = port("a");
    let mut annotated = user_port.clone();
    annotated.metadata.annotations =
        Some([(ANNOTATION_CNI_CONTAINER_ID.to_string(), "c1".to_string())].into());
    assert!(
        message(review_port(&a, None, &annotated, Some(&user_port)))
            .contains("metadata.annotations")
    );
}

fn node(name: &str, resources: &[(&str, &str)]) -> Node {
    let quantities: BTreeMap<String, Quantity> = resources
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect();
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("kubernetes.io/hostname".to_string(), name.to_string())].into()),
            ..Default::default()
        },
        status: Some(NodeStatus {
            capacity: Some(quantities.clone()),
            allocatable: Some(quantities),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn an_agent_changes_only_its_own_nodes_switchyard_resources() {
    let a = agent_on("a");
    let old = node("a", &[("cpu", "4"), ("switchyard.dev/old", "8")]);
    // Adding, changing and removing switchyard.dev/<network> resources.
    let new = node("a", &[("cpu", "4"), ("switchyard.dev/vepa", "16")]);
    assert_eq!(review_node_status(&a, &new, &old), Decision::Allow);

    let other = node("b", &[("cpu", "4")]);
    assert_eq!(
        message(review_node_status(&a, &other, &other)),
        "the node agent of node \"a\" (pod switchyard-system/agent-a) may write only its own Node's status, not Node \"b\"'s (metadata.name must be \"a\")"
    );

    let more_cpu = node("a", &[("cpu", "8"), ("switchyard.dev/old", "8")]);
    assert_eq!(
        message(review_node_status(&a, &more_cpu, &old)),
        "the node agent of node \"a\" (pod switchyard-system/agent-a) may change in its Node only the switchyard.dev/<network> extended resources of status.capacity and status.allocatable: status.capacity.cpu, status.allocatable.cpu of Node \"a\" changed"
    );
    let mut not_ready = old.clone();
    not_ready.status.as_mut().unwrap().conditions = None;
    assert!(
        message(review_node_status(&a, &not_ready, &old)).contains("status.conditions of Node")
    );
    // The status subresource of a Node stores label changes too.
    let mut labelled = old.clone();
    labelled
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("net.switchyard.dev/vepa".into(), "true".into());
    assert!(message(review_node_status(&a, &labelled, &old)).contains("metadata.labels of Node"));
}

#[test]
fn an_agent_deletes_only_its_own_nodes_pod_ports() {
    let a = agent_on("a");
    assert_eq!(
        review_port_delete(&a, &pod_port("a", "uid-1")),
        Decision::Allow
    );
    assert!(
        message(review_port_delete(&a, &pod_port("b", "uid-1"))).contains(
            "may delete only its own node's ports: NetworkPort \"vms/p1\" has spec.node \"b\""
        )
    );
    assert!(
        message(review_port_delete(&a, &port("a")))
            .contains("NetworkPort \"vms/p1\" is a user's port")
    );
}
