//! The commands that need no control plane: `policy check|explain` ([`policy`],
//! [`workload`] for `explain --workload`) and `geo lookup` ([`geo`]). They build without any server dependency.

pub mod geo;
pub mod policy;
pub mod resolve;
pub mod workload;
