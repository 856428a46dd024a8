//! `mesh-node keygen` end to end: the real binary writes a private key file, prints the node
//! id, keeps the same id when run again, and refuses a key file others can read.

use std::path::Path;
use std::process::{Command, Output};

fn keygen(data_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .args(["keygen", "--data-dir"])
        .arg(data_dir)
        .env_remove("MESH_DATA_DIR")
        .output()
        .expect("run mesh-node")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("utf-8 output").trim().to_owned()
}

#[test]
fn keygen_writes_a_private_key_and_keeps_the_same_id() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("node-a");

    let first = keygen(&data_dir);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let node_id = stdout(&first);
    assert!(node_id.parse::<mesh_types::NodeId>().is_ok(), "prints a node id, got {node_id:?}");

    let key_file = data_dir.join("node.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let loaded = mesh_types::NodeIdentity::load(&key_file).unwrap();
    assert_eq!(loaded.node_id().to_string(), node_id);

    let second = keygen(&data_dir);
    assert!(second.status.success());
    assert_eq!(stdout(&second), node_id, "running keygen again keeps the identity");
}

#[cfg(unix)]
#[test]
fn keygen_refuses_a_world_readable_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    assert!(keygen(dir.path()).status.success());
    let key_file = dir.path().join("node.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();

    let refused = keygen(dir.path());
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("accessible by other users") && stderr.contains("chmod 600"), "{stderr}");
    assert!(stdout(&refused).is_empty());
}
