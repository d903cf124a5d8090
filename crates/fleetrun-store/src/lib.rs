//! fleetrun-store
