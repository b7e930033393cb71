//! known_hosts matching (to be written).
