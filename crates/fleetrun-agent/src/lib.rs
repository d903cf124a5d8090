//! fleetrun-agent
