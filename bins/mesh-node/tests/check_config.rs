//! `mesh-node check-config` as an operator runs it: the real binary, settings from a flag, the
//! environment and a file, checked without starting a node.

use std::process::Command;

fn check_config(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mesh-node"));
    command.arg("check-config").args(args);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("MESH_") || name.ends_with("_URL"))
    {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let output = command.output().expect("mesh-node runs");
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).expect("UTF-8");
    (output.status.success(), text(output.stdout), text(output.stderr))
}

fn line<'a>(printed: &'a str, key: &str) -> &'a str {
    printed
        .lines()
        .find(|line| line.starts_with(&format!("{key} ")) || line.starts_with(&format!("# {key} ")))
        .unwrap_or_else(|| panic!("{key} is not printed:\n{printed}"))
}

#[test]
fn print_names_each_source_and_hides_every_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "network = \"testnet\"\nmin_peers = 2\nadmin_token = \"file-token-1\"\n").unwrap();
    let (ok, printed, stderr) = check_config(
        &["--config", file.to_str().unwrap(), "--print", "--api-addr", "127.0.0.1:9999"],
        &[
            ("MESH_MAX_PEER_CONNECTIONS", "7"),
            ("DATABASE_URL", "postgres://app:db-pass-2@db/prices"),
            ("BIRDEYE_API_KEY", "bird-key-3"),
            ("MESH_DATA_DIR", dir.path().to_str().unwrap()),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(line(&printed, "api_addr").ends_with("# flag, MESH_API_ADDR"), "{printed}");
    assert!(line(&printed, "max_peers").contains("= 7"), "{printed}");
    assert!(line(&printed, "max_peers").ends_with("# env, MESH_MAX_PEER_CONNECTIONS"), "{printed}");
    assert!(line(&printed, "min_peers").ends_with("# file, MESH_MIN_PEER_CONNECTIONS"), "{printed}");
    assert!(
        line(&printed, "sync_interval_secs").ends_with("# default, MESH_SYNC_INTERVAL_SECS"),
        "{printed}"
    );
    assert!(line(&printed, "database_url").contains("app:<redacted>@db/prices"), "{printed}");
    for secret in ["file-token-1", "db-pass-2", "bird-key-3"] {
        assert!(!printed.contains(secret) && !stderr.contains(secret), "{secret} leaked:\n{printed}{stderr}");
    }
    assert!(!dir.path().join("node.key").exists(), "checking starts nothing and creates no key");
}

#[test]
fn an_invalid_setting_fails_by_name_and_a_valid_one_passes_quietly() {
    let (ok, printed, stderr) = check_config(&["--min-peers", "99", "--network", "devnet"], &[]);
    assert!(!ok);
    assert!(printed.is_empty());
    assert!(stderr.contains("MESH_MIN_PEER_CONNECTIONS"), "{stderr}");
    let (ok, printed, stderr) = check_config(&["--network", "devnet"], &[]);
    assert!(ok, "{stderr}");
    assert!(printed.is_empty(), "only --print prints the settings");
    assert!(stderr.contains("valid"), "{stderr}");
}

#[test]
fn a_corrupt_node_key_is_found_before_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("node.key"), "not a key").unwrap();
    let (ok, _, stderr) =
        check_config(&["--network", "devnet", "--data-dir", dir.path().to_str().unwrap()], &[]);
    assert!(!ok);
    assert!(stderr.contains("node key"), "{stderr}");
}
