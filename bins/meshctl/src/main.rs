//! `meshctl`: a command-line client for pricemesh.
//!
//! Today it inspects wire payloads offline (`decode`); the commands that talk to a running
//! node (`prices`, `watch`, `status`, `provider enable|disable`) arrive with the node issue.

#![allow(clippy::print_stdout, reason = "a command-line tool reports on standard output")]

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use mesh_types::Codec;

/// Command-line client for pricemesh.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode one wire payload (version byte + message, as hex) and print it as JSON.
    ///
    /// Useful when a peer's frames are refused: the error names what is wrong with them.
    Decode {
        /// The payload in hex, e.g. copied from a packet capture.
        payload_hex: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meshctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Decode { payload_hex } => {
            let payload = hex::decode(payload_hex.trim()).context("the payload is not valid hex")?;
            let message =
                Codec::default().decode(&payload).context("the payload is not a pricemesh message")?;
            println!("{}", serde_json::to_string_pretty(&message)?);
            Ok(())
        }
    }
}
