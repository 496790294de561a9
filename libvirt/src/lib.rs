//! libvirt's network model for switchyard: the XML mapping, the checks a `virsh net-define`
//! performs, and the rules that turn a network, a portgroup and a port request into the
//! settings a port really gets.
//!
//! Everything here is pure: no I/O, no clocks, no randomness. The CLI, the controller and the
//! node agent share these functions so that they all agree on what a definition means.

pub mod dnsmasq;
pub mod firewall;
pub mod merge;
pub mod modes;
pub mod names;
pub mod path;
pub mod validate;
pub mod values;
pub mod xml;

pub use merge::{Connection, EffectivePort, Origin, PortError, PortRequest, effective_port};
pub use path::FieldPath;
pub use validate::{FieldError, validate_network};
pub use xml::{XmlError, network_from_xml, network_to_xml};
