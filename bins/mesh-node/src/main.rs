//! `mesh-node`: the pricemesh node binary.
//!
//! Today it manages the node's identity (`keygen`); running a node (`run`, `demo`) and
//! database migrations (`migrate`) arrive with the node issue. Like every binary here it only
//! parses arguments and calls library code.

#![allow(clippy::print_stdout, reason = "a command-line tool reports on standard output")]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mesh_types::{KEY_FILE_NAME, NodeIdentity};

/// The pricemesh node.
#[derive(Debug, Parser)]
#[command(name = "mesh-node", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the node's Ed25519 key (if it has none) and print its node id.
    ///
    /// The key is written to DATA_DIR/node.key with mode 0600. Running keygen again keeps the
    /// existing key, so the node id never changes by accident.
    Keygen {
        /// Directory holding the node's key and local state.
        #[arg(long, env = "MESH_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mesh-node: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Keygen { data_dir } => keygen(&data_dir.join(KEY_FILE_NAME)),
    }
}

fn keygen(key_file: &std::path::Path) -> anyhow::Result<()> {
    let (identity, created) = NodeIdentity::load_or_generate(key_file)?;
    if created {
        eprintln!("created a new node key at {}", key_file.display());
    } else {
        eprintln!("using the existing node key at {}", key_file.display());
    }
    println!("{}", identity.node_id());
    Ok(())
}
