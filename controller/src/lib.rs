//! switchyard controller.
