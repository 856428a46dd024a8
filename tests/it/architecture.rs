//! The architecture invariants of ARCHITECTURE.md, checked on the workspace's own manifests
//! (`cargo metadata`), so a change that breaks one fails here instead of drifting from the
//! prose:
//!
//! - every crate has a layer, and dependencies point only to lower layers (storage crates,
//!   which share a layer, therefore never depend on each other);
//! - `mesh-types` and `mesh-gossip` declare no database client and no network library, and
//!   `mesh-types` asks tokio for tasks, timers and channels only (no sockets, files or
//!   processes);
//! - the binaries link only crates the library exposes (never the test tooling).
//!
//! The rules are data ([`LAYERS`], [`NO_IO`]), and [`violations`] is a function of the
//! manifests, so the unit tests below show each rule failing on a made-up manifest: adding
//! `mesh-dedup = { workspace = true }` to `mesh-price-cache` would read
//! "mesh-price-cache (layer 2) depends on mesh-dedup (layer 2)".

use serde_json::Value;

/// Each workspace crate's layer: a crate may depend only on crates of lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("mesh-types", 0),
    // What the storage crates share: the write-behind engine, backend health, errors.
    ("mesh-storage-core", 1),
    // Storage: one trait and its backends each.
    ("mesh-dedup", 2),
    ("mesh-price-cache", 2),
    ("mesh-coordination", 2),
    ("mesh-peer-store", 2),
    // Protocol.
    ("mesh-transport", 3),
    ("mesh-gossip", 3),
    ("mesh-provider", 3),
    ("mesh-service", 4),
    // Faces of a node, and programs built on nodes.
    ("mesh-api", 5),
    ("mesh-nats", 5),
    ("mesh-client", 5),
    ("mesh-sim", 5),
    // The facade and the binaries.
    ("pricemesh", 6),
    ("mesh-node", 6),
    ("meshctl", 6),
    // Test tooling, above everything: only dev-dependencies may point at it.
    ("mesh-testkit", 7),
    ("mesh-chaos", 8),
];

/// Crates that must stay pure: no database client, no network library.
const NO_IO: &[&str] = &["mesh-types", "mesh-gossip"];

/// Database clients and network libraries.
const IO_CRATES: &[&str] = &[
    "sqlx",
    "redis",
    "deadpool-redis",
    "async-nats",
    "hyper",
    "hyper-util",
    "reqwest",
    "axum",
    "socket2",
    "tokio-tungstenite",
    "snow",
    "pnet_datalink",
];

/// What `mesh-types` may ask of tokio.
const TYPES_TOKIO: &[&str] = &["rt", "sync", "time", "macros"];

/// The binaries, and the crates of the workspace they must not link (test tooling).
const BINARIES: &[&str] = &["mesh-node", "meshctl"];
const TOOLING: &[&str] = &["mesh-testkit", "mesh-chaos"];

fn layer(name: &str) -> Option<u8> {
    LAYERS.iter().find(|(crate_name, _)| *crate_name == name).map(|(_, layer)| *layer)
}

/// Every broken rule in `metadata` (the JSON of `cargo metadata --no-deps`).
fn violations(metadata: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let members: Vec<&str> = packages.iter().filter_map(|package| package["name"].as_str()).collect();
    for package in &packages {
        let name = package["name"].as_str().unwrap_or_default();
        let Some(own) = layer(name) else {
            found.push(format!("{name} has no layer: place it in LAYERS and in ARCHITECTURE.md's code map"));
            continue;
        };
        let dependencies = package["dependencies"].as_array().cloned().unwrap_or_default();
        for dependency in &dependencies {
            let target = dependency["name"].as_str().unwrap_or_default();
            // Dev-dependencies are tests' business; normal and build ones are the crate's.
            if dependency["kind"].as_str() == Some("dev") {
                continue;
            }
            if members.contains(&target) {
                match layer(target) {
                    Some(theirs) if theirs < own => {}
                    Some(theirs) => {
                        found.push(format!("{name} (layer {own}) depends on {target} (layer {theirs})"));
                    }
                    None => {}
                }
                if BINARIES.contains(&name) && TOOLING.contains(&target) {
                    found.push(format!("the binary {name} links the test tooling {target}"));
                }
            }
            if NO_IO.contains(&name) && IO_CRATES.contains(&target) {
                found.push(format!("{name} must do no I/O but depends on {target}"));
            }
            if name == "mesh-types" && target == "tokio" {
                let features = dependency["features"].as_array().cloned().unwrap_or_default();
                for feature in features.iter().filter_map(Value::as_str) {
                    if !TYPES_TOKIO.contains(&feature) {
                        found.push(format!(
                            "mesh-types asks tokio for `{feature}`; it may ask only {TYPES_TOKIO:?}"
                        ));
                    }
                }
            }
        }
    }
    found
}

fn workspace_metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--manifest-path", manifest])
        .output()
        .expect("run cargo metadata");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata writes JSON")
}

#[test]
fn the_workspace_keeps_its_architecture_invariants() {
    let broken = violations(&workspace_metadata());
    assert!(broken.is_empty(), "architecture invariants broken:\n{}", broken.join("\n"));
}

/// A dependency of a made-up manifest: its name, its kind (`None` for normal, `Some("dev")`),
/// and the features it asks for.
type Dependency<'a> = (&'a str, Option<&'a str>, &'a [&'a str]);

/// A manifest of packages, each a name and its dependencies.
fn manifest(packages: &[(&str, &[Dependency<'_>])]) -> Value {
    let packages: Vec<Value> = packages
        .iter()
        .map(|(name, dependencies)| {
            let dependencies: Vec<Value> = dependencies
                .iter()
                .map(|(target, kind, features)| serde_json::json!({"name": target, "kind": kind, "features": features}))
                .collect();
            serde_json::json!({"name": name, "dependencies": dependencies})
        })
        .collect();
    serde_json::json!({ "packages": packages })
}

#[test]
fn a_storage_crate_depending_on_another_is_refused() {
    let broken = violations(&manifest(&[
        ("mesh-dedup", &[]),
        ("mesh-price-cache", &[("mesh-dedup", None, &[]), ("mesh-types", None, &[])]),
        ("mesh-types", &[]),
    ]));
    assert_eq!(broken, ["mesh-price-cache (layer 2) depends on mesh-dedup (layer 2)"]);
}

#[test]
fn an_arrow_pointing_up_is_refused_but_a_dev_dependency_is_not() {
    let broken = violations(&manifest(&[
        ("mesh-types", &[("mesh-service", None, &[])]),
        ("mesh-service", &[("mesh-testkit", Some("dev"), &[])]),
        ("mesh-testkit", &[]),
    ]));
    assert_eq!(broken, ["mesh-types (layer 0) depends on mesh-service (layer 4)"]);
}

#[test]
fn io_in_the_pure_crates_is_refused() {
    let broken = violations(&manifest(&[
        ("mesh-types", &[("tokio", None, &["rt", "net"]), ("sqlx", None, &[])]),
        ("mesh-gossip", &[("reqwest", None, &[])]),
    ]));
    assert_eq!(
        broken,
        [
            r#"mesh-types asks tokio for `net`; it may ask only ["rt", "sync", "time", "macros"]"#,
            "mesh-types must do no I/O but depends on sqlx",
            "mesh-gossip must do no I/O but depends on reqwest",
        ]
    );
}

#[test]
fn a_binary_linking_test_tooling_and_an_unplaced_crate_are_refused() {
    let broken = violations(&manifest(&[
        ("mesh-node", &[("mesh-testkit", None, &[])]),
        ("mesh-testkit", &[]),
        ("mesh-newcomer", &[]),
    ]));
    assert_eq!(
        broken,
        [
            "mesh-node (layer 6) depends on mesh-testkit (layer 7)",
            "the binary mesh-node links the test tooling mesh-testkit",
            "mesh-newcomer has no layer: place it in LAYERS and in ARCHITECTURE.md's code map",
        ]
    );
}
