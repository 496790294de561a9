//! The names, MAC addresses and ifindexes the CNI server derives. Pure.

use switchyard_cni::{Call, CniError};
use switchyard_libvirt::values::{format_mac, is_multicast_mac, parse_mac};

/// FNV-1a, 64 bits: stable across versions and platforms, which `std`'s hasher is not.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // A separator no part contains, so ("ab","c") and ("a","bc") differ.
            hash ^= 0xff;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The NetworkPort of a pod's interface: `<pod>-<hash of pod UID and ifname>`, at most 253
/// characters, a valid object name whenever the pod's name is.
pub fn port_name(pod: &str, pod_uid: &str, ifname: &str) -> String {
    let suffix = format!("{:010x}", fnv1a(&[pod_uid, ifname]) & 0xff_ffff_ffff);
    let room = 253 - suffix.len() - 1;
    let mut stem: String = pod.chars().take(room).collect();
    // A cut name may end in a separator, which may not precede '-' in a DNS subdomain.
    while stem.ends_with(['-', '.']) {
        stem.pop();
    }
    format!("{stem}-{suffix}")
}

/// The MAC the runtime asked for (`runtimeConfig.mac`, then `CNI_ARGS` `MAC=`), checked with
/// libvirt's MAC rules ([`parse_mac`]: one or two hex digits per byte) and in libvirt's
/// spelling; `None` when it asked for none. An interface needs a unicast address.
pub fn requested_mac(call: &Call) -> Result<Option<String>, CniError> {
    let Some(requested) = call.requested_mac() else {
        return Ok(None);
    };
    let bytes = parse_mac(requested.value).ok_or_else(|| {
        requested.invalid("is not a MAC address (six hex bytes separated by ':')")
    })?;
    if is_multicast_mac(bytes) {
        return Err(requested.invalid("is a multicast address; an interface needs a unicast one"));
    }
    Ok(Some(format_mac(&bytes)))
}

/// The MAC of a pod's interface when the runtime asks for none: derived from the owner's UID
/// (the VMI's, so a migration's source and target pods get the same one) and the interface
/// name; locally administered and unicast.
pub fn derived_mac(owner_uid: &str, ifname: &str) -> String {
    let bytes = fnv1a(&[owner_uid, ifname]).to_be_bytes();
    // 0x02: locally administered (bit 1 set), unicast (bit 0 clear).
    let first = (bytes[0] & 0xfc) | 0x02;
    let mac = [first, bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]];
    format_mac(&mac)
}

/// The bridge end of a bridge network's veth pair on the node: `swc` and 12 hex digits of the
/// attachment, within IFNAMSIZ.
pub fn host_link_name(container_id: &str, ifname: &str) -> String {
    format!(
        "swc{:012x}",
        fnv1a(&[container_id, ifname]) & 0xffff_ffff_ffff
    )
}

/// The first ifindex of the range pod macvtaps take theirs from. The kernel numbers links
/// from 1 up per namespace, so nothing it picks itself comes near this.
pub const IFINDEX_BASE: u32 = 0x4000_0000;
/// How many ifindexes the range holds.
pub const IFINDEX_SPAN: u32 = 0x1000_0000;

/// The `attempt`-th candidate ifindex for an attachment: spread over the reserved range, so
/// `/dev/tap<ifindex>` is unique on the node (the caller skips candidates whose device node
/// exists or that another record holds).
pub fn ifindex_candidate(container_id: &str, ifname: &str, attempt: u32) -> u32 {
    let hash = fnv1a(&[container_id, ifname, &attempt.to_string()]);
    IFINDEX_BASE + (hash % u64::from(IFINDEX_SPAN)) as u32
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn add_call(args: &str, conf: &str) -> Call {
        let env: BTreeMap<String, String> = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/run/netns/p"),
            ("CNI_IFNAME", "net1"),
            ("CNI_ARGS", args),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Call::parse(&env, conf).unwrap()
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"lan"}"#;

    #[test]
    fn a_requested_mac_is_checked_with_libvirts_rules_and_spelled_as_libvirt_does() {
        let call = add_call("MAC=52:54:00:AB:c:1", CONF);
        assert_eq!(
            requested_mac(&call).unwrap().as_deref(),
            Some("52:54:00:ab:0c:01")
        );
        let conf =
            r#"{"cniVersion":"1.0.0","name":"lan","runtimeConfig":{"mac":"02:AA:00:00:00:02"}}"#;
        let call = add_call("MAC=52:54:00:00:00:01", conf);
        assert_eq!(
            requested_mac(&call).unwrap().as_deref(),
            Some("02:aa:00:00:00:02"),
            "runtimeConfig wins"
        );
        assert_eq!(
            requested_mac(&add_call("K8S_POD_NAME=x", CONF)).unwrap(),
            None
        );
    }

    #[test]
    fn a_bad_requested_mac_is_refused_naming_its_field_and_why() {
        let conf =
            r#"{"cniVersion":"1.0.0","name":"lan","runtimeConfig":{"mac":"01:00:5e:00:00:01"}}"#;
        let error = requested_mac(&add_call("", conf)).unwrap_err();
        assert_eq!(error.code, 7);
        assert!(
            error
                .details
                .starts_with("field 'runtimeConfig.mac': '01:00:5e:00:00:01'")
                && error.details.contains("multicast"),
            "{}",
            error.details
        );
        for bad in [
            "52:54:00",
            "52:54:00:00:00:01:02",
            "52:54:00:00:00:1g",
            "525:4:0:0:0:1",
        ] {
            let error = requested_mac(&add_call(&format!("MAC={bad}"), CONF)).unwrap_err();
            assert_eq!(error.code, 4, "{bad}");
            assert_eq!(
                error.details,
                format!(
                    "CNI_ARGS MAC: '{bad}' is not a MAC address (six hex bytes separated by ':')"
                )
            );
        }
    }

    #[test]
    fn derived_macs_are_stable_unicast_and_local() {
        let uid = "6f1c2a4e-0d3b-4c1e-9a57-1f2e3d4c5b6a";
        let mac = derived_mac(uid, "net1");
        assert_eq!(mac, derived_mac(uid, "net1"), "stable");
        // The value itself is pinned: a change would give every migrating VM a new MAC.
        assert_eq!(mac, "ae:d9:62:ed:90:35");
        let first = parse_mac(&mac).unwrap()[0];
        assert_eq!(first & 0x01, 0, "unicast");
        assert_eq!(first & 0x02, 0x02, "locally administered");
        assert_ne!(mac, derived_mac(uid, "net2"), "per interface");
        assert_ne!(mac, derived_mac("another-uid", "net1"), "per owner");
        for i in 0..1000 {
            let first = parse_mac(&derived_mac(&format!("uid-{i}"), "net1")).unwrap()[0];
            assert_eq!(first & 0x03, 0x02, "uid-{i}");
        }
    }

    #[test]
    fn port_names_are_valid_and_distinct() {
        let a = port_name("virt-launcher-vm1-abcde", "uid-1", "net1");
        assert!(a.starts_with("virt-launcher-vm1-abcde-"), "{a}");
        assert_eq!(a.len(), "virt-launcher-vm1-abcde-".len() + 10);
        assert_ne!(a, port_name("virt-launcher-vm1-abcde", "uid-1", "net2"));
        assert_ne!(a, port_name("virt-launcher-vm1-abcde", "uid-2", "net1"));
        assert_eq!(port_name(&"a".repeat(300), "uid", "net1").len(), 253);
        let cut_at_dash = format!("{}-x", "a".repeat(241));
        let name = port_name(&cut_at_dash, "uid", "net1");
        assert!(!name.contains("--") && !name.contains(".-"), "{name}");
        let dotted = format!("{}.b", "a".repeat(241));
        assert!(!port_name(&dotted, "uid", "net1").contains(".-"));
    }

    #[test]
    fn ifindex_candidates_stay_in_the_range_and_vary() {
        let mut seen = std::collections::BTreeSet::new();
        for attempt in 0..100 {
            let index = ifindex_candidate("c1", "net1", attempt);
            assert!((IFINDEX_BASE..IFINDEX_BASE + IFINDEX_SPAN).contains(&index));
            assert!(index <= i32::MAX as u32, "ifindexes are positive ints");
            seen.insert(index);
        }
        assert!(seen.len() > 95, "candidates repeat: {}", seen.len());
        assert_eq!(
            ifindex_candidate("c1", "net1", 0),
            ifindex_candidate("c1", "net1", 0)
        );
    }

    #[test]
    fn host_link_names_fit_and_differ() {
        let name = host_link_name("c1", "net1");
        assert_eq!(name.len(), 15);
        assert!(name.starts_with("swc"));
        assert_ne!(name, host_link_name("c1", "net2"));
        assert_ne!(name, host_link_name("c2", "net1"));
    }
}
