//! `wss://` cloud endpoints over real TLS, end to end: daemon A dials daemon B's
//! `/v1/sync` through a TLS-terminating proxy whose certificate a private CA signed,
//! made at test time with rcgen. With `cloud.ca_file` A connects and its document
//! reaches B; without it, A's status says the certificate is not trusted. A `ca_file`
//! that cannot be used stops the daemon at startup with one line naming the file.
//!
//! Everything runs on 127.0.0.1 with mDNS off. Timeouts are hang guards only; the tests
//! poll for the state they expect.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/http.rs"]
mod http;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use daemon::{Daemon, command, eventually, run_expecting_failure};
use serde_json::{Value, json};

/// Where every daemon here listens for libp2p: an OS-chosen loopback port.
const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

/// `peerdoc run` on loopback ports chosen by the OS (for daemons expected to fail).
fn loopback_command(data_dir: &Path, home: &Path) -> Command {
    let mut cmd = command(data_dir, home);
    cmd.args(["--api-listen", "127.0.0.1:0"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
    cmd
}

/// What these tests read off a daemon.
trait DaemonExt {
    fn api_addr(&self) -> SocketAddr;
    fn token(&self) -> &str;
    /// The first cloud endpoint's report in `/v1/status`.
    fn cloud_endpoint(&self) -> Value;
}

impl DaemonExt for Daemon {
    fn api_addr(&self) -> SocketAddr {
        let base = self.client.base.trim_start_matches("http://");
        base.parse().expect("API address")
    }

    fn token(&self) -> &str {
        self.client.token.as_deref().expect("token")
    }

    fn cloud_endpoint(&self) -> Value {
        self.client.get("/v1/status?docs=false").ok(200)["cloud"][0].clone()
    }
}

/// A private CA, written as PEM to `ca_file`, and a server certificate it signed for
/// 127.0.0.1 and localhost.
fn private_ca(ca_file: &Path) -> Arc<rustls::ServerConfig> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "peerdoc test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let server_key = KeyPair::generate().expect("server key");
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    std::fs::write(ca_file, ca.pem()).expect("write ca.pem");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![server.der().clone()], key)
        .expect("server config");
    Arc::new(config)
}

/// A TLS-terminating proxy on 127.0.0.1: TLS in, plain TCP to `upstream`, bytes copied
/// both ways. It lives as long as this value (its runtime).
struct TlsProxy {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl TlsProxy {
    fn start(config: Arc<rustls::ServerConfig>, upstream: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        runtime.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate ends here.
                    let Ok(mut client) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self {
            port,
            _runtime: runtime,
        }
    }
}

#[test]
fn a_document_reaches_a_sync_server_behind_a_private_ca_over_wss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_file = dir.path().join("ca.pem");
    let server_config = private_ca(&ca_file);

    // B is the "cloud": its /v1/sync behind TLS. A knows B only by that URL.
    let b = Daemon::start("B", &dir.path().join("b"), LOOPBACK, &[]);
    let proxy = TlsProxy::start(server_config, b.api_addr());
    let url = format!("wss://127.0.0.1:{}/v1/sync?token={}", proxy.port, b.token());
    let set_ca = format!("cloud.ca_file={}", ca_file.display());
    let a = Daemon::start(
        "A",
        &dir.path().join("a"),
        LOOPBACK,
        &["--cloud", &url, "--set", &set_ca],
    );

    let endpoint = eventually("A's wss endpoint to connect", || {
        let endpoint = a.cloud_endpoint();
        (endpoint["connected"] == true).then_some(endpoint)
    });
    assert_eq!(endpoint["kind"], "sync_server", "{endpoint}");
    assert_eq!(endpoint["breaker"]["state"], "closed", "{endpoint}");

    let id = a.client.create(json!({"venue": "hall 3", "guests": 80}));
    let on_b = eventually("A's document on B", || {
        let answer = b.client.get(&format!("/v1/docs/{id}"));
        (answer.status == 200).then(|| answer.json()["content"].clone())
    });
    assert_eq!(on_b, json!({"venue": "hall 3", "guests": 80}));
    // Still the one connection, never a failure on the way.
    let endpoint = a.cloud_endpoint();
    assert_eq!(endpoint["connected"], true, "{endpoint}");
    assert_eq!(endpoint["failures_total"], 0, "{endpoint}");

    // The same proxy, without the CA: the certificate is refused, in words.
    let c = Daemon::start("C", &dir.path().join("c"), LOOPBACK, &["--cloud", &url]);
    let endpoint = eventually("C's attempt to fail", || {
        let endpoint = c.cloud_endpoint();
        endpoint["last_error"].is_string().then_some(endpoint)
    });
    assert_eq!(endpoint["connected"], false, "{endpoint}");
    let error = endpoint["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("not signed by a CA this daemon trusts")
            && error.contains("UnknownIssuer")
            && error.contains("cloud.ca_file"),
        "{error}"
    );
    assert_eq!(
        c.client.get(&format!("/v1/docs/{id}")).status,
        404,
        "C has no path to the document"
    );
}

#[test]
fn a_ca_file_that_cannot_be_used_stops_startup_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("a");
    let endpoint = "wss://127.0.0.1:9/v1/sync";

    // From the config file: a file that does not exist.
    let missing = dir.path().join("no-such-ca.pem");
    let config = dir.path().join("peerdoc.toml");
    std::fs::write(
        &config,
        format!(
            "[cloud]\nendpoints = [{endpoint:?}]\nca_file = {:?}\n",
            missing.display().to_string()
        ),
    )
    .expect("write config");
    let line = run_expecting_failure(
        loopback_command(&data, dir.path())
            .arg("--config")
            .arg(&config),
    );
    assert!(
        line.contains("cloud.ca_file") && line.contains(&missing.display().to_string()),
        "{line}"
    );
    assert!(!data.join("api.addr").exists(), "the daemon never started");

    // From the environment: a PEM file with a key and no certificate.
    let key_only = dir.path().join("key.pem");
    let key = rcgen::KeyPair::generate().expect("key");
    std::fs::write(&key_only, key.serialize_pem()).expect("write key.pem");
    let line = run_expecting_failure(
        loopback_command(&data, dir.path())
            .args(["--cloud", endpoint])
            .env("PEERDOC_CLOUD_CA_FILE", &key_only),
    );
    assert!(
        line.contains(&key_only.display().to_string()) && line.contains("no certificate"),
        "{line}"
    );
}
