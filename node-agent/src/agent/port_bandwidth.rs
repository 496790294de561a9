//! A port's bandwidth on its link: planned from the merged spec (network, portgroup, port),
//! compared with what the kernel shows, applied only when they differ (so an agent restart
//! adopts the shaping without a flap), and what the port may then report.
//!
//! Missing kernel modules follow libvirt where the limit itself is at stake: libvirt fails an
//! interface whose `tc` commands fail. Without `act_police` a received-direction limit cannot
//! be enforced, so the port fails and its link is removed. Without `sch_sfq` or `cls_fw` the
//! rate still holds (sfq only shares it fairly between flows; libvirt's fw filter only
//! re-selects the default class), so the port is realised with a `BandwidthDegraded`
//! condition naming what is missing.

use switchyard_crds::Bandwidth;

use crate::bandwidth::observed::{adoptable, applied_bandwidth};
use crate::bandwidth::{HostView, MissingTcFeature, PortShaping, plan_port};
use crate::netlink::{LinkManager, NetlinkError};
use crate::ownership::LinkRef;

/// The reason of a port whose bandwidth the kernel cannot take as given.
pub(super) const BANDWIDTH_INVALID: &str = "BandwidthInvalid";
/// The reason of a port whose limit this kernel cannot enforce.
pub(super) const BANDWIDTH_UNENFORCEABLE: &str = "BandwidthUnenforceable";

/// What a port's link carries, as the agent last applied or adopted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AppliedBandwidth {
    /// The merged bandwidth it was planned from.
    pub(super) requested: Option<Bandwidth>,
    /// The traffic-control objects on the link.
    pub(super) shaping: Option<PortShaping>,
    /// Optional parts the kernel lacks (the limit holds without them).
    pub(super) missing: Vec<MissingTcFeature>,
}

impl AppliedBandwidth {
    /// What the port's `status.actual.bandwidth` says: only what the kernel enforces.
    pub(super) fn reported(&self) -> Option<Bandwidth> {
        applied_bandwidth(
            self.requested.as_ref(),
            self.shaping.as_ref(),
            &self.missing,
        )
    }
}

/// A port's bandwidth refusal: it stands while the port's generation and merged bandwidth
/// are these (a portgroup or network change re-plans the port without a new generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) generation: Option<i64>,
    pub(super) requested: Option<Bandwidth>,
}

/// The result of [`ensure`].
#[derive(Debug)]
pub(super) enum Outcome {
    /// The link carries the port's bandwidth.
    Applied(AppliedBandwidth),
    /// It cannot: the port fails with this reason and message, as libvirt's interface does.
    Refused {
        reason: &'static str,
        message: String,
    },
}

/// What the agent knows of a link's traffic control before [`ensure`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Known<'a> {
    /// The link was just created: it carries the kernel's defaults only.
    Fresh,
    /// The agent applied this to it earlier in this process.
    Applied(&'a AppliedBandwidth),
    /// Nothing (a link found after a restart): the kernel is asked.
    Unknown,
}

/// Makes `link` carry `requested` as a device seeing the guest's traffic as `view` does. The
/// kernel is read only when the agent does not know what the link carries ([`Known`]).
pub(super) async fn ensure(
    links: &LinkManager,
    link: &LinkRef,
    view: HostView,
    requested: Option<&Bandwidth>,
    known: Known<'_>,
) -> Result<Outcome, NetlinkError> {
    if let Known::Applied(known) = known
        && known.requested.as_ref() == requested
    {
        return Ok(Outcome::Applied(known.clone()));
    }
    let shaping = match plan_port(requested, view) {
        Ok(shaping) => shaping,
        Err(error) => {
            return Ok(Outcome::Refused {
                reason: BANDWIDTH_INVALID,
                message: format!("{error}; the kernel cannot take this limit"),
            });
        }
    };
    let adopted = match known {
        Known::Fresh if shaping.is_none() => Some(Vec::new()),
        Known::Fresh | Known::Applied(_) => None,
        Known::Unknown => adoptable(&links.observe_tc(link.ifindex).await?, shaping.as_ref()),
    };
    let missing = match adopted {
        Some(missing) => missing,
        None => {
            links
                .set_port_bandwidth(link.ifindex, shaping.as_ref())
                .await?
        }
    };
    if let (Some(feature), Some(shaping)) = (
        missing.iter().find(|f| !f.limit_holds_without()),
        shaping.as_ref(),
    ) {
        links.clear_port_bandwidth(link.ifindex).await?;
        let direction = shaping.view.receive_direction().field();
        return Ok(Outcome::Refused {
            reason: BANDWIDTH_UNENFORCEABLE,
            message: format!(
                "bandwidth.{direction}: the kernel lacks {} ({}), so the {direction} limit cannot be enforced on {}; libvirt refuses such an interface too: remove the {direction} limit or load the module",
                feature.kernel_option(),
                feature.consequence(),
                link.name,
            ),
        });
    }
    Ok(Outcome::Applied(AppliedBandwidth {
        requested: requested.cloned(),
        shaping,
        missing,
    }))
}
