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
        EvidenceCommand::Verify { pack, key, checkpoint_key, node_ca } => {
            let pins = verify::Pins {
                key: key.as_deref(),
                checkpoint_key: checkpoint_key.as_deref(),
                node_ca: node_ca.as_deref(),
            };
            verify::run(&pack, &pins, out)
        }
    }
}
