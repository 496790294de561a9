//! The checks a network definition must pass, each reporting the field it concerns.
//!
//! Three layers, applied in order by [`validate_network`]:
//! - [`check_definition`]: what libvirt's parser (`virNetworkDefParseXML` and the
//!   virtualport / vlan / bandwidth / route parsers) refuses. The XML import applies exactly
//!   these, so a file libvirt cannot parse cannot be imported either. Also here, as in
//!   Debian's patched libvirt: no line break in any value written into a dnsmasq file
//!   ([`dnsmasq`]).
//! - what `virsh net-define` adds (`networkValidate` in bridge_driver.c): which forward modes
//!   accept ip, dns, mac, domain, bandwidth and vlan; pool kinds; one DHCP range per family;
//!   unique and single-default portgroups. Then what starting dnsmasq needs ([`dnsmasq`]):
//!   reverse zones for `localPtr`, unambiguous hostsfile fields, a lease for every static host.
//! - switchyard's own: node groups, device name lengths, capacity limits, and content that
//!   would not survive export (metadata that is not XML).

pub(crate) mod addressing;
mod cluster;
mod define;
mod dnsmasq;
mod forward;
mod ports;

use switchyard_crds::NetworkSpec;

use crate::path::FieldPath;

pub use addressing::ip_prefix;

/// One problem with a network definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field concerned, e.g. `spec.forward.interfaces[1].dev`.
    pub field: String,
    /// The same place in libvirt's XML, e.g. `/network/forward/interface[2]/@dev`.
    pub element: String,
    /// What is wrong and what to do about it.
    pub message: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: &FieldPath, message: impl Into<String>) -> Self {
        Self {
            field: path.spec_path(),
            element: path.xml_path(),
            message: message.into(),
        }
    }
}

/// Collects problems; checks keep going after the first so that users see them all.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn add(&mut self, path: &FieldPath, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }

    fn into_result(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Every problem with a network definition, or `Ok` if `virsh net-define` would accept it and
/// switchyard can store and export it.
pub fn validate_network(spec: &NetworkSpec) -> Result<(), Vec<FieldError>> {
    let mut problems = Problems::default();
    definition_rules(spec, &mut problems);
    define::check(spec, &mut problems);
    dnsmasq::limits(spec, &mut problems);
    cluster::check(spec, &mut problems);
    problems.into_result()
}

/// The problems libvirt's XML parser itself would refuse (a subset of [`validate_network`]).
pub fn check_definition(spec: &NetworkSpec) -> Vec<FieldError> {
    let mut problems = Problems::default();
    definition_rules(spec, &mut problems);
    problems.0
}

fn definition_rules(spec: &NetworkSpec, problems: &mut Problems) {
    forward::check(spec, problems);
    addressing::check(spec, problems);
    ports::check(spec, problems);
    dnsmasq::written_values(spec, problems);
}

#[cfg(test)]
mod tests;
