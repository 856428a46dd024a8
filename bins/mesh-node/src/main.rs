//! `mesh-node`: the pricemesh node binary. It only parses settings, chooses backends and calls
//! library code:
//!
//! - `run`: a node — joins the mesh, relays and stores prices, serves the HTTP API, and with a
//!   price source publishes prices as a provider;
//! - `demo`: a small local mesh on loopback with a simulated provider, serving the API and the
//!   dashboard of one consumer node;
//! - `check-config`: validate the settings without starting, and print them with `--print`;
//! - `keygen`: create (or show) the node's identity;
//! - `migrate`: apply the PostgreSQL migrations.

#![allow(clippy::print_stdout, reason = "a command-line tool reports on standard output")]

mod api;
mod backends;
mod check;
mod demo;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use mesh_types::{KEY_FILE_NAME, NodeIdentity};

/// The pricemesh node.
#[derive(Debug, Parser)]
#[command(name = "mesh-node", version, about)]
struct Cli {
    /// Log format: readable text or one JSON object per line. Levels come from RUST_LOG
    /// (default: info).
    #[arg(long, env = "MESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node. Every setting is a flag, an environment variable (shown below) or a key in
    /// the --config TOML file; a flag beats the environment, which beats the file.
    Run(Box<run::RunArgs>),
    /// Validate the settings `run` would use (flags, environment, --config file) without
    /// starting; --print shows each effective setting and its source, secrets redacted.
    CheckConfig(Box<check::CheckArgs>),
    /// Run a small local mesh (a simulated provider, relays, consumers) and serve one consumer's
    /// API and dashboard.
    Demo(demo::DemoArgs),
    /// Create the node's Ed25519 key (if it has none) and print its node id.
    ///
    /// The key is written to DATA_DIR/node.key with mode 0600. Running keygen again keeps the
    /// existing key, so the node id never changes by accident.
    Keygen {
        /// Directory holding the node's key and local state.
        #[arg(long, env = "MESH_DATA_DIR", default_value = "data")]
        data_dir: PathBuf,
    },
    /// Apply the PostgreSQL migrations (also done by `run` when DATABASE_URL is set).
    Migrate {
        /// The database.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
}

fn main() -> ExitCode {
    // Parsed through the matches, which tell check-config where each value came from.
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    if let Command::CheckConfig(args) = cli.command {
        let sub = matches.subcommand_matches("check-config").unwrap_or(&matches);
        return match check::check_config(*args, sub) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("mesh-node: {err:#}");
                ExitCode::FAILURE
            }
        };
    }
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mesh-node: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mesh-node: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::run(*args).await,
        Command::Demo(args) => demo::demo(args).await,
        // Handled in `main`, before logging starts: it needs the parsed matches.
        Command::CheckConfig(_) => Ok(()),
        Command::Keygen { data_dir } => keygen(&data_dir.join(KEY_FILE_NAME)),
        Command::Migrate { database_url } => {
            backends::migrate(&database_url).await?;
            println!("migrations applied");
            Ok(())
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The NATS client logs every failed reconnect at info; the bridge logs an outage once.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
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

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
