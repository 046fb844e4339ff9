//! Builds the eBPF programs (ebpf/ringfence-ebpf) with the nightly toolchain and bpf-linker, so
//! the agent can embed them with `include_bytes_aligned!`. `cargo xtask setup` installs both.
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ebpf = manifest.join("../ebpf/ringfence-ebpf").canonicalize()?;
    let common = manifest.join("../ebpf/ringfence-common").canonicalize()?;
    println!("cargo:rerun-if-changed={}", common.display());
    let root_dir = ebpf.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [aya_build::Package { name: "ringfence-ebpf", root_dir, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
}
