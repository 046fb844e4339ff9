//! Types shared by the kernel programs and the agent.
//!
//! Every type here is `#[repr(C)]`, built from `u16`/`u32`/`u64` and byte arrays, with no
//! implicit padding, so the kernel and userspace agree on the layout byte for byte.
#![no_std]

pub mod backstop;
pub mod block;
pub mod budget;
pub mod dns;
pub mod event;
pub mod flow;
pub mod maps;
pub mod rules;
pub mod socket;
pub mod tables;

pub use backstop::*;
pub use block::*;
pub use budget::*;
pub use dns::*;
pub use event::*;
pub use flow::*;
pub use maps::*;
pub use rules::*;
pub use socket::*;
pub use tables::*;
