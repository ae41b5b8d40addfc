//! The calculator service shared by the demo binaries.
