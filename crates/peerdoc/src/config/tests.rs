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

#[test]
fn setting_one_net_key_keeps_the_other_net_defaults() {
    // `--no-mdns` (or any `--set net.*`) once dropped the QUIC listener: the `[net]`
    // section then came from the library's defaults, not the daemon's.
    for (flag, set) in [(true, None), (false, Some("net.ping_interval=7000"))] {
        let (global, mut run) = args(&set.into_iter().collect::<Vec<_>>());
        run.no_mdns = flag;
        let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
        assert_eq!(
            resolved.config.net.listen_addrs,
            default_listen_addrs_on(DEFAULT_LISTEN_PORT),
            "{flag} {set:?}"
        );
        assert!(resolved.origins.is_default("net.listen_addrs"));
    }
}

#[test]
fn origins_name_each_layer() {
    let (global, mut run) = args(&["node.max_docs_in_memory=5"]);
    run.no_mdns = true;
    run.profile = Some(Profile::Cloud);
    let env: HashMap<&str, &str> = [("PEERDOC_NODE_COMPACTION_THRESHOLD", "9")].into();
    let resolved =
        DaemonConfig::load_with(&global, &run, |v| env.get(v).map(|s| (*s).to_owned())).unwrap();
    let o = &resolved.origins;
    assert_eq!(o.of("node.max_docs_in_memory"), &Origin::Set);
    assert_eq!(o.of("net.enable_mdns"), &Origin::Flag("--no-mdns"));
    assert_eq!(o.of("net.listen_addrs"), &Origin::Profile(Profile::Cloud));
    assert_eq!(
        o.of("node.compaction_threshold"),
        &Origin::Env("PEERDOC_NODE_COMPACTION_THRESHOLD".into())
    );
    assert_eq!(o.of("api.listen"), &Origin::Default);
    let shown = show(&resolved.config, o);
    let mdns = shown.iter().find(|k| k.key == "net.enable_mdns").unwrap();
    assert_eq!(
        (mdns.value.as_str(), mdns.origin.to_string()),
        ("false", "flag --no-mdns".into())
    );
}

#[test]
fn peer_addresses_take_ip_and_port_and_bad_ones_name_themselves() {
    let (global, mut run) = args(&[]);
    run.peers = vec!["127.0.0.1:4101".into(), "/ip4/198.18.0.2/tcp/7410".into()];
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    let peers: Vec<String> = resolved
        .config
        .net
        .peers
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        peers,
        ["/ip4/127.0.0.1/tcp/4101", "/ip4/198.18.0.2/tcp/7410"]
    );
    run.peers = vec!["tablet.local".into()];
    let error = DaemonConfig::load_with(&global, &run, |_| None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"tablet.local\" is not an address"),
        "{error}"
    );
    assert!(error.contains("flag --peer"), "{error}");
    let env: HashMap<&str, &str> = [("PEERDOC_NET_PEERS", "nope")].into();
    let (global, run) = args(&[]);
    let error = DaemonConfig::load_with(&global, &run, |v| env.get(v).map(|s| (*s).to_owned()))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("PEERDOC_NET_PEERS") && error.contains("\"nope\""),
        "{error}"
    );
}

#[test]
fn a_leading_tilde_is_the_home_directory() {
    let (mut global, mut run) = args(&[]);
    global.data_dir = Some("~/peerdoc-data".into());
    run.log_file = Some("~/Library/Logs/peerdoc/peerdoc.log".into());
    let env: HashMap<&str, &str> = [("HOME", "/home/sam")].into();
    let resolved =
        DaemonConfig::load_with(&global, &run, |v| env.get(v).map(|s| (*s).to_owned())).unwrap();
    assert_eq!(resolved.data_dir, PathBuf::from("/home/sam/peerdoc-data"));
    assert_eq!(
        resolved.config.log_file,
        Some(PathBuf::from("/home/sam/Library/Logs/peerdoc/peerdoc.log"))
    );
    assert_eq!(
        expand_home(Path::new("/abs/~x"), Some("/h")),
        PathBuf::from("/abs/~x")
    );
}

/// The service files in `contrib/` start the daemon with flags that exist.
#[test]
fn the_contrib_service_files_use_real_flags() {
    use clap::Parser as _;
    let files = [
        include_str!("../../../../contrib/systemd/peerdoc.service"),
        include_str!("../../../../contrib/systemd/peerdoc-system.service"),
    ];
    for file in files {
        let exec = file
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .expect("ExecStart");
        let cli = crate::cli::args::Cli::try_parse_from(exec.split_whitespace());
        assert!(cli.is_ok(), "{exec}: {}", cli.unwrap_err());
    }
    let plist = include_str!("../../../../contrib/launchd/org.peerdoc.peerdoc.plist");
    let args: Vec<&str> = plist
        .split("<key>ProgramArguments</key>")
        .nth(1)
        .and_then(|rest| rest.split("</array>").next())
        .expect("ProgramArguments")
        .split("<string>")
        .skip(1)
        .filter_map(|s| s.split("</string>").next())
        .collect();
    assert_eq!(args[..2], ["/usr/local/bin/peerdoc", "run"]);
    let cli = crate::cli::args::Cli::try_parse_from(&args);
    assert!(cli.is_ok(), "{args:?}: {}", cli.unwrap_err());
}

#[test]
fn the_sync_budget_reads_with_its_unit_from_flags_and_environment() {
    let (global, run) = args(&["net.max_rate=\"2mbit\""]);
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(resolved.config.net.max_rate, Some(250_000));
    let (global, run) = args(&[]);
    let unlimited = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(unlimited.config.net.max_rate, None);
    for (text, rate) in [("500kbit", 62_500), ("4096", 4096)] {
        let env: HashMap<&str, &str> = [("PEERDOC_NET_MAX_RATE", text)].into();
        let resolved =
            DaemonConfig::load_with(&global, &run, |v| env.get(v).map(|s| (*s).to_owned()))
                .unwrap();
        assert_eq!(resolved.config.net.max_rate, Some(rate), "{text}");
    }
    let env: HashMap<&str, &str> = [("PEERDOC_NET_MAX_RATE", "fast")].into();
    let error = DaemonConfig::load_with(&global, &run, |v| env.get(v).map(|s| (*s).to_owned()))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("PEERDOC_NET_MAX_RATE") && error.contains("not a rate"),
        "{error}"
    );
}

#[test]
fn durability_is_process_on_devices_power_in_the_cloud_and_a_bad_one_names_itself() {
    let gate = || TransportGate::default();
    let (global, run) = args(&[]);
    let device = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(device.config.storage.durability, DurabilityMode::Process);
    assert_eq!(
        device.node_config(gate()).unwrap().durability,
        peerdoc_node::Durability::Process
    );

    let (global, mut run) = args(&["team_key_file=\"/tmp/k\""]);
    run.profile = Some(Profile::Cloud);
    let cloud = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(cloud.config.storage.durability, DurabilityMode::Power);

    let (global, run) = args(&["storage.durability=\"power\""]);
    let set = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    assert_eq!(set.config.storage.durability, DurabilityMode::Power);
    let (global, run) = args(&[]);
    let env: HashMap<&str, &str> = [("PEERDOC_STORAGE_DURABILITY", "power")].into();
    let from_env =
        DaemonConfig::load_with(&global, &run, |v| env.get(v).map(|s| (*s).to_owned())).unwrap();
    assert_eq!(from_env.config.storage.durability, DurabilityMode::Power);

    let (global, run) = args(&["storage.durability=\"disk\""]);
    let error = DaemonConfig::load_with(&global, &run, |_| None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("storage.durability"), "{error}");
}

#[test]
fn the_postgres_schema_and_pool_come_from_storage_and_need_a_store() {
    let (global, mut run) = args(&["storage.schema=\"team_wedding\"", "storage.pool_size=2"]);
    run.store = Some("host=/run/postgresql dbname=cloud user=peerdoc".into());
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    let store = resolved.postgres().unwrap().expect("a PostgreSQL store");
    let shown = format!("{:?}", store.0);
    assert!(shown.contains("schema: \"team_wedding\""), "{shown}");
    assert!(shown.contains("pool_size: 2"), "{shown}");

    // From the environment too, as every key.
    let (global, mut run) = args(&[]);
    run.store = Some("host=/run/postgresql dbname=cloud user=peerdoc".into());
    let env: HashMap<&str, &str> = [("PEERDOC_STORAGE_SCHEMA", "team_gala")].into();
    let resolved =
        DaemonConfig::load_with(&global, &run, |v| env.get(v).map(|s| (*s).to_owned())).unwrap();
    let shown = format!("{:?}", resolved.postgres().unwrap().unwrap().0);
    assert!(shown.contains("schema: \"team_gala\""), "{shown}");

    // A schema PostgreSQL would need quoting for, or a pool of 0: refused up front.
    for bad in ["storage.schema=\"Team-1\"", "storage.pool_size=0"] {
        let (global, mut run) = args(&[bad]);
        run.store = Some("host=/run/postgresql dbname=cloud user=peerdoc".into());
        let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
        let error = resolved.postgres().unwrap_err().to_string();
        assert!(
            error.contains("schema") || error.contains("pool_size"),
            "{bad}: {error}"
        );
    }
    // Without --store they would be ignored: refused instead.
    let (global, run) = args(&["storage.schema=\"team_wedding\""]);
    let resolved = DaemonConfig::load_with(&global, &run, |_| None).unwrap();
    let error = resolved.postgres().unwrap_err().to_string();
    assert!(error.contains("give --store"), "{error}");
}
