//! qcow2 (to come).
