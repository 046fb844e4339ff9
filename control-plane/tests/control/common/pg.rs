//! The test process's PostgreSQL cluster (`ringfence_tests::postgres`, started on first use);
//! each test gets its own database.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use ringfence_tests::postgres::PgCluster;

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The URL of a new, empty database (the cluster starts on first use). Panics with what to do
/// when PostgreSQL is not installed.
pub async fn fresh_database() -> String {
    let cluster = match CLUSTER.get_or_init(PgCluster::start) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the test PostgreSQL cluster (the storage tests run on both SQLite and PostgreSQL): {e}"),
    };
    let name = format!("t{}_{}", NEXT_DB.fetch_add(1, Ordering::Relaxed), rand::random::<u16>());
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&cluster.url("postgres"))
        .await
        .unwrap_or_else(|e| panic!("connecting to the test cluster in {}: {e}", cluster.dir().display()));
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("CREATE DATABASE");
    cluster.url(&name)
}
