//! `ringfence evidence export|verify`: the auditor's evidence pack as a `.tar.zst` ([`pack`]),
//! exported from the control plane ([`export`]) and verified offline ([`verify`]).

mod export;
pub mod pack;
mod selftests;
mod verify;

use std::io::Write;

use crate::client::CliError;
use crate::commands::{EvidenceCommand, ServerArgs};

/// Runs an evidence command.
pub async fn run(args: &ServerArgs, command: EvidenceCommand, out: &mut impl Write) -> Result<(), CliError> {
    match command {
        EvidenceCommand::Export { from, to, output } => export::run(args, &from, &to, &output, out).await,
        EvidenceCommand::Verify { pack, key, checkpoint_key } => {
            verify::run(&pack, key.as_deref(), checkpoint_key.as_deref(), out)
        }
    }
}
