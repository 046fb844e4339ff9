//! `ringfence evidence export --from DATE --to DATE -o pack.tar.zst`.

use std::io::Write;
use std::path::Path;

use ringfence_proto::evidence::EvidencePack;

use super::pack;
use crate::client::{ApiClient, CliError};
use crate::commands::ServerArgs;
use crate::output::time_text;

/// `YYYY-MM-DD` (UTC midnight) or RFC 3339 → Unix ms.
pub fn parse_date(flag: &str, text: &str) -> Result<i64, CliError> {
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    let t = humantime::parse_rfc3339_weak(&full).map_err(|e| {
        CliError::Usage(format!("{flag} {text:?}: {e} (expected YYYY-MM-DD or 2026-01-31T12:00:00Z)"))
    })?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| CliError::Usage(format!("{flag} {text:?}: before 1970")))?;
    Ok(d.as_millis() as i64)
}

/// Fetches the pack of the period and writes it.
pub async fn run(
    args: &ServerArgs,
    from: &str,
    to: &str,
    output: &Path,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let (from_ms, to_ms) = (parse_date("--from", from)?, parse_date("--to", to)?);
    if from_ms >= to_ms {
        return Err(CliError::Usage(format!("--from {from} must be before --to {to}")));
    }
    let client = ApiClient::streaming(args)?;
    let pack: EvidencePack = client.get(&format!("/v1/evidence?from_ms={from_ms}&to_ms={to_ms}")).await?;
    let generated = ringfence_proto::now_ms() / 1000;
    pack::write(output, &pack.files, generated.max(0) as u64)?;
    writeln!(
        out,
        "wrote {} ({} files) for {} .. {}; verify with `ringfence evidence verify {} --key evidence-signing.pub`",
        output.display(),
        pack.files.len(),
        time_text(from_ms),
        time_text(to_ms),
        output.display()
    )?;
    Ok(())
}
