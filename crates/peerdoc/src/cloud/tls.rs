//! TLS for `wss://` cloud endpoints: which server certificates are trusted
//! ([`TlsTrust`]: the Mozilla roots plus `cloud.ca_file`), and a failed handshake in
//! words a user can act on.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio_tungstenite::tungstenite;

/// Which server certificates `wss://` endpoints accept: rustls with the Mozilla root
/// store (`webpki-roots`), plus the CAs of `cloud.ca_file` if one is set. Built once per
/// daemon and shared by every dialer (cheap to clone).
///
/// The crypto provider is named (aws-lc-rs, the one libp2p already builds) rather than
/// taken from the process default, which panics when a build enables two.
#[derive(Clone)]
pub struct TlsTrust {
    config: Arc<rustls::ClientConfig>,
    extra_cas: usize,
}

impl fmt::Debug for TlsTrust {
    // The config's own Debug would list every root.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTrust")
            .field("webpki_roots", &webpki_roots::TLS_SERVER_ROOTS.len())
            .field("extra_cas", &self.extra_cas)
            .finish()
    }
}

impl TlsTrust {
    /// The Mozilla roots only.
    pub fn webpki_roots() -> Result<Self, String> {
        Self::with_extra_cas(Vec::new())
    }

    /// The Mozilla roots and every certificate in the PEM file `ca_file`. An unreadable
    /// file, a malformed PEM block, a certificate rustls cannot use as a trust anchor, or
    /// a file with no `CERTIFICATE` block is an error saying which (the caller names the
    /// file).
    pub fn with_ca_file(ca_file: &Path) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read it: {e}"))?;
        let cas = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a PEM file: {e}"))?;
        if cas.is_empty() {
            return Err(
                "no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)"
                    .to_owned(),
            );
        }
        Self::with_extra_cas(cas)
    }

    fn with_extra_cas(
        cas: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let extra_cas = cas.len();
        for (n, ca) in cas.into_iter().enumerate() {
            roots.add(ca).map_err(|e| {
                format!(
                    "certificate {} of {extra_cas} is not a usable CA certificate ({e})",
                    n + 1
                )
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            extra_cas,
        })
    }

    /// What tokio-tungstenite needs for one attempt (ignored for `ws://` URLs).
    pub(super) fn connector(&self) -> tokio_tungstenite::Connector {
        tokio_tungstenite::Connector::Rustls(self.config.clone())
    }
}

/// A failed attempt in words for `last_error`: a TLS failure says what was wrong with
/// the server's certificate and what to do, keeping rustls' own text.
pub(super) fn describe_connect_error(error: &tungstenite::Error) -> String {
    use rustls::CertificateError as Cert;
    let tls = match error {
        tungstenite::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    let Some(tls) = tls else {
        return error.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => format!(
            "TLS: the server's certificate is not signed by a CA this daemon trusts \
             (the Mozilla roots, plus cloud.ca_file if set) ({tls})"
        ),
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => format!("TLS: the server's certificate is for another host name ({tls})"),
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            format!("TLS: the server's certificate has expired ({tls})")
        }
        rustls::Error::InvalidCertificate(_) => {
            format!("TLS: the server's certificate was rejected ({tls})")
        }
        _ => format!("TLS handshake failed ({tls})"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::{SinkExt as _, StreamExt as _};
    use tokio::sync::mpsc;

    use super::*;
    use crate::cloud::open_socket;

    /// A private CA (written as PEM into `dir`) and a server certificate it signed for
    /// 127.0.0.1 and localhost.
    struct PrivateCa {
        ca_file: std::path::PathBuf,
        server_config: Arc<rustls::ServerConfig>,
    }

    fn private_ca(dir: &Path) -> PrivateCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "peerdoc test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server.der().clone()], key)
            .unwrap();
        PrivateCa {
            ca_file,
            server_config: Arc::new(server_config),
        }
    }

    /// A `wss://` server on 127.0.0.1 that echoes binary frames; the port, and a channel
    /// that reports each accepted connection's TLS + WebSocket handshake result.
    async fn wss_echo_server(
        config: Arc<rustls::ServerConfig>,
    ) -> (u16, mpsc::UnboundedReceiver<Result<(), String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (handshakes_tx, handshakes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let handshakes_tx = handshakes_tx.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            let _ = handshakes_tx.send(Err(format!("TLS: {e}")));
                            return;
                        }
                    };
                    let mut socket = match tokio_tungstenite::accept_async(tls).await {
                        Ok(socket) => socket,
                        Err(e) => {
                            let _ = handshakes_tx.send(Err(format!("WebSocket: {e}")));
                            return;
                        }
                    };
                    let _ = handshakes_tx.send(Ok(()));
                    while let Some(Ok(message)) = socket.next().await {
                        if message.is_binary() && socket.send(message).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (port, handshakes)
    }

    #[tokio::test]
    async fn a_wss_server_signed_by_the_ca_file_is_trusted_and_a_frame_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let ca = private_ca(dir.path());
        let (port, mut handshakes) = wss_echo_server(ca.server_config).await;
        let tls = TlsTrust::with_ca_file(&ca.ca_file).unwrap();

        let mut socket = open_socket(&format!("wss://127.0.0.1:{port}/"), 1 << 20, &tls)
            .await
            .unwrap();
        assert_eq!(handshakes.recv().await, Some(Ok(())));
        assert!(matches!(
            socket.get_ref(),
            tokio_tungstenite::MaybeTlsStream::Rustls(_)
        ));
        let frame = tungstenite::Bytes::from_static(b"\x85\xa4type\xa4join");
        socket
            .send(tungstenite::Message::Binary(frame.clone()))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed, tungstenite::Message::Binary(frame));

        // The host name in the URL is checked too: `localhost` is in the certificate.
        open_socket(&format!("wss://localhost:{port}/"), 1 << 20, &tls)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn without_the_ca_file_a_private_certificate_is_refused_in_plain_words() {
        let dir = tempfile::tempdir().unwrap();
        let ca = private_ca(dir.path());
        let (port, mut handshakes) = wss_echo_server(ca.server_config).await;
        let tls = TlsTrust::webpki_roots().unwrap();

        let Err(error) = open_socket(&format!("wss://127.0.0.1:{port}/"), 1 << 20, &tls).await
        else {
            panic!("a certificate from a private CA was trusted without cloud.ca_file")
        };
        assert!(
            error.contains("not signed by a CA this daemon trusts"),
            "{error}"
        );
        assert!(error.contains("UnknownIssuer"), "{error}");
        assert!(error.contains("cloud.ca_file"), "{error}");
        // The server saw the client give up during the TLS handshake.
        let refused = handshakes.recv().await.unwrap().unwrap_err();
        assert!(refused.starts_with("TLS"), "{refused}");
    }

    /// The connector is handed over for every URL; a plain `ws://` one must not use it.
    #[tokio::test]
    async fn a_ws_url_still_connects_in_plain_text_with_a_ca_file_set() {
        let dir = tempfile::tempdir().unwrap();
        let ca = private_ca(dir.path());
        let tls = TlsTrust::with_ca_file(&ca.ca_file).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            if let Ok((tcp, _)) = listener.accept().await
                && let Ok(mut socket) = tokio_tungstenite::accept_async(tcp).await
            {
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_binary() && socket.send(message).await.is_err() {
                        break;
                    }
                }
            }
        });

        let mut socket = open_socket(&format!("ws://127.0.0.1:{port}/"), 1 << 20, &tls)
            .await
            .unwrap();
        assert!(matches!(
            socket.get_ref(),
            tokio_tungstenite::MaybeTlsStream::Plain(_)
        ));
        let frame = tungstenite::Message::Binary(tungstenite::Bytes::from_static(b"plain"));
        socket.send(frame.clone()).await.unwrap();
        assert_eq!(socket.next().await.unwrap().unwrap(), frame);
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsTrust::with_ca_file(&dir.path().join("nope.pem")).unwrap_err();
        assert!(missing.contains("cannot read it"), "{missing}");

        let key_only = dir.path().join("key.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key_only, key.serialize_pem()).unwrap();
        let empty = TlsTrust::with_ca_file(&key_only).unwrap_err();
        assert!(empty.contains("no certificate"), "{empty}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let bad = TlsTrust::with_ca_file(&garbage).unwrap_err();
        assert!(bad.contains("not a PEM file"), "{bad}");

        let not_a_certificate = dir.path().join("not-a-certificate.pem");
        std::fs::write(
            &not_a_certificate,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let bad = TlsTrust::with_ca_file(&not_a_certificate).unwrap_err();
        assert!(bad.contains("certificate 1 of 1"), "{bad}");

        let truncated = dir.path().join("truncated.pem");
        std::fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let bad = TlsTrust::with_ca_file(&truncated).unwrap_err();
        assert!(bad.contains("not a PEM file"), "{bad}");
    }
}
