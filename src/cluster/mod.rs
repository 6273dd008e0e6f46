//! Named cluster nodes (seed 002): groundwork for remote calls (issue 5).
//!
//! Only the node directory lives here so far: parsing the seed's
//! `clustername.lua` format and computing what a reload changes. It has no
//! C ABI yet.

pub mod directory;
