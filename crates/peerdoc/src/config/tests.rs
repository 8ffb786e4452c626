//! Tests of the layered daemon configuration.

use std::collections::HashMap;

use super::*;

fn args(set: &[&str]) -> (GlobalArgs, RunArgs) {
    let global = GlobalArgs {
        data_dir: Some("/tmp/x".into()),
        api_url: None,
        token: None,
        json: false,
    };
    let run = RunArgs {
        set: set.iter().map(|s| (*s).to_owned()).collect(),
        ..RunArgs::default()
    };
    (global, run)
}

#[test]
fn defaults_bind_loopback_with_mdns_on() {
    let (global, run) = args(&[]);
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(resolved.api_listen.to_string(), DEFAULT_API_LISTEN);
    assert!(resolved.config.net.enable_mdns);
    assert_eq!(resolved.data_dir, PathBuf::from("/tmp/x"));
}

#[test]
fn every_key_is_documented_in_daemon_md() {
    // The `[node]` keys come straight from `NodeConfig`'s serde form, so a field added
    // there shows up here; this keeps docs/daemon.md listing it.
    let doc = include_str!("../../../../docs/daemon.md");
    let undocumented: Vec<String> = default_keys()
        .into_iter()
        .map(|(key, _)| key)
        .filter(|key| !doc.contains(&format!("| `{key}` |")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/daemon.md: {undocumented:?}"
    );
}

#[test]
fn the_cloud_profile_changes_defaults_but_not_explicit_settings() {
    let (global, mut run) = args(&["team_key_file=\"/tmp/k\""]);
    run.profile = Some(Profile::Cloud);
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(resolved.config.profile, Profile::Cloud);
    assert!(!resolved.config.net.enable_mdns);
    assert_eq!(
        resolved.config.net.listen_addrs,
        vec!["/ip4/0.0.0.0/tcp/4001".parse::<Multiaddr>().unwrap()]
    );
    assert_eq!(resolved.config.node.max_docs_in_memory, 10_000);
    assert!(resolved.config.node.cloud);
    // The API stays on loopback.
    assert_eq!(resolved.api_listen.to_string(), DEFAULT_API_LISTEN);

    // Explicit settings win, from any layer, and the profile can come from the env.
    run.profile = None;
    run.listen = vec!["/ip4/0.0.0.0/tcp/5001".into()];
    let resolved = DaemonConfig::load_with(&global, &run, |var| {
        (var == "PEERDOC_PROFILE").then(|| "cloud".to_owned())
    })
    .unwrap();
    assert_eq!(resolved.config.profile, Profile::Cloud);
    assert_eq!(
        resolved.config.net.listen_addrs,
        vec!["/ip4/0.0.0.0/tcp/5001".parse::<Multiaddr>().unwrap()]
    );
}

#[test]
fn the_cloud_profile_refuses_to_start_open_to_strangers() {
    let (global, mut run) = args(&["team.open=true"]);
    run.profile = Some(Profile::Cloud);
    let error = DaemonConfig::load_with(&global, &run, |_| None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot run open"), "{error}");
    // Without --open it starts closed: no team yet, nobody connects.
    let (global, mut run) = args(&[]);
    run.profile = Some(Profile::Cloud);
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(resolved.team_mode(), crate::team::TeamMode::Managed);
    let (global, run) = args(&["profile=\"server\""]);
    let error = DaemonConfig::load_with(&global, &run, |_| None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("server"), "{error}");
}

#[test]
fn flags_beat_env_beat_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[node]\nmax_docs_in_memory = 10\ncompaction_threshold = 7\n[api]\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let (global, mut run) = args(&["node.max_docs_in_memory=30"]);
    run.config = Some(file);
    let env: HashMap<&str, &str> = [
        ("PEERDOC_NODE_MAX_DOCS_IN_MEMORY", "20"),
        ("PEERDOC_NODE_COMPACTION_THRESHOLD", "8"),
        (
            "PEERDOC_NET_PEERS",
            "/ip4/127.0.0.1/tcp/1,/ip4/127.0.0.1/tcp/2",
        ),
    ]
    .into();
    let resolved =
        DaemonConfig::load_with(&global, &run, |v| env.get(v).map(|s| s.to_string())).unwrap();
    assert_eq!(resolved.config.node.max_docs_in_memory, 30);
    assert_eq!(resolved.config.node.compaction_threshold, 8);
    assert_eq!(resolved.config.net.peers.len(), 2);
    assert_eq!(resolved.api_listen.port(), 1);
}

#[test]
fn unknown_keys_name_the_key_and_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[node]\nmax_docs = 10\n").unwrap();
    let (global, mut run) = args(&[]);
    run.config = Some(file.clone());
    let error = DaemonConfig::load_with(&global, &run, |_| None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("max_docs"), "{error}");
    assert!(error.contains(&file.display().to_string()), "{error}");

    let (global, run) = args(&["node.nope=1"]);
    let error = DaemonConfig::load_with(&global, &run, |_| None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("--set node.nope=1") && error.contains("nope"),
        "{error}"
    );
}

#[test]
fn bad_values_are_errors() {
    let (global, run) = args(&["api.listen=nowhere"]);
    let error = DaemonConfig::load_with(&global, &run, |_| None).unwrap_err();
    assert!(error.to_string().contains("api.listen"), "{error}");
    let (global, run) = args(&["node.max_docs_in_memory=lots"]);
    assert!(DaemonConfig::load_with(&global, &run, |_| None).is_err());
}

#[test]
fn cloud_ca_file_comes_from_any_layer_and_a_bad_one_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let (global, run) = args(&[&format!("cloud.ca_file={}", missing.display())]);
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(
        resolved.config.cloud.ca_file.as_deref(),
        Some(missing.as_path())
    );
    let error = resolved.cloud_tls().unwrap_err().to_string();
    assert!(
        error.starts_with("cloud.ca_file ") && error.contains(&missing.display().to_string()),
        "{error}"
    );

    // The environment takes the path verbatim (even one that reads as TOML).
    let (global, run) = args(&[]);
    let resolved = DaemonConfig::load_with(&global, &run, |var| {
        (var == "PEERDOC_CLOUD_CA_FILE").then(|| "2024".to_owned())
    })
    .unwrap();
    assert_eq!(
        resolved.config.cloud.ca_file.as_deref(),
        Some(Path::new("2024"))
    );

    // Without it, the Mozilla roots alone.
    let (global, run) = args(&[]);
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(resolved.config.cloud.ca_file, None);
    assert!(resolved.cloud_tls().is_ok());
}

#[test]
fn every_default_key_has_an_env_var() {
    let keys = default_keys();
    assert!(keys.iter().any(|(k, _)| k == "node.max_docs_in_memory"));
    assert!(keys.iter().any(|(k, _)| k == "net.enable_mdns"));
    assert_eq!(
        env_var_for("api.max_body_bytes"),
        "PEERDOC_API_MAX_BODY_BYTES"
    );
}
