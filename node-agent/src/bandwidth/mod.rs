//! A port's `<bandwidth>` as libvirt applies it to the host side of the port
//! (`virNetDevBandwidthSet`, src/util/virnetdevbandwidth.c): what the device *transmits* is
//! shaped by an HTB class on its root, what it *receives* is policed on its ingress. Which
//! guest direction is which depends on the link ([`HostView`]): for a bridge port's veth (as
//! for libvirt's tap) the host sees the guest's traffic reversed, so traffic into the guest is
//! the device's transmit; a macvtap shares the guest's view (libvirt's
//! `virDomainNetTypeSharesHostView` is true for `direct` interfaces), so traffic into the guest
//! is the device's receive.
//!
//! [`plan_port`] turns the merged limits into the traffic-control objects libvirt would
//! create; [`PortShaping::libvirt_tc_commands`] renders them as the exact `tc` command lines
//! libvirt runs (the conformance check against libvirt's tests/virnetdevbandwidthtest.c);
//! [`wire`] encodes them as the rtnetlink attributes `tc` would send for those lines.
//!
//! Units are libvirt's and `tc`'s: libvirt writes `average`/`peak` as `<N>kbps`, which `tc`
//! reads as N × 1000 bytes per second, and `burst` as `<N>kb`, which `tc` reads as N × 1024
//! bytes. The plan keeps the kernel's bytes so the edge has nothing left to interpret.

pub mod observed;
pub mod wire;

pub use observed::MissingTcFeature;

use switchyard_crds::{Bandwidth, BandwidthLimit};

/// The root HTB qdisc's handle, `1:`.
pub const ROOT_HANDLE: u32 = 0x0001_0000;
/// The one HTB class, `1:1`, into which all traffic falls by default.
pub const CLASS_ID: u32 = 0x0001_0001;
/// The sfq leaf under the class, `2:`.
pub const LEAF_HANDLE: u32 = 0x0002_0000;
/// `tc`'s `mtu 64kb` on libvirt's police filter.
pub const POLICE_MTU: u32 = 64 * 1024;
/// `sfq perturb 10`: the hash is re-seeded every 10 s.
pub const SFQ_PERTURB_SECONDS: i32 = 10;
/// libvirt's quantum is sized for this MTU (`virNetDevBandwidthCmdAddOptimalQuantum`).
const QUANTUM_MTU: u64 = 1500;

/// How the host-side device of a port sees the guest's traffic (libvirt's `swapped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostView {
    /// The device transmits what the guest receives: a bridge port's veth, libvirt's tap.
    Swapped,
    /// The device transmits what the guest sends: a macvtap (libvirt's `direct`).
    Shared,
}

impl HostView {
    /// The guest direction the device's transmit (the HTB class) limits.
    pub fn transmit_direction(self) -> Direction {
        match self {
            Self::Swapped => Direction::Inbound,
            Self::Shared => Direction::Outbound,
        }
    }

    /// The guest direction the device's receive (the ingress police) limits.
    pub fn receive_direction(self) -> Direction {
        match self {
            Self::Swapped => Direction::Outbound,
            Self::Shared => Direction::Inbound,
        }
    }
}

/// A direction of the guest's traffic, as `<bandwidth>` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// Into the guest (`<inbound>`).
    Inbound,
    /// Out of the guest (`<outbound>`).
    Outbound,
}

impl Direction {
    /// The field's name in the spec.
    pub fn field(self) -> &'static str {
        match self {
            Self::Inbound => "inbound",
            Self::Outbound => "outbound",
        }
    }

    fn limit(self, bandwidth: &Bandwidth) -> Option<&BandwidthLimit> {
        match self {
            Self::Inbound => bandwidth.inbound.as_ref(),
            Self::Outbound => bandwidth.outbound.as_ref(),
        }
    }
}

/// What is installed on the host-side device of one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortShaping {
    /// The device's transmit: root `htb default 1`, class 1:1, sfq leaf 2:, fw filter
    /// (prio 1 handle 1).
    pub egress: Option<HtbClass>,
    /// The device's receive: `ingress` qdisc and a match-all u32 filter that polices and drops.
    pub ingress: Option<Police>,
    /// Which guest directions those are.
    pub view: HostView,
}

/// The HTB class 1:1 (bytes per second and bytes, as the kernel takes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtbClass {
    /// `rate`, from `average`.
    pub rate: u64,
    /// `ceil`, from `peak` (tc's default, the rate, when absent).
    pub ceil: Option<u64>,
    /// `burst`, from `burst` (tc's default when absent).
    pub burst: Option<u32>,
    /// `quantum`: `average * 1024 / 8 / 1500`, at least 1, exactly as libvirt computes it.
    pub quantum: u32,
}

/// The ingress police action (bytes per second and bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Police {
    /// `rate`, from `average`.
    pub rate: u64,
    /// `burst`, from `burst`, else the average's number of KiB (capped so bytes fit a u32).
    pub burst: u32,
}

/// A limit the kernel cannot take, named by its field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BandwidthError {
    #[error("{field}: {reason}")]
    Unusable { field: String, reason: String },
}

fn unusable(field: String, reason: impl Into<String>) -> BandwidthError {
    BandwidthError::Unusable {
        field,
        reason: reason.into(),
    }
}

/// The shaping libvirt installs for a port's merged bandwidth on a device that sees the
/// guest's traffic as `view` says, or `None` when there is nothing to install (no bandwidth,
/// or neither direction limits anything).
pub fn plan_port(
    bandwidth: Option<&Bandwidth>,
    view: HostView,
) -> Result<Option<PortShaping>, BandwidthError> {
    let Some(bandwidth) = bandwidth else {
        return Ok(None);
    };
    // libvirt creates the HTB only when the transmitted direction's average is set; a
    // floor-only inbound (hierarchical shaping on a network bridge) puts nothing on the port.
    let transmit = view.transmit_direction();
    let egress = match transmit.limit(bandwidth) {
        Some(limit) if limit.average.unwrap_or(0) > 0 => Some(htb_class(transmit, limit)?),
        _ => None,
    };
    let receive = view.receive_direction();
    let ingress = match receive.limit(bandwidth) {
        // A floor-only inbound limit on a macvtap has nothing to police.
        Some(limit) if receive == Direction::Outbound || limit.average.unwrap_or(0) > 0 => {
            Some(police(receive, limit)?)
        }
        _ => None,
    };
    if egress.is_none() && ingress.is_none() {
        return Ok(None);
    }
    Ok(Some(PortShaping {
        egress,
        ingress,
        view,
    }))
}

/// `bandwidth.<direction>.<attribute>`, the field an error names.
fn field_name(direction: Direction, attribute: &str) -> String {
    format!("bandwidth.{}.{attribute}", direction.field())
}

/// `<N>kbps` as tc reads it.
fn rate_bytes(field: String, kbps: u64) -> Result<u64, BandwidthError> {
    kbps.checked_mul(1000).ok_or_else(|| {
        unusable(
            field,
            format!("{kbps} KiB/s does not fit the kernel's 64-bit rate"),
        )
    })
}

/// `<N>kb` as tc reads it; tc keeps sizes in 32 bits.
fn size_bytes(field: String, kb: u64) -> Result<u32, BandwidthError> {
    kb.checked_mul(1024)
        .and_then(|bytes| u32::try_from(bytes).ok())
        .ok_or_else(|| {
            unusable(
                field,
                format!(
                    "{kb} KiB is more than the kernel's 4 GiB burst limit ({} KiB)",
                    u32::MAX / 1024
                ),
            )
        })
}

fn htb_class(direction: Direction, limit: &BandwidthLimit) -> Result<HtbClass, BandwidthError> {
    let average = limit.average.unwrap_or(0);
    let rate = rate_bytes(field_name(direction, "average"), average)?;
    let ceil = match limit.peak {
        Some(peak) if peak > 0 => Some(rate_bytes(field_name(direction, "peak"), peak)?),
        _ => None,
    };
    let burst = match limit.burst {
        Some(burst) if burst > 0 => Some(size_bytes(field_name(direction, "burst"), burst)?),
        _ => None,
    };
    let quantum = (u128::from(average) * 1024 / 8 / u128::from(QUANTUM_MTU)).max(1);
    let quantum = u32::try_from(quantum).map_err(|_| {
        unusable(
            field_name(direction, "average"),
            format!("{average} KiB/s gives an HTB quantum above the kernel's 32-bit limit"),
        )
    })?;
    Ok(HtbClass {
        rate,
        ceil,
        burst,
        quantum,
    })
}

fn police(direction: Direction, limit: &BandwidthLimit) -> Result<Police, BandwidthError> {
    let average = limit.average.unwrap_or(0);
    if average == 0 {
        return Err(unusable(
            field_name(direction, "average"),
            format!(
                "an {} limit needs an average above 0 (it is the policing rate)",
                direction.field()
            ),
        ));
    }
    let rate = rate_bytes(field_name(direction, "average"), average)?;
    let burst = match limit.burst {
        Some(burst) if burst > 0 => size_bytes(field_name(direction, "burst"), burst)?,
        // libvirt: MIN(average, UINT_MAX / 1024) KiB, the largest burst tc can hold.
        _ => size_bytes(
            field_name(direction, "average"),
            average.min(u64::from(u32::MAX / 1024)),
        )?,
    };
    Ok(Police { rate, burst })
}

impl PortShaping {
    /// The `tc` command lines (without the `tc` binary) libvirt runs for this shaping on
    /// `ifname`, in its order, starting with the two deletions of whatever was there.
    pub fn libvirt_tc_commands(&self, ifname: &str) -> Vec<String> {
        let mut lines = vec![
            format!("qdisc del dev {ifname} root"),
            format!("qdisc del dev {ifname} ingress"),
        ];
        if let Some(class) = &self.egress {
            lines.push(format!(
                "qdisc add dev {ifname} root handle 1: htb default 1"
            ));
            let mut line = format!(
                "class add dev {ifname} parent 1: classid 1:1 htb rate {}kbps",
                class.rate / 1000
            );
            if let Some(ceil) = class.ceil {
                line.push_str(&format!(" ceil {}kbps", ceil / 1000));
            }
            if let Some(burst) = class.burst {
                line.push_str(&format!(" burst {}kb", burst / 1024));
            }
            line.push_str(&format!(" quantum {}", class.quantum));
            lines.push(line);
            lines.push(format!(
                "qdisc add dev {ifname} parent 1:1 handle 2: sfq perturb {SFQ_PERTURB_SECONDS}"
            ));
            lines.push(format!(
                "filter add dev {ifname} parent 1:0 protocol all prio 1 handle 1 fw flowid 1"
            ));
        }
        if let Some(police) = &self.ingress {
            lines.push(format!("qdisc add dev {ifname} ingress"));
            lines.push(format!(
                "filter add dev {ifname} parent ffff: protocol all u32 match u32 0 0 police rate {}kbps burst {}kb mtu 64kb drop flowid :1",
                police.rate / 1000,
                police.burst / 1024
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests;
