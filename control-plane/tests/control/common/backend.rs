//! Which storage a test runs on (`on_both_backends!` runs a test once on each).

/// Which storage a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}
