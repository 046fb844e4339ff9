//! `ringfence-control serve`: the control plane service.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringfence_control::config::EXIT_CONFIG;
use ringfence_control::ServeArgs;

#[derive(Parser)]
#[command(name = "ringfence-control", version, about = "Ringfence control plane")]
struct Cli {
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (HTTPS, TLS 1.3) until SIGINT or SIGTERM.
    Serve(ServeArgs),
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if cli.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let Command::Serve(args) = cli.command;
    let config = match args.validate() {
        Ok(config) => config,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!(
                "ringfence-control: {} configuration error{}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match ringfence_control::start(config).await {
            Ok(running) => {
                running.wait_for(shutdown_signal()).await;
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                let e = anyhow::Error::from(e);
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    })
}
