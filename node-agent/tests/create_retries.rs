//! Link creation whose name keeps being taken, in a real network namespace: the agent tries
//! a bounded number of times and says so, rather than looping on EEXIST.

use std::time::Duration;

use switchyard_node_agent::netlink::{BridgePortRequest, LinkManager, NetlinkError, NetnsTarget};
use switchyard_node_agent::ownership::{LinkGroups, peer_link_name};
use switchyard_tests::netns::Sandbox;

#[tokio::test]
async fn a_bridge_port_whose_peer_name_is_taken_fails_after_bounded_attempts() {
    let sandbox = Sandbox::new("eexist").unwrap();
    sandbox.add_bridge("br0").unwrap();
    let uid = "7f3e2a10-0000-4000-8000-000000000001";
    // Someone else's link holds the name of the port's guest end: every create of the pair
    // fails with EEXIST while the port's own name is free.
    let peer = peer_link_name(uid);
    sandbox
        .ip(&[
            "link",
            "add",
            &peer,
            "type",
            "veth",
            "peer",
            "name",
            "other-end",
        ])
        .unwrap();
    let links = LinkManager::open(&NetnsTarget::Path(sandbox.path()), LinkGroups::DEFAULT)
        .await
        .unwrap();
    let request = BridgePortRequest {
        port_uid: uid,
        bridge: "br0",
        mac: "52:54:00:00:00:01",
    };
    let outcome = tokio::time::timeout(Duration::from_secs(20), links.create_bridge_port(&request))
        .await
        .expect("the create gave up rather than retrying forever");
    match outcome {
        Err(NetlinkError::CreateRetries { attempts, .. }) => assert_eq!(attempts, 3),
        other => panic!("expected CreateRetries, got {other:?}"),
    }
    assert!(
        sandbox.link(&peer).unwrap().is_some(),
        "the other link is left alone"
    );
}
