//! Building blocks shared by several kinds: libvirt's virtualport / vlan / bandwidth elements,
//! node selectors and status conditions.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// libvirt's `<virtualport>`: how the port is described to the physical or virtual switch.
/// Given on a network, a portgroup or a port; the three are merged attribute by attribute, and
/// one attribute set to two different values is an error.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualPort {
    /// The virtual port profile type. May be left out on a portgroup or port, in which case it
    /// is taken from wherever the other levels set it.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<VirtualPortType>,
    /// 802.1Qbg: the VSI Manager ID (0-255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managerid: Option<u8>,
    /// 802.1Qbg: the VSI Type ID (0-16777215).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 16_777_215))]
    pub typeid: Option<u32>,
    /// 802.1Qbg: the VSI Type Version (0-255).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typeidversion: Option<u8>,
    /// 802.1Qbg: the VSI Instance ID, a UUID. Generated per port when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instanceid: Option<String>,
    /// 802.1Qbh and openvswitch: the port profile name (at most 39 characters for 802.1Qbh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub profileid: Option<String>,
    /// openvswitch and midonet: the interface ID, a UUID. Generated per port when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaceid: Option<String>,
}

/// A virtual port profile type, spelled as in libvirt's XML.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum VirtualPortType {
    /// IEEE 802.1Qbg (VEPA with VDP).
    #[serde(rename = "802.1Qbg")]
    Qbg,
    /// IEEE 802.1Qbh (port extender, e.g. Cisco VM-FEX). Needs exclusive use of a pool device.
    #[serde(rename = "802.1Qbh")]
    Qbh,
    /// Open vSwitch.
    #[serde(rename = "openvswitch")]
    OpenVswitch,
    /// MidoNet.
    #[serde(rename = "midonet")]
    Midonet,
}

impl VirtualPortType {
    /// The spelling used in libvirt XML and in this API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qbg => "802.1Qbg",
            Self::Qbh => "802.1Qbh",
            Self::OpenVswitch => "openvswitch",
            Self::Midonet => "midonet",
        }
    }
}

/// libvirt's `<vlan>`: the VLAN tags of a port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Vlan {
    /// Carry several VLANs on the port (a trunk). Implied when more than one tag is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<bool>,
    /// The VLAN tags, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<VlanTag>,
}

/// One VLAN tag.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VlanTag {
    /// The VLAN ID (0-4095).
    #[schemars(range(max = 4095))]
    pub id: u16,
    /// On a trunk, the native (untagged) VLAN and how its frames are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_mode: Option<VlanNativeMode>,
}

/// How the native VLAN's frames are sent on a trunk.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum VlanNativeMode {
    /// Native VLAN frames carry their tag.
    Tagged,
    /// Native VLAN frames are sent untagged.
    Untagged,
}

/// libvirt's `<bandwidth>`: traffic shaping. On a network it limits the whole network; on a
/// portgroup or port it limits each port.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    /// Traffic into the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<BandwidthLimit>,
    /// Traffic out of the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<BandwidthLimit>,
}

/// One direction's limits. Rates are in kibibytes per second, sizes in kibibytes, as in libvirt.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthLimit {
    /// Average rate, KiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub average: Option<u64>,
    /// Peak rate, KiB/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak: Option<u64>,
    /// Burst size at peak rate, KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Guaranteed minimum rate, KiB/s (inbound only; admitted against the network's average).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u64>,
}

/// Which nodes something applies to, as in a Deployment's selector. Empty selects every node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    /// Node labels that must all be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements on node labels; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
}

/// One requirement on a node label.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorRequirement {
    /// The label key.
    pub key: String,
    /// How the label's value is compared with `values`.
    pub operator: SelectorOperator,
    /// The values for `In` and `NotIn`; must be empty for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A label selector operator.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SelectorOperator {
    /// The label is present with one of the values.
    In,
    /// The label is absent, or present with none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl NodeSelector {
    /// Whether a node with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator {
                    SelectorOperator::In => value.is_some_and(|v| req.values.contains(v)),
                    SelectorOperator::NotIn => !value.is_some_and(|v| req.values.contains(v)),
                    SelectorOperator::Exists => value.is_some(),
                    SelectorOperator::DoesNotExist => value.is_none(),
                }
            })
    }
}

/// A status condition, shaped like Kubernetes' `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, e.g. `Ready`, in CamelCase.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// A CamelCase machine-readable reason for the last transition.
    pub reason: String,
    /// A human-readable explanation.
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The truth value of a condition.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet.
    #[default]
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn empty_selector_selects_every_node() {
        assert!(NodeSelector::default().matches(&labels(&[])));
    }

    #[test]
    fn selector_needs_every_label_and_expression() {
        let sel = NodeSelector {
            match_labels: labels(&[("rack", "a")]),
            match_expressions: vec![NodeSelectorRequirement {
                key: "nic".into(),
                operator: SelectorOperator::In,
                values: vec!["x710".into(), "e810".into()],
            }],
        };
        assert!(sel.matches(&labels(&[("rack", "a"), ("nic", "e810")])));
        assert!(!sel.matches(&labels(&[("rack", "a"), ("nic", "cx5")])));
        assert!(!sel.matches(&labels(&[("rack", "b"), ("nic", "e810")])));
        assert!(!sel.matches(&labels(&[("nic", "e810")])));
    }

    #[test]
    fn not_in_and_existence_operators() {
        let req = |operator, values: &[&str]| NodeSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![NodeSelectorRequirement {
                key: "k".into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
        };
        assert!(req(SelectorOperator::NotIn, &["x"]).matches(&labels(&[])));
        assert!(!req(SelectorOperator::NotIn, &["x"]).matches(&labels(&[("k", "x")])));
        assert!(req(SelectorOperator::Exists, &[]).matches(&labels(&[("k", "")])));
        assert!(!req(SelectorOperator::Exists, &[]).matches(&labels(&[])));
        assert!(req(SelectorOperator::DoesNotExist, &[]).matches(&labels(&[])));
    }
}
