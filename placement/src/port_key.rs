//! How a port is named in logs, conditions, `NetworkNode` holders and the cluster index.

use std::fmt;

use switchyard_crds::NetworkPort;

/// A `NetworkPort`'s namespace and name, shown as `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortKey {
    /// The port's namespace.
    pub namespace: String,
    /// The port's name.
    pub name: String,
}

impl PortKey {
    /// A key from its parts.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a `NetworkPort` object.
    pub fn of(port: &NetworkPort) -> Self {
        let metadata = &port.metadata;
        Self::new(
            metadata.namespace.clone().unwrap_or_default(),
            metadata
                .name
                .clone()
                .or_else(|| metadata.generate_name.clone())
                .unwrap_or_default(),
        )
    }
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
