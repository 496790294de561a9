//! The kernel's limits that placement counts with.

pub use switchyard_libvirt::names::{IFNAMSIZ, MAX_IFNAME_LEN};

/// Ports one Linux bridge can carry: port numbers are 10 bits and 0 is reserved, so the
/// 1024th attach fails with `EXFULL` (`BR_MAX_PORTS` in net/bridge/br_private.h).
pub const MAX_BRIDGE_PORTS: u32 = 1023;

/// Whether the kernel can hold a link with this name (no lookup by a longer or empty name
/// can find one).
pub fn fits_ifname(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_IFNAME_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_in_ifnamsiz_with_its_nul() {
        assert!(fits_ifname("eth0"));
        assert!(fits_ifname(&"x".repeat(15)));
        assert!(!fits_ifname(&"x".repeat(16)));
        assert!(!fits_ifname(""));
        assert_eq!(MAX_IFNAME_LEN + 1, IFNAMSIZ);
    }
}
