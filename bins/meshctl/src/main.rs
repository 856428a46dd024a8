//! `meshctl`: a command-line client for pricemesh.
//!
//! Against a running node's HTTP API (`--node`, default `http://127.0.0.1:8080`): `prices`,
//! `status`, `watch` (the `/ws` feed as readable lines) and `provider enable|disable|status`;
//! tables for people, `--json` for scripts. Offline: `decode` inspects one wire payload.
//!
//! Every failure is one line on standard error and a non-zero exit; nothing panics.

#![allow(clippy::print_stdout, reason = "a command-line tool reports on standard output")]

mod client;
mod render;
mod watch;

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;
use std::str::FromStr;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use mesh_types::{Asset, CachedPriceData, Codec, NetworkStatus, PriceMap, ProviderState, ProviderStatus};

use crate::client::Node;

/// Command-line client for pricemesh.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about)]
struct Cli {
    /// The node's HTTP API.
    #[arg(long, global = true, env = "MESHCTL_NODE", default_value = "http://127.0.0.1:8080")]
    node: String,

    /// Print the node's data as JSON (one message per line for `watch`), for scripts.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the prices the node has cached: every asset, or one.
    ///
    /// An asset the node has no price for is an error (exit status 1).
    Prices {
        /// One asset symbol, e.g. SOL (case does not matter).
        asset: Option<Asset>,
    },

    /// Show the network as the node sees it: peers, network size, freshness and providers.
    Status,

    /// Stream the live prices of the node, and of every `--also` node, one line per event,
    /// until Ctrl-C.
    ///
    /// Connections reconnect and resume on their own, prices arrive once whichever node sends
    /// them first, and a `gap` line appears only when changes may really have been missed.
    Watch {
        /// Only these assets, comma-separated, e.g. SOL,ETH.
        #[arg(long, value_delimiter = ',')]
        assets: Vec<Asset>,
        /// More nodes to follow at once (http:// URLs), e.g. --also http://127.0.0.1:8081.
        #[arg(long)]
        also: Vec<String>,
    },

    /// Turn the node's provider mode on or off, or show it.
    Provider {
        #[command(subcommand)]
        action: ProviderCommand,
    },

    /// Decode one wire payload (version byte + message, as hex) and print it as JSON.
    ///
    /// Useful when a peer's frames are refused: the error names what is wrong with them.
    Decode {
        /// The payload in hex, e.g. copied from a packet capture.
        payload_hex: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProviderCommand {
    /// Start fetching prices from Birdeye and publishing them to the mesh.
    Enable {
        /// The Birdeye API key; prefer the environment variable, which stays out of `ps` and
        /// shell history. Never printed.
        #[arg(long, env = "BIRDEYE_API_KEY", hide_env_values = true)]
        api_key: Secret,

        #[command(flatten)]
        admin: AdminToken,
    },

    /// Stop fetching; the node goes on relaying other providers' prices.
    Disable {
        #[command(flatten)]
        admin: AdminToken,
    },

    /// Show whether provider mode is on, and how many fetches it has made.
    Status,
}

#[derive(Debug, Args)]
struct AdminToken {
    /// The node's admin token, sent as `Authorization: Bearer`; required when the node's API
    /// listens on a non-loopback address.
    #[arg(long = "admin-token", env = "MESH_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
}

/// A credential from the command line or the environment. Its `Debug` form hides it, so no
/// diagnostic can print it by accident.
#[derive(Clone)]
struct Secret(String);

impl Secret {
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`meshctl watch | head -3`) is a normal end, not an error.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("meshctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Writes `text` and a newline to standard output. Unlike `println!`, a closed pipe is an
/// error to return rather than a panic.
fn emit(text: impl fmt::Display) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

fn emit_json(data: &serde_json::Value) -> anyhow::Result<()> {
    Ok(emit(serde_json::to_string_pretty(data)?)?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Decode { payload_hex } = &cli.command {
        return decode(payload_hex);
    }
    let node = Node::new(&cli.node)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_against(&node, cli.command, cli.json))
}

fn decode(payload_hex: &str) -> anyhow::Result<()> {
    let payload = hex::decode(payload_hex.trim()).context("the payload is not valid hex")?;
    let message = Codec::default().decode(&payload).context("the payload is not a pricemesh message")?;
    Ok(emit(serde_json::to_string_pretty(&message)?)?)
}

async fn run_against(node: &Node, command: Command, json: bool) -> anyhow::Result<()> {
    let now = mesh_types::chrono::Utc::now();
    match command {
        Command::Prices { asset: None } => {
            let data = node.get("/api/mesh/prices").await?;
            if json {
                return emit_json(&data);
            }
            let prices: PriceMap = client::parse(data, "prices")?;
            if prices.is_empty() {
                return Ok(emit("no prices cached yet")?);
            }
            Ok(emit(render::price_table(prices.values(), now))?)
        }
        Command::Prices { asset: Some(asset) } => {
            let data = node.get(&format!("/api/mesh/prices/{asset}")).await?;
            if json {
                return emit_json(&data);
            }
            let price: CachedPriceData = client::parse(data, "price")?;
            Ok(emit(render::price_table([&price], now))?)
        }
        Command::Status => {
            let data = node.get("/api/mesh/network/status").await?;
            if json {
                return emit_json(&data);
            }
            let status: NetworkStatus = client::parse(data, "network status")?;
            Ok(emit(render::network_status(&status, now))?)
        }
        Command::Watch { assets, also } => watch::run(node, &also, &assets, json).await,
        Command::Provider { action } => provider(node, action, json, now).await,
        Command::Decode { payload_hex } => decode(&payload_hex),
    }
}

async fn provider(
    node: &Node,
    action: ProviderCommand,
    json: bool,
    now: mesh_types::Timestamp,
) -> anyhow::Result<()> {
    let (data, key) = match action {
        ProviderCommand::Status => {
            let data = node.get("/api/mesh/provider/status").await?;
            if json {
                return emit_json(&data);
            }
            let status: ProviderStatus = client::parse(data, "provider status")?;
            return Ok(emit(render::provider_status(&status, now))?);
        }
        ProviderCommand::Enable { api_key, admin } => {
            anyhow::ensure!(!api_key.expose().trim().is_empty(), "the Birdeye API key is empty");
            let body = serde_json::json!({ "api_key": api_key.expose() });
            let answer = node.post("/api/mesh/provider/enable", Some(&body), admin.token.as_ref()).await;
            (answer, Some(api_key))
        }
        ProviderCommand::Disable { admin } => {
            (node.post("/api/mesh/provider/disable", None, admin.token.as_ref()).await, None)
        }
    };
    // Should a node ever echo the key in an error, it still never reaches the terminal.
    let data = data.map_err(|err| match &key {
        Some(key) => anyhow::anyhow!(redact(&format!("{err:#}"), key.expose())),
        None => err,
    })?;
    if json {
        return emit_json(&data);
    }
    let state: ProviderState = client::parse(data, "provider")?;
    let verb = if state.enabled { "enabled" } else { "disabled" };
    Ok(emit(format_args!("provider mode {verb} on node {}", state.node_id))?)
}

fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() { text.to_owned() } else { text.replace(secret, "***") }
}
