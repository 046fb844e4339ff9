//! Integration tests of the control plane: a real server on 127.0.0.1 over HTTPS, on SQLite and
//! on PostgreSQL (a throwaway cluster started by the tests).

mod common;

mod audit;
mod binary;
mod bundles;
mod checkpoints;
mod cli_ops;
mod console;
mod console_bench;
mod deploy_metrics;
mod enrollment;
mod events;
mod evidence;
mod flood;
mod hijack;
mod observe;
mod openapi;
mod replicas;
mod selftest_signed;
mod workloads;
