//! `ringfence-agent selftest exfil`: proves the exfiltration budgets work on this node now, not
//! only that they are configured. `verdict` judges what a run observed (sans-IO); `run` does
//! the run (throwaway cgroup, workload, sink and client on the node's real datapath);
//! `schedule` runs it from the agent (`run --selftest-every`).
pub mod run;
pub mod schedule;
pub mod verdict;

pub use run::{client, run, Options, CLIENT_COMMAND};
pub use verdict::{judge, Observed, SelftestResult};
