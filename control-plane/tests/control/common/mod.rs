//! The control plane's one test harness, shared by every test in this target:
//!
//! * [`server`]: the control plane in-process on SQLite or PostgreSQL ([`pg`]), with an admin
//!   client; [`agent`]: enrolled agents talking to it over mTLS; [`http`]: the clients;
//! * [`process`]: the real `ringfence-control` binary as a child process;
//! * [`cli`]: the `ringfence` operator binary, run against a server;
//! * [`metrics`]: reading `/metrics` and waiting for a counter;
//! * [`receiver`]: alert and checkpoint receivers (HTTP, syslog); [`s3`]: an S3 server (moto);
//! * [`backend`]: running a test on both storage backends; [`fixtures`]: test data.
//!
//! The parts import each other in one direction (`cargo xtask cycles control-plane/tests/control`);
//! none imports this module.

pub mod agent;
pub mod backend;
pub mod cli;
pub mod fixtures;
pub mod http;
pub mod metrics;
pub mod pg;
pub mod process;
pub mod receiver;
pub mod s3;
pub mod server;

pub use agent::Agent;
pub use backend::Backend;
pub use fixtures::{agent_event, policy_yaml, wg, wg_key};
pub use http::{client, client_at};
pub use server::{Options, TestServer};

/// Runs each named `async fn(Backend)` in the calling module once per backend (here, not in
/// [`backend`]: its `super::` is the caller's module).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::backend::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::backend::Backend::Postgres).await
                }
            )*
        }
    };
}
