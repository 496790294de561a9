//! switchyard node-agent.
