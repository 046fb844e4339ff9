//! The commands that need no control plane: `policy check|explain` ([`policy`]) and
//! `geo lookup` ([`geo`]). They build without any server dependency.

pub mod geo;
pub mod policy;
