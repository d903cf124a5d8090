//! fleetrun-server
