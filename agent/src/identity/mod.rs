//! Workload identity: which workload a cgroup belongs to, as labels a policy's
//! `spec.workloadSelector.matchLabels` can select.
//!
//! With `--cgroup-root DIR`, every cgroup under DIR is resolved by the [`Resolver`] from the
//! identity sources the [`IdentityConfig`] turns on:
//!
//! - [`static_file`]: cgroup path patterns to labels, from a file.
//! - [`slurm`]: Slurm job cgroups, with the job's user, account, partition and profile from
//!   the file the prolog writes (`deploy/slurm/`); [`job_files`] notices those files change.
//! - [`kubernetes`]: pod cgroups (both cgroup drivers), with the pod's labels, namespace, name
//!   and service account from the [`PodCache`], which [`kube_client::run_pod_watch`] fills by
//!   watching this node's pods ([`kube_watch`] is the sans-IO part of that watch).
//!
//! Everything but the watch loop and file reads is pure: paths and text in, labels out.
//! The types shared by the parts live in [`workload`] (this file only re-exports), so the
//! parts never import each other in a circle.
#![forbid(unsafe_code)]

pub mod config;
pub(crate) mod doc;
pub mod error;
pub mod job_files;
pub mod kube_api;
pub mod kube_client;
pub mod kube_watch;
pub mod kubernetes;
pub mod pod_cache;
pub mod resolver;
pub mod slurm;
pub mod static_file;
pub mod workload;

pub use config::IdentityConfig;
pub use error::IdentityError;
pub use pod_cache::{PodCache, PodInfo};
pub use resolver::Resolver;
pub use workload::{Labels, Workload, CGROUP_LABEL, PROFILE_LABEL};
