//! libvirt network model: XML mapping, validation, merge rules.
