//! `mesh-node check-config`: validates the settings `run` would start with (flags, environment,
//! the config file) without starting anything, and with `--print` shows each effective setting
//! with where it came from, secrets redacted. Operators run it before a restart.

use std::path::PathBuf;

use anyhow::Context;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args};
use mesh_node::NodeSettings;
use mesh_node::SettingArgs;
use mesh_types::{KEY_FILE_NAME, NodeIdentity};

/// Settings of `check-config`: those of `run`, and `--print`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// A TOML file of settings (keys as the long flags, with `_` for `-`).
    #[arg(long, short, env = "MESH_CONFIG")]
    config: Option<PathBuf>,
    /// Print every effective setting with its source (flag, env, file, default), secrets
    /// redacted.
    #[arg(long)]
    print: bool,
    #[command(flatten)]
    settings: SettingArgs,
}

/// Settings whose values are never printed.
const SECRETS: [&str; 2] = ["birdeye_api_key", "admin_token"];

/// Settings that are URLs and may carry a password.
const URLS: [&str; 3] = ["redis_url", "database_url", "nats_url"];

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    const fn as_str(self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Env => "env",
            Self::File => "file",
            Self::Default => "default",
        }
    }
}

/// Checks the settings; prints them when asked. `matches` are the subcommand's, for the
/// source of each value.
pub(crate) fn check_config(args: CheckArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => SettingArgs::from_file(path)?,
        None => SettingArgs::default(),
    };
    let file_keys = present_keys(&file);
    let settings = args.settings.resolve(file)?;
    settings.service_config().context("the settings do not make a valid node")?;
    check_key(&settings)?;
    if args.print {
        print!("{}", render(&settings, |id| source_of(matches, &file_keys, id)));
    }
    eprintln!(
        "mesh-node: the settings are valid{}",
        args.config.as_ref().map(|path| format!(" (with {})", path.display())).unwrap_or_default()
    );
    Ok(())
}

/// A node key that exists must load; a missing one is created at the first start.
fn check_key(settings: &NodeSettings) -> anyhow::Result<()> {
    let path = settings.data_dir.join(KEY_FILE_NAME);
    if path.exists() {
        NodeIdentity::load(&path)
            .with_context(|| format!("the node key {} cannot be used", path.display()))?;
    }
    Ok(())
}

/// The settings a file gives.
fn present_keys(file: &SettingArgs) -> Vec<String> {
    match toml::Value::try_from(file) {
        Ok(toml::Value::Table(table)) => table.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn source_of(matches: &ArgMatches, file_keys: &[String], id: &str) -> Source {
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => Source::Flag,
        Some(ValueSource::EnvVariable) => Source::Env,
        _ if file_keys.iter().any(|key| key == id) => Source::File,
        _ => Source::Default,
    }
}

/// The effective settings as TOML lines (`key = value  # source, ENV_NAME`), in the order of
/// `mesh-node run --help`; unset ones are commented out.
pub(crate) fn render(settings: &NodeSettings, source: impl Fn(&str) -> Source) -> String {
    let values = match toml::Value::try_from(SettingArgs::from_settings(settings)) {
        Ok(toml::Value::Table(table)) => table,
        _ => toml::Table::new(),
    };
    let command = SettingArgs::augment_args(clap::Command::new("settings"));
    let mut out = String::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let env = arg.get_env().map(|env| env.to_string_lossy().into_owned()).unwrap_or_default();
        let origin = source(id);
        let line = match values.get(id) {
            Some(value) => format!("{id} = {}", shown(id, value)),
            None => format!("# {id} (unset)"),
        };
        out.push_str(&format!("{line:<60} # {}, {env}\n", origin.as_str()));
    }
    out
}

/// A value as printed: secrets replaced, passwords in URLs hidden.
fn shown(id: &str, value: &toml::Value) -> String {
    if SECRETS.contains(&id) {
        return "\"<redacted>\"".to_owned();
    }
    match value {
        toml::Value::String(text) if URLS.contains(&id) => format!("{:?}", redact_password(text)),
        other => other.to_string(),
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:<redacted>@host/…`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) =
        rest.split_once('/').map_or((rest, None), |(authority, path)| (authority, Some(path)));
    let Some((userinfo, host)) = authority.rsplit_once('@') else { return url.to_owned() };
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let hidden = if userinfo.contains(':') { format!("{user}:<redacted>") } else { "<redacted>".to_owned() };
    match path {
        Some(path) => format!("{scheme}://{hidden}@{host}/{path}"),
        None => format!("{scheme}://{hidden}@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden_and_the_rest_kept() {
        assert_eq!(redact_password("redis://:hunter2@cache:6379/0"), "redis://:<redacted>@cache:6379/0");
        assert_eq!(
            redact_password("postgres://app:s3cr%40t@db.internal/prices"),
            "postgres://app:<redacted>@db.internal/prices"
        );
        assert_eq!(redact_password("nats://token@127.0.0.1:4222"), "nats://<redacted>@127.0.0.1:4222");
        assert_eq!(redact_password("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn secrets_never_reach_the_printout_and_every_setting_is_listed() {
        let settings = NodeSettings {
            birdeye_api_key: Some("bird-key-123".to_owned()),
            admin_token: Some("admin-token-456".to_owned()),
            database_url: Some("postgres://app:pw789@db/prices".to_owned()),
            ..NodeSettings::default()
        };
        let printed = render(&settings, |id| if id == "min_peers" { Source::Env } else { Source::Default });
        for secret in ["bird-key-123", "admin-token-456", "pw789"] {
            assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
        }
        assert!(printed.contains("min_peers = 3"), "{printed}");
        assert!(
            printed
                .lines()
                .any(|line| line.starts_with("min_peers")
                    && line.ends_with("# env, MESH_MIN_PEER_CONNECTIONS"))
        );
        let command = SettingArgs::augment_args(clap::Command::new("settings"));
        assert_eq!(printed.lines().count(), command.get_arguments().count(), "one line per setting");
    }
}
