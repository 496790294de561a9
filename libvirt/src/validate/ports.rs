//! libvirt's parse-time rules for `<virtualport>`, `<vlan>`, `<bandwidth>` and `<portgroup>`
//! (virNetDevVPortProfileParse, virNetDevVlanParse, virNetDevBandwidthParse,
//! virNetworkPortGroupParseXML).

use switchyard_crds::{Bandwidth, NetworkSpec, VirtualPort, VirtualPortType, Vlan};

use super::Problems;
use crate::path::FieldPath;
use crate::values;

/// 802.1Qbh and openvswitch profile names live in a 40-byte buffer in libvirt.
pub(crate) const PROFILEID_MAX: usize = 39;
/// The largest 802.1Qbg VSI type id (24 bits).
pub(crate) const TYPEID_MAX: u32 = 0xff_ffff;

pub(super) fn check(spec: &NetworkSpec, problems: &mut Problems) {
    let root = FieldPath::spec();
    if let Some(vport) = &spec.virtualport {
        virtualport(
            vport,
            &root.elem("virtualport", "virtualport"),
            true,
            problems,
        );
    }
    if let Some(vlan) = &spec.vlan {
        self::vlan(vlan, &root.elem("vlan", "vlan"), problems);
    }
    if let Some(bandwidth) = &spec.bandwidth {
        self::bandwidth(
            bandwidth,
            &root.elem("bandwidth", "bandwidth"),
            false,
            problems,
        );
    }
    for (i, portgroup) in spec.portgroups.iter().enumerate() {
        let path = root.elem("portgroups", "portgroup").index(i);
        if portgroup.name.is_empty() {
            problems.add(&path.attr("name", "name"), "the portgroup name is required");
        }
        if let Some(vport) = &portgroup.virtualport {
            virtualport(
                vport,
                &path.elem("virtualport", "virtualport"),
                false,
                problems,
            );
        }
        if let Some(vlan) = &portgroup.vlan {
            self::vlan(vlan, &path.elem("vlan", "vlan"), problems);
        }
        if let Some(bandwidth) = &portgroup.bandwidth {
            self::bandwidth(
                bandwidth,
                &path.elem("bandwidth", "bandwidth"),
                false,
                problems,
            );
        }
    }
}

/// Which parameters each virtualport type has.
fn allowed(kind: VirtualPortType, attribute: &str) -> bool {
    match kind {
        VirtualPortType::Qbg => matches!(
            attribute,
            "managerid" | "typeid" | "typeidversion" | "instanceid"
        ),
        VirtualPortType::Qbh => attribute == "profileid",
        VirtualPortType::OpenVswitch => matches!(attribute, "profileid" | "interfaceid"),
        VirtualPortType::Midonet => attribute == "interfaceid",
    }
}

pub(crate) fn virtualport(
    vport: &VirtualPort,
    path: &FieldPath,
    require_type: bool,
    problems: &mut Problems,
) {
    if require_type && vport.kind.is_none() {
        problems.add(
            &path.attr("type", "type"),
            "a network's virtualport needs a type (802.1Qbg, 802.1Qbh, openvswitch or midonet)",
        );
    }
    let set = [
        ("managerid", vport.managerid.is_some()),
        ("typeid", vport.typeid.is_some()),
        ("typeidversion", vport.typeidversion.is_some()),
        ("instanceid", vport.instanceid.is_some()),
        ("profileid", vport.profileid.is_some()),
        ("interfaceid", vport.interfaceid.is_some()),
    ];
    if let Some(kind) = vport.kind {
        for (attribute, _) in set
            .iter()
            .filter(|(a, is_set)| *is_set && !allowed(kind, a))
        {
            problems.add(
                &parameter(path, attribute),
                format!(
                    "{attribute} is not a parameter of <virtualport type='{}'>",
                    kind.as_str()
                ),
            );
        }
    }
    if let Some(typeid) = vport.typeid.filter(|t| *t > TYPEID_MAX) {
        problems.add(
            &parameter(path, "typeid"),
            format!("typeid {typeid} is out of range 0-{TYPEID_MAX}"),
        );
    }
    if let Some(profileid) = &vport.profileid {
        if profileid.len() > PROFILEID_MAX {
            problems.add(
                &parameter(path, "profileid"),
                format!(
                    "profileid is too long ({} bytes, limit {PROFILEID_MAX})",
                    profileid.len()
                ),
            );
        } else if profileid.is_empty() {
            problems.add(&parameter(path, "profileid"), "profileid must not be empty");
        }
    }
    for (attribute, value) in [
        ("instanceid", &vport.instanceid),
        ("interfaceid", &vport.interfaceid),
    ] {
        if let Some(value) = value
            && values::parse_uuid(value).is_none()
        {
            problems.add(
                &parameter(path, attribute),
                format!("{attribute} '{value}' is not a UUID"),
            );
        }
    }
}

fn parameter(path: &FieldPath, attribute: &'static str) -> FieldPath {
    let xml = match attribute {
        "managerid" => "parameters/@managerid",
        "typeid" => "parameters/@typeid",
        "typeidversion" => "parameters/@typeidversion",
        "instanceid" => "parameters/@instanceid",
        "profileid" => "parameters/@profileid",
        _ => "parameters/@interfaceid",
    };
    path.elem(attribute, xml)
}

pub(crate) fn vlan(vlan: &Vlan, path: &FieldPath, problems: &mut Problems) {
    if vlan.tags.is_empty() {
        problems.add(&path.elem("tags", "tag"), "a vlan needs at least one tag");
    }
    let mut natives = 0;
    for (i, tag) in vlan.tags.iter().enumerate() {
        let tag_path = path.elem("tags", "tag").index(i);
        if tag.id > 4095 {
            problems.add(
                &tag_path.attr("id", "id"),
                format!("vlan tag id {} is too large (maximum 4095)", tag.id),
            );
        }
        if tag.native_mode.is_some() {
            natives += 1;
            if natives > 1 {
                problems.add(
                    &tag_path.attr("nativeMode", "nativeMode"),
                    "only one tag can be the native vlan",
                );
            }
        }
    }
    if vlan.trunk == Some(false) {
        if vlan.tags.len() > 1 {
            problems.add(
                &path.attr("trunk", "trunk"),
                "trunk: yes is required for more than one vlan tag",
            );
        }
        if natives > 0 {
            problems.add(
                &path.attr("trunk", "trunk"),
                "trunk: no is not allowed with a native vlan",
            );
        }
    }
}

/// `allow_floor`: only a port's own inbound bandwidth may carry a floor.
pub(crate) fn bandwidth(
    bandwidth: &Bandwidth,
    path: &FieldPath,
    allow_floor: bool,
    problems: &mut Problems,
) {
    for (direction, xml, limit) in [
        ("inbound", "inbound", &bandwidth.inbound),
        ("outbound", "outbound", &bandwidth.outbound),
    ] {
        let Some(limit) = limit else { continue };
        let limit_path = path.elem(direction, xml);
        if limit.average.is_none() && limit.floor.is_none() {
            problems.add(
                &limit_path,
                format!("{direction} bandwidth needs an average (or a floor)"),
            );
        }
        if limit.average.is_none() && (limit.peak.is_some() || limit.burst.is_some()) {
            problems.add(
                &limit_path.attr("average", "average"),
                "peak and burst require an average",
            );
        }
        if limit.floor.is_some() {
            if direction == "outbound" {
                problems.add(
                    &limit_path.attr("floor", "floor"),
                    "floor is only allowed on inbound bandwidth",
                );
            } else if !allow_floor {
                problems.add(
                    &limit_path.attr("floor", "floor"),
                    "floor is only supported on a port's own bandwidth, not on a network or portgroup",
                );
            }
        }
    }
}
