//! `cargo xtask bench-console`: the console's pages in Debian's chromium with 1,000 nodes and
//! 100,000 stored events (control-plane/tests/control/console_bench.rs): first contentful
//! paint and time to data per page.
use anyhow::Result;

use crate::util::run;

pub fn bench_console() -> Result<()> {
    crate::setup::setup(false)?;
    run(crate::util::cargo().args([
        "test",
        "-p",
        "ringfence-control",
        "--test",
        "control",
        "console_bench",
        "--",
        "--ignored",
        "--nocapture",
    ]))
}
