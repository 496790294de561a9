//! The netlink edge against the real kernel, inside network namespaces these tests create (run
//! as root). veth pairs stand in for NICs. Links are created by the code under test (rtnetlink)
//! and read back with `ip -d -j link show`; foreign links are made with `ip`.

use std::collections::BTreeSet;
use std::fs::File;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use switchyard_crds::{LinkState, MacvtapMode};
use switchyard_node_agent::netlink::{
    BridgePortRequest, KERNEL_MAX_BRIDGE_PORTS, LinkManager, MacvtapRequest, NetlinkError,
    NetnsTarget,
};
use switchyard_node_agent::ownership::{
    GroupRole, LinkGroups, LinkRef, OwnedLinkKind, link_name, peer_link_name,
};
use switchyard_tests::netns::Sandbox;

static NEXT_UID: AtomicU32 = AtomicU32::new(1);

/// A fresh UUID-shaped port UID, unique in this process.
fn port_uid() -> String {
    // The counter leads: the first ten hex digits name the link.
    format!(
        "{:08x}-{:04x}-4000-8000-{:012x}",
        NEXT_UID.fetch_add(1, Ordering::Relaxed),
        std::process::id() & 0xffff,
        0x5eed
    )
}

/// A locally administered MAC from a number.
fn mac(n: u32) -> String {
    let b = n.to_be_bytes();
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

async fn manager(sandbox: &Sandbox) -> LinkManager {
    LinkManager::open(&NetnsTarget::Path(sandbox.path()), LinkGroups::DEFAULT)
        .await
        .expect("open the sandbox's links")
}

/// The tap char device as the namespace's own sysfs shows it (iproute2 remounts /sys).
fn tap_dev_via_ip_netns_exec(sandbox: &Sandbox, name: &str, ifindex: u32) -> String {
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", sandbox.name(), "cat"])
        .arg(format!("/sys/class/net/{name}/macvtap/tap{ifindex}/dev"))
        .output()
        .expect("run ip netns exec");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn macvtap_major() -> u32 {
    std::fs::read_to_string("/proc/devices")
        .unwrap()
        .lines()
        .find_map(|line| {
            let (major, name) = line.trim().split_once(' ')?;
            (name == "macvtap").then(|| major.parse().ok())?
        })
        .expect("macvtap registered in /proc/devices")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_macvtap_mode_produces_the_right_link() {
    let sandbox = Sandbox::new("modes").unwrap();
    let nics = sandbox.add_nics("eth", 4).unwrap();
    let links = manager(&sandbox).await;
    let modes = [
        (MacvtapMode::Bridge, "bridge"),
        (MacvtapMode::Vepa, "vepa"),
        (MacvtapMode::Private, "private"),
        (MacvtapMode::Passthrough, "passthru"),
    ];
    let major = macvtap_major();
    for (i, ((mode, kernel_spelling), nic)) in modes.iter().zip(&nics).enumerate() {
        let uid = port_uid();
        let guest_mac = mac(0x100 + i as u32);
        let created = links
            .create_macvtap(&MacvtapRequest {
                port_uid: &uid,
                lower: &nic.name,
                mode: *mode,
                mac: &guest_mac,
            })
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(!created.already_existed);
        assert_eq!(created.link.name, link_name(&uid));

        let seen = sandbox
            .link(&created.link.name)
            .unwrap()
            .expect("link exists");
        assert_eq!(seen.ifindex, created.link.ifindex);
        assert_eq!(seen.kind.as_deref(), Some("macvtap"), "{mode:?}");
        assert_eq!(seen.mode.as_deref(), Some(*kernel_spelling));
        assert_eq!(seen.lower.as_deref(), Some(nic.name.as_str()));
        assert_eq!(seen.mac.as_deref(), Some(guest_mac.as_str()), "{mode:?}");
        assert_eq!(seen.group, LinkGroups::DEFAULT.owned);
        assert_eq!(seen.alias.as_deref(), Some(uid.as_str()));
        assert!(seen.up, "{mode:?} link is up");
        assert_eq!(seen.master, None);

        let tap = created.tap_device.expect("macvtap has a tap device");
        assert_eq!(
            tap,
            tap_dev_via_ip_netns_exec(&sandbox, &created.link.name, seen.ifindex)
        );
        assert!(tap.starts_with(&format!("{major}:")), "{tap}");
        let lower_mac = sandbox.link(&nic.name).unwrap().unwrap().mac;
        if *mode == MacvtapMode::Passthrough {
            // Passthrough carries the guest MAC onto the device itself.
            assert_eq!(lower_mac.as_deref(), Some(guest_mac.as_str()));
        } else {
            assert_ne!(lower_mac.as_deref(), Some(guest_mac.as_str()));
        }
    }

    let owned = links.owned_links().await.unwrap();
    assert_eq!(owned.len(), 4);
    for (link, ((mode, _), nic)) in owned.iter().zip(modes.iter().zip(&nics)) {
        assert_eq!(link.group, GroupRole::Owned);
        assert_eq!(
            link.kind,
            OwnedLinkKind::Macvtap {
                mode: Some(*mode),
                lower: Some(nic.name.clone())
            }
        );
        assert_eq!(
            link.port_uid.as_deref().map(link_name),
            Some(link.link.name.clone())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_is_exclusive_in_the_kernel_and_returns_the_device_mac() {
    let sandbox = Sandbox::new("pt").unwrap();
    let nic = sandbox.add_nic("eth0").unwrap();
    let own_mac = sandbox.link("eth0").unwrap().unwrap().mac;
    let links = manager(&sandbox).await;
    let uid = port_uid();
    let created = links
        .create_macvtap(&MacvtapRequest {
            port_uid: &uid,
            lower: &nic.name,
            mode: MacvtapMode::Passthrough,
            mac: "52:54:00:00:00:aa",
        })
        .await
        .unwrap();
    let second = links
        .create_macvtap(&MacvtapRequest {
            port_uid: &port_uid(),
            lower: &nic.name,
            mode: MacvtapMode::Vepa,
            mac: "52:54:00:00:00:ab",
        })
        .await;
    assert!(
        matches!(second, Err(NetlinkError::DeviceBusy { ref device, .. }) if device == "eth0"),
        "{second:?}"
    );
    assert!(links.delete_link(&created.link).await.unwrap());
    assert_eq!(sandbox.link("eth0").unwrap().unwrap().mac, own_mac);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_port_is_a_veth_on_the_bridge() {
    let sandbox = Sandbox::new("br").unwrap();
    sandbox.add_bridge("br0").unwrap();
    let links = manager(&sandbox).await;
    let uid = port_uid();
    let guest_mac = "52:54:00:12:34:56";
    let created = links
        .create_bridge_port(&BridgePortRequest {
            port_uid: &uid,
            bridge: "br0",
            mac: guest_mac,
        })
        .await
        .unwrap();
    assert_eq!(created.tap_device, None);
    let peer = created.peer.clone().expect("bridge port has a guest end");
    assert_eq!(peer.name, peer_link_name(&uid));

    let seen = sandbox.link(&created.link.name).unwrap().unwrap();
    assert_eq!(seen.kind.as_deref(), Some("veth"));
    assert_eq!(seen.master.as_deref(), Some("br0"));
    assert_eq!(seen.lower.as_deref(), Some(peer.name.as_str()));
    assert_eq!(seen.mac.as_deref(), Some("fe:54:00:12:34:56"));
    assert_eq!(seen.group, LinkGroups::DEFAULT.owned);
    assert_eq!(seen.alias.as_deref(), Some(uid.as_str()));
    assert!(seen.up);
    let guest = sandbox.link(&peer.name).unwrap().unwrap();
    assert_eq!(guest.ifindex, peer.ifindex);
    assert_eq!(guest.mac.as_deref(), Some(guest_mac));
    assert_eq!(guest.master, None);
    assert!(guest.up);

    sandbox
        .ip(&[
            "link", "add", "other0", "type", "veth", "peer", "name", "other0p",
        ])
        .unwrap();
    sandbox
        .ip(&["link", "set", "other0", "master", "br0"])
        .unwrap();
    let ports = links.bridge_ports("br0").await.unwrap();
    assert_eq!((ports.total, ports.owned), (2, 1));

    let owned = links.owned_links().await.unwrap();
    assert_eq!(
        owned.len(),
        1,
        "the guest end is not in the group: {owned:?}"
    );
    assert_eq!(
        owned[0].kind,
        OwnedLinkKind::BridgePort {
            bridge: Some("br0".into()),
            peer: Some(peer.name.clone())
        }
    );
    assert_eq!(owned[0].device(), Some("br0"));

    // Deleting the bridge end takes the guest end with it, and leaves the other port alone.
    assert!(links.delete_link(&created.link).await.unwrap());
    assert!(sandbox.link(&peer.name).unwrap().is_none());
    assert!(sandbox.link("other0").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_devices_and_bridges_are_typed_errors() {
    let sandbox = Sandbox::new("miss").unwrap();
    let links = manager(&sandbox).await;
    let uid = port_uid();
    let err = links
        .create_macvtap(&MacvtapRequest {
            port_uid: &uid,
            lower: "eth9",
            mode: MacvtapMode::Vepa,
            mac: &mac(1),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetlinkError::DeviceNotFound(ref d) if d == "eth9"),
        "{err}"
    );
    assert_eq!(err.reason(), "DeviceMissing");
    let err = links
        .create_bridge_port(&BridgePortRequest {
            port_uid: &uid,
            bridge: "br9",
            mac: &mac(1),
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "BridgeAbsent");
    let err = links
        .create_bridge_port(&BridgePortRequest {
            port_uid: &uid,
            bridge: "br9",
            mac: "not-a-mac",
        })
        .await
        .unwrap_err();
    assert!(matches!(err, NetlinkError::InvalidMac(_)));
    let states = links.device_states(&["lo", "eth9"]).await.unwrap();
    assert!(states[0].present());
    assert_eq!(states[1].state, LinkState::Absent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_idempotent_per_port_and_never_takes_a_foreign_name() {
    let sandbox = Sandbox::new("idem").unwrap();
    sandbox.add_nics("eth", 2).unwrap();
    let links = manager(&sandbox).await;
    let uid = port_uid();
    let request = MacvtapRequest {
        port_uid: &uid,
        lower: "eth0",
        mode: MacvtapMode::Bridge,
        mac: &mac(7),
    };
    let first = links.create_macvtap(&request).await.unwrap();
    let again = links.create_macvtap(&request).await.unwrap();
    assert!(again.already_existed);
    assert_eq!(again.link, first.link);
    assert_eq!(again.tap_device, first.tap_device);

    // Same port, another device: the stale link is replaced.
    let moved = links
        .create_macvtap(&MacvtapRequest {
            lower: "eth1",
            mode: MacvtapMode::Vepa,
            ..request
        })
        .await
        .unwrap();
    assert!(!moved.already_existed);
    let seen = sandbox.link(&moved.link.name).unwrap().unwrap();
    assert_eq!(
        (seen.lower.as_deref(), seen.mode.as_deref()),
        (Some("eth1"), Some("vepa"))
    );
    assert_eq!(links.owned_links().await.unwrap().len(), 1);

    // A foreign link holding the name this port would get is never taken over.
    let other = port_uid();
    let taken = link_name(&other);
    sandbox
        .ip(&[
            "link", "add", &taken, "link", "eth0", "type", "macvtap", "mode", "bridge",
        ])
        .unwrap();
    let err = links
        .create_macvtap(&MacvtapRequest {
            port_uid: &other,
            ..request
        })
        .await
        .unwrap_err();
    assert!(matches!(err, NetlinkError::NameTaken { .. }), "{err}");
    assert!(sandbox.link(&taken).unwrap().is_some());
}

/// What the kernel announced about one link on the namespace's link multicast group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkEvent {
    /// `RTM_NEWLINK` without `IFF_UP`: the link was closed (the kernel closes every device of
    /// a deletion before it unregisters any of them).
    Down(u32),
    /// `RTM_DELLINK`: the link is gone.
    Deleted(u32),
}

/// A netlink socket in a sandbox, subscribed to its link notifications: the kernel's own
/// account of what was deleted and in how many deletions, whatever the code under test says.
struct LinkMonitor {
    socket: Socket,
}

impl std::fmt::Debug for LinkMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkMonitor")
    }
}

impl LinkMonitor {
    /// Subscribes in `sandbox`. A socket belongs to the namespace it was made in, so it is
    /// made on a short-lived thread that entered the namespace.
    fn open(sandbox: &Sandbox) -> Self {
        let netns = File::open(sandbox.path()).expect("opening the sandbox's namespace");
        let socket = std::thread::spawn(move || {
            setns(&netns, CloneFlags::CLONE_NEWNET).expect("entering the sandbox");
            let mut socket = Socket::new(NETLINK_ROUTE).expect("a route netlink socket");
            socket
                .bind(&SocketAddr::new(0, libc::RTMGRP_LINK as u32))
                .expect("joining the link multicast group");
            socket
                .set_rx_buf_sz(4 << 20)
                .expect("a receive buffer for every notification");
            socket
                .set_non_blocking(true)
                .expect("a non-blocking socket");
            socket
        })
        .join()
        .expect("the monitor's thread");
        Self { socket }
    }

    /// Everything announced since the last call. The kernel queues a request's notifications
    /// before it acknowledges the request, so once a call returned its events are all here.
    fn drain(&self) -> Vec<LinkEvent> {
        const NLMSG_HEADER: usize = 16;
        let mut events = Vec::new();
        loop {
            let mut datagram = Vec::with_capacity(1 << 16);
            match self.socket.recv(&mut datagram, 0) {
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return events,
                Err(error) => {
                    panic!("reading link notifications (ENOBUFS: some were lost): {error}")
                }
            }
            let mut at = 0;
            while at + NLMSG_HEADER + 16 <= datagram.len() {
                let u32_at = |i: usize| u32::from_ne_bytes(datagram[i..i + 4].try_into().unwrap());
                let length = u32_at(at) as usize;
                let kind = u16::from_ne_bytes(datagram[at + 4..at + 6].try_into().unwrap());
                // struct ifinfomsg: family, pad, type (u16), index, flags, change.
                let ifindex = u32_at(at + NLMSG_HEADER + 4);
                let flags = u32_at(at + NLMSG_HEADER + 8);
                match kind {
                    libc::RTM_DELLINK => events.push(LinkEvent::Deleted(ifindex)),
                    libc::RTM_NEWLINK if flags & libc::IFF_UP as u32 == 0 => {
                        events.push(LinkEvent::Down(ifindex))
                    }
                    _ => {}
                }
                assert!(length >= NLMSG_HEADER, "a malformed notification");
                at += length.next_multiple_of(4);
            }
        }
    }
}

/// How many deletions the kernel made of `links`, counted from its notifications: one deletion
/// (one `RTM_DELLINK` request, for one link or a whole group) closes all of its links, then
/// unregisters them, so each run of `Deleted` after a `Down` is one request.
fn deletions_of(events: &[LinkEvent], links: &[LinkRef]) -> usize {
    let ours: BTreeSet<u32> = links.iter().map(|l| l.ifindex).collect();
    let mut deletions = 0;
    let mut in_run = false;
    for event in events {
        match *event {
            LinkEvent::Deleted(ifindex) if ours.contains(&ifindex) => {
                if !in_run {
                    deletions += 1;
                }
                in_run = true;
            }
            LinkEvent::Down(ifindex) if ours.contains(&ifindex) => in_run = false,
            _ => {}
        }
    }
    deletions
}

fn deleted(events: &[LinkEvent]) -> BTreeSet<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            LinkEvent::Deleted(ifindex) => Some(*ifindex),
            LinkEvent::Down(_) => None,
        })
        .collect()
}

/// A batch goes in one group deletion: the kernel sees one `RTM_DELLINK` for the 40 links, and
/// deletes exactly them (not the owned links left, not a foreign macvtap on the same uplink).
/// The same oracle counts one deletion per link for links deleted one by one, so it can tell the
/// two apart. How much the group deletion saves is measured by the benchmark (bench/, "delete
/// as a group" beside the floor), not asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_delete_removes_exactly_the_batch_in_one_request() {
    const CREATED: u32 = 60;
    const BATCH: usize = 40;
    const SINGLES: usize = 5;
    let sandbox = Sandbox::new("grp").unwrap();
    sandbox.add_nic("eth0").unwrap();
    // A macvtap someone else made on the same uplink.
    sandbox
        .ip(&[
            "link", "add", "foreign0", "link", "eth0", "type", "macvtap", "mode", "bridge",
        ])
        .unwrap();
    sandbox.ip(&["link", "set", "foreign0", "up"]).unwrap();
    let links = manager(&sandbox).await;
    let mut created = Vec::new();
    for n in 0..CREATED {
        let uid = port_uid();
        let link = links
            .create_macvtap(&MacvtapRequest {
                port_uid: &uid,
                lower: "eth0",
                mode: MacvtapMode::Bridge,
                mac: &mac(0x1000 + n),
            })
            .await
            .unwrap();
        created.push(link.link);
    }
    // The agent brings its links up; a deletion's "down" notifications depend on it.
    let views = sandbox.links().unwrap();
    for link in &created {
        let view = views.iter().find(|v| v.name == link.name).unwrap();
        assert!(view.up, "{link} is up");
    }

    let (batch, rest) = created.split_at(BATCH);
    let monitor = LinkMonitor::open(&sandbox);
    let outcome = links.delete_links(batch).await.unwrap();
    let events = monitor.drain();
    assert!(outcome.grouped);
    assert_eq!(
        outcome.deleted.iter().collect::<BTreeSet<_>>(),
        batch.iter().collect()
    );
    assert!(outcome.already_gone.is_empty() && outcome.refused.is_empty());
    assert_eq!(
        deleted(&events),
        batch.iter().map(|l| l.ifindex).collect(),
        "the kernel deleted exactly the batch: {events:?}"
    );
    assert_eq!(
        deletions_of(&events, batch),
        1,
        "one RTM_DELLINK for the whole batch: {events:?}"
    );

    let names: BTreeSet<String> = sandbox
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    for link in batch {
        assert!(!names.contains(&link.name), "{link} deleted");
    }
    for link in rest {
        assert!(names.contains(&link.name), "{link} kept");
    }
    assert!(names.contains("foreign0") && names.contains("eth0"));

    let singles = &rest[..SINGLES];
    for link in singles {
        assert!(links.delete_link(link).await.unwrap());
    }
    let events = monitor.drain();
    assert_eq!(
        deleted(&events),
        singles.iter().map(|l| l.ifindex).collect()
    );
    assert_eq!(
        deletions_of(&events, singles),
        SINGLES,
        "one deletion per link deleted one by one: {events:?}"
    );
    // Deleting what is already gone is not an error, and asks the kernel for nothing.
    let again = links.delete_links(batch).await.unwrap();
    assert_eq!(again.already_gone.len(), BATCH);
    assert!(!links.delete_link(&batch[0]).await.unwrap());
    assert_eq!(monitor.drain(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_links_are_never_deleted() {
    let sandbox = Sandbox::new("foreign").unwrap();
    sandbox.add_nic("eth0").unwrap();
    let groups = LinkGroups::DEFAULT;
    let owned_group = groups.owned.to_string();
    let doomed_group = groups.doomed.to_string();
    // Same uplink, not in the group, with and without the prefix.
    sandbox
        .ip(&[
            "link", "add", "guest7", "link", "eth0", "type", "macvtap", "mode", "vepa",
        ])
        .unwrap();
    sandbox
        .ip(&[
            "link",
            "add",
            "swyforeign01",
            "link",
            "eth0",
            "type",
            "macvtap",
            "mode",
            "vepa",
        ])
        .unwrap();
    // In the owned group by accident, but without the prefix.
    sandbox
        .ip(&[
            "link",
            "add",
            "mvgroupmate",
            "group",
            &owned_group,
            "link",
            "eth0",
            "type",
            "macvtap",
        ])
        .unwrap();
    let links = manager(&sandbox).await;
    let ours: Vec<LinkRef> = {
        let mut ours = Vec::new();
        for n in 0..3 {
            let uid = port_uid();
            let created = links
                .create_macvtap(&MacvtapRequest {
                    port_uid: &uid,
                    lower: "eth0",
                    mode: MacvtapMode::Vepa,
                    mac: &mac(0x2000 + n),
                })
                .await
                .unwrap();
            ours.push(created.link);
        }
        ours
    };
    let owned = links.owned_links().await.unwrap();
    assert_eq!(
        owned.iter().map(|l| &l.link).collect::<BTreeSet<_>>(),
        ours.iter().collect(),
        "only the agent's links are listed as owned"
    );

    let foreign: Vec<LinkRef> = ["guest7", "swyforeign01", "mvgroupmate", "eth0"]
        .iter()
        .map(|name| {
            let view = sandbox.link(name).unwrap().unwrap();
            LinkRef {
                ifindex: view.ifindex,
                name: view.name,
            }
        })
        .collect();
    for link in &foreign {
        let err = links.delete_link(link).await.unwrap_err();
        assert!(matches!(err, NetlinkError::NotOwned(_)), "{link}: {err}");
        assert!(matches!(
            links.restore_group(link).await,
            Err(NetlinkError::NotOwned(_))
        ));
    }
    // A batch mixing ours and foreign ones deletes only ours.
    let mut mixed = foreign.clone();
    mixed.extend(ours[..2].iter().cloned());
    let outcome = links.delete_links(&mixed).await.unwrap();
    assert_eq!(
        outcome.refused.iter().collect::<BTreeSet<_>>(),
        foreign.iter().collect()
    );
    assert_eq!(outcome.deleted.len(), 2);

    // A foreign link sitting in the doomed group: the batch falls back to one by one.
    sandbox
        .ip(&["link", "set", "guest7", "group", &doomed_group])
        .unwrap();
    let mut last_two = vec![ours[2].clone()];
    let uid = port_uid();
    last_two.push(
        links
            .create_macvtap(&MacvtapRequest {
                port_uid: &uid,
                lower: "eth0",
                mode: MacvtapMode::Vepa,
                mac: &mac(0x2100),
            })
            .await
            .unwrap()
            .link,
    );
    let outcome = links.delete_links(&last_two).await.unwrap();
    assert!(!outcome.grouped);
    assert_eq!(outcome.deleted.len(), 2);

    for link in &foreign {
        assert!(
            sandbox.link(&link.name).unwrap().is_some(),
            "{link} survives"
        );
    }
    assert!(links.owned_links().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_left_in_the_doomed_group_are_recoverable() {
    let sandbox = Sandbox::new("doom").unwrap();
    sandbox.add_nic("eth0").unwrap();
    let links = manager(&sandbox).await;
    let mut made = Vec::new();
    for n in 0..3 {
        let uid = port_uid();
        made.push(
            links
                .create_macvtap(&MacvtapRequest {
                    port_uid: &uid,
                    lower: "eth0",
                    mode: MacvtapMode::Bridge,
                    mac: &mac(0x3000 + n),
                })
                .await
                .unwrap()
                .link,
        );
    }
    // A crash between re-tag and group deletion: two links sit in the doomed group.
    let doomed = LinkGroups::DEFAULT.doomed.to_string();
    for link in &made[..2] {
        sandbox
            .ip(&["link", "set", &link.name, "group", &doomed])
            .unwrap();
    }
    let owned = links.owned_links().await.unwrap();
    let roles: Vec<_> = made
        .iter()
        .map(|m| owned.iter().find(|o| &o.link == m).unwrap().group)
        .collect();
    assert_eq!(
        roles,
        [GroupRole::Doomed, GroupRole::Doomed, GroupRole::Owned]
    );

    // Its port turned out live: back to the owned group.
    links.restore_group(&made[0]).await.unwrap();
    assert_eq!(
        sandbox.link(&made[0].name).unwrap().unwrap().group,
        LinkGroups::DEFAULT.owned
    );
    // The next batch deletion also finishes the interrupted one.
    let outcome = links.delete_links(&made[2..]).await.unwrap();
    assert!(outcome.grouped);
    assert_eq!(
        outcome.deleted.iter().collect::<BTreeSet<_>>(),
        [&made[1], &made[2]].into_iter().collect()
    );
    let remaining: Vec<_> = links
        .owned_links()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.link)
        .collect();
    assert_eq!(remaining, [made[0].clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tap_devices_are_told_apart_across_namespaces() {
    // Same ifindex in two namespaces: /dev/tapN names only one of them; major:minor is right.
    let first = Sandbox::new("tapa").unwrap();
    let second = Sandbox::new("tapb").unwrap();
    let mut taps = Vec::new();
    for sandbox in [&first, &second] {
        sandbox.add_nic("eth0").unwrap();
        let links = manager(sandbox).await;
        let uid = port_uid();
        let created = links
            .create_macvtap(&MacvtapRequest {
                port_uid: &uid,
                lower: "eth0",
                mode: MacvtapMode::Bridge,
                mac: &mac(0x4000),
            })
            .await
            .unwrap();
        let tap = created.tap_device.clone().unwrap();
        assert_eq!(
            tap,
            tap_dev_via_ip_netns_exec(sandbox, &created.link.name, created.link.ifindex)
        );
        taps.push((created.link.ifindex, tap));
    }
    assert_eq!(taps[0].0, taps[1].0, "fresh namespaces number links alike");
    assert_ne!(taps[0].1, taps[1].1, "but their tap devices differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_bridge_limit_is_a_typed_error() {
    let sandbox = Sandbox::new("brlim").unwrap();
    sandbox.add_bridge("br0").unwrap();
    let links = manager(&sandbox).await.with_bridge_port_limit(3);
    for n in 0..3 {
        links
            .create_bridge_port(&BridgePortRequest {
                port_uid: &port_uid(),
                bridge: "br0",
                mac: &mac(0x5000 + n),
            })
            .await
            .unwrap();
    }
    let err = links
        .create_bridge_port(&BridgePortRequest {
            port_uid: &port_uid(),
            bridge: "br0",
            mac: &mac(0x5100),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetlinkError::BridgeFull {
                ports: 3,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.reason(), "BridgeFull");
}

/// The real kernel limit: 1023 ports, and the 1024th attach fails with EXFULL. This is the one
/// test that makes ~2,000 links (1023 veth pairs), all in its own namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_bridge_gives_bridge_full_not_a_crash() {
    let sandbox = Sandbox::new("exfull").unwrap();
    sandbox.add_bridge("br0").unwrap();
    // Fill with iproute2 in one batch process; the agent's own attach is the one that fails.
    let fill: Vec<String> = (0..KERNEL_MAX_BRIDGE_PORTS)
        .flat_map(|n| {
            [
                format!("link add f{n} type veth peer name f{n}p"),
                format!("link set f{n} master br0"),
            ]
        })
        .collect();
    let start = std::time::Instant::now();
    sandbox.ip_batch(&fill).unwrap();
    eprintln!(
        "filled a bridge with {KERNEL_MAX_BRIDGE_PORTS} ports in {:?}",
        start.elapsed()
    );
    let links = manager(&sandbox).await;
    assert_eq!(
        links.bridge_ports("br0").await.unwrap().total,
        KERNEL_MAX_BRIDGE_PORTS
    );
    let uid = port_uid();
    let err = links
        .create_bridge_port(&BridgePortRequest {
            port_uid: &uid,
            bridge: "br0",
            mac: &mac(0x6000),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetlinkError::BridgeFull { ports: 1023, limit: 1023, ref bridge } if bridge == "br0"),
        "{err}"
    );
    // The kernel undid the half-made port: nothing named for it is left.
    assert!(sandbox.link(&link_name(&uid)).unwrap().is_none());
    assert!(sandbox.link(&peer_link_name(&uid)).unwrap().is_none());
    // One port freed: the agent attaches.
    sandbox.ip(&["link", "del", "f0"]).unwrap();
    links
        .create_bridge_port(&BridgePortRequest {
            port_uid: &uid,
            bridge: "br0",
            mac: &mac(0x6000),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_namespace_target_works_from_inside_it() {
    // `NetnsTarget::Current` from a thread that entered the sandbox: the agent run as
    // `ip netns exec <ns> agent` or in a hostNetwork pod.
    let sandbox = Sandbox::new("cur").unwrap();
    sandbox.add_nic("eth0").unwrap();
    let path = sandbox.path();
    let uid = port_uid();
    let uid_in_thread = uid.clone();
    let (tap, ifindex) = std::thread::spawn(move || {
        let file = std::fs::File::open(path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let links = LinkManager::open(&NetnsTarget::Current, LinkGroups::DEFAULT)
                .await
                .unwrap();
            let created = links
                .create_macvtap(&MacvtapRequest {
                    port_uid: &uid_in_thread,
                    lower: "eth0",
                    mode: MacvtapMode::Vepa,
                    mac: &mac(0x7000),
                })
                .await
                .unwrap();
            (created.tap_device.unwrap(), created.link.ifindex)
        })
    })
    .join()
    .unwrap();
    assert_eq!(
        tap,
        tap_dev_via_ip_netns_exec(&sandbox, &link_name(&uid), ifindex)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_on_one_manager_all_land() {
    const PORTS: u32 = 48;
    let sandbox = Sandbox::new("conc").unwrap();
    sandbox.add_nics("eth", 3).unwrap();
    let links = manager(&sandbox).await;
    let uids: Vec<String> = (0..PORTS).map(|_| port_uid()).collect();
    let macs: Vec<String> = (0..PORTS).map(|n| mac(0x8000 + n)).collect();
    let lowers = ["eth0", "eth1", "eth2"];
    let requests: Vec<MacvtapRequest<'_>> = uids
        .iter()
        .zip(&macs)
        .enumerate()
        .map(|(n, (uid, guest_mac))| MacvtapRequest {
            port_uid: uid,
            lower: lowers[n % 3],
            mode: MacvtapMode::Vepa,
            mac: guest_mac,
        })
        .collect();
    let created =
        futures::future::join_all(requests.iter().map(|request| links.create_macvtap(request)))
            .await;
    let created: Vec<_> = created.into_iter().map(Result::unwrap).collect();
    let taps: BTreeSet<_> = created
        .iter()
        .map(|c| c.tap_device.clone().unwrap())
        .collect();
    assert_eq!(
        taps.len(),
        PORTS as usize,
        "every macvtap has its own tap device"
    );
    for (n, link) in created.iter().enumerate() {
        let seen = sandbox.link(&link.link.name).unwrap().unwrap();
        assert_eq!(seen.lower.as_deref(), Some(lowers[n % 3]));
        assert_eq!(seen.mac.as_deref(), Some(macs[n].as_str()));
        assert_eq!(seen.alias.as_deref(), Some(uids[n].as_str()));
    }
    let refs: Vec<LinkRef> = created.into_iter().map(|c| c.link).collect();
    let outcome = links.delete_links(&refs).await.unwrap();
    assert_eq!(outcome.deleted.len(), PORTS as usize);
    assert!(links.owned_links().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_deletion_of_bridge_ports_takes_their_guest_ends() {
    let sandbox = Sandbox::new("brdel").unwrap();
    sandbox.add_bridge("br0").unwrap();
    let links = manager(&sandbox).await;
    let mut made = Vec::new();
    for n in 0..6 {
        made.push(
            links
                .create_bridge_port(&BridgePortRequest {
                    port_uid: &port_uid(),
                    bridge: "br0",
                    mac: &mac(0x9000 + n),
                })
                .await
                .unwrap(),
        );
    }
    let (batch, kept) = made.split_at(4);
    let refs: Vec<LinkRef> = batch.iter().map(|m| m.link.clone()).collect();
    let outcome = links.delete_links(&refs).await.unwrap();
    assert!(outcome.grouped);
    assert_eq!(outcome.deleted.len(), 4);
    for port in batch {
        assert!(sandbox.link(&port.link.name).unwrap().is_none());
        assert!(
            sandbox
                .link(&port.peer.as_ref().unwrap().name)
                .unwrap()
                .is_none()
        );
    }
    for port in kept {
        assert!(
            sandbox
                .link(&port.peer.as_ref().unwrap().name)
                .unwrap()
                .is_some()
        );
    }
    let ports = links.bridge_ports("br0").await.unwrap();
    assert_eq!((ports.total, ports.owned), (2, 2));
}

/// Recovery after a crash, planned from what the kernel shows: the pure plan and the kernel
/// edge together. The agent layer applies the same steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_plan_from_the_kernel_keeps_live_ports_and_removes_orphans() {
    use switchyard_crds::{ActualType, PortActual, PortPhase};
    use switchyard_node_agent::plan::{PortAction, PortRecord, plan_recovery};
    use switchyard_placement::PortKey;

    let sandbox = Sandbox::new("recov").unwrap();
    sandbox.add_nics("eth", 2).unwrap();
    sandbox
        .ip(&[
            "link", "add", "guest9", "link", "eth0", "type", "macvtap", "mode", "vepa",
        ])
        .unwrap();
    let (live, orphan, unrecorded) = (port_uid(), port_uid(), port_uid());
    let mut actual_of_live = None;
    {
        // The agent before the crash.
        let links = manager(&sandbox).await;
        for (uid, n) in [(&live, 1), (&orphan, 2), (&unrecorded, 3)] {
            let created = links
                .create_macvtap(&MacvtapRequest {
                    port_uid: uid,
                    lower: "eth0",
                    mode: MacvtapMode::Vepa,
                    mac: &mac(0xa000 + n),
                })
                .await
                .unwrap();
            if uid == &live {
                actual_of_live = Some(PortActual {
                    kind: ActualType::Direct,
                    device: Some("eth0".into()),
                    mode: Some(MacvtapMode::Vepa),
                    link_name: created.link.name.clone(),
                    ifindex: Some(created.link.ifindex),
                    tap_device: created.tap_device.clone(),
                    ..PortActual::default()
                });
            }
        }
    }
    // After the restart: `orphan`'s port was deleted while the agent was down, `unrecorded`
    // crashed before its status was written, and `vanished` lost its link (eth1 still there).
    let vanished = port_uid();
    let record = |uid: &str, name: &str, actual: Option<PortActual>| PortRecord {
        uid: uid.to_string(),
        key: PortKey::new("test", name),
        created: 1,
        network: "net".into(),
        deleting: false,
        phase: Some(if actual.is_some() {
            PortPhase::Ready
        } else {
            PortPhase::Pending
        }),
        actual,
        exclusive: false,
    };
    let vanished_actual = PortActual {
        kind: ActualType::Direct,
        device: Some("eth1".into()),
        mode: Some(MacvtapMode::Vepa),
        link_name: link_name(&vanished),
        ..PortActual::default()
    };
    let ports = [
        record(&live, "live", actual_of_live),
        record(&unrecorded, "unrecorded", None),
        record(&vanished, "vanished", Some(vanished_actual)),
    ];
    let links = manager(&sandbox).await;
    let owned = links.owned_links().await.unwrap();
    let present = links.link_names().await.unwrap();
    let plan = plan_recovery(&ports, &owned, &present);

    let actions: Vec<&PortAction> = plan.ports.iter().map(|d| &d.action).collect();
    assert!(
        matches!(actions[0], PortAction::Count { write_status: false, device: Some(d), .. } if d == "eth0")
    );
    assert!(matches!(
        actions[1],
        PortAction::Count {
            write_status: true,
            ..
        }
    ));
    assert_eq!(
        actions[2],
        &PortAction::Recreate {
            device: "eth1".into()
        }
    );
    let orphans: Vec<LinkRef> = plan.deletions().cloned().collect();
    assert_eq!(
        orphans.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
        [link_name(&orphan)]
    );
    assert_eq!(plan.ledger.connections("eth0"), 2);
    assert_eq!(plan.ledger.connections("eth1"), 1);

    links.delete_links(&orphans).await.unwrap();
    links
        .create_macvtap(&MacvtapRequest {
            port_uid: &vanished,
            lower: "eth1",
            mode: MacvtapMode::Vepa,
            mac: &mac(0xa004),
        })
        .await
        .unwrap();
    // Counts now equal what the kernel shows, and the foreign macvtap is untouched.
    let after = links.owned_links().await.unwrap();
    let on = |device: &str| after.iter().filter(|l| l.device() == Some(device)).count() as u32;
    assert_eq!(
        (on("eth0"), on("eth1")),
        (
            plan.ledger.connections("eth0"),
            plan.ledger.connections("eth1")
        )
    );
    assert!(sandbox.link("guest9").unwrap().is_some());
}
