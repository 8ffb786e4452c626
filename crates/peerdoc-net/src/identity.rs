//! The device's persistent libp2p identity.

use std::{
    fs,
    io::{self, Write},
    path::Path,
};

use libp2p::identity::Keypair;

use crate::NetError;

/// Loads the Ed25519 keypair stored at `path`, or creates one there if the file does not
/// exist.
///
/// The file holds libp2p's protobuf encoding of the keypair and is created with mode
/// 0600 on unix (written to a temporary file first, then renamed, so a crash never leaves
/// half a key). A file that exists but does not decode to an Ed25519 keypair is an error,
/// never a reason to make a new identity: peers, allowlists and persisted sync state all
/// know this device by its peer id.
pub fn load_or_create_identity(path: &Path) -> Result<Keypair, NetError> {
    let io_err = |source| NetError::IdentityIo {
        path: path.to_owned(),
        source,
    };
    match fs::read(path) {
        Ok(bytes) => decode(path, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes =
                keypair
                    .to_protobuf_encoding()
                    .map_err(|e| NetError::IdentityMalformed {
                        path: path.to_owned(),
                        reason: e.to_string(),
                    })?;
            write_private(path, &bytes).map_err(io_err)?;
            tracing::info!(path = %path.display(), peer = %keypair.public().to_peer_id(), "created a new identity");
            Ok(keypair)
        }
        Err(e) => Err(io_err(e)),
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Keypair, NetError> {
    let malformed = |reason: String| NetError::IdentityMalformed {
        path: path.to_owned(),
        reason,
    };
    let keypair = Keypair::from_protobuf_encoding(bytes).map_err(|e| malformed(e.to_string()))?;
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(malformed(format!(
            "expected an Ed25519 key, found {:?}",
            keypair.key_type()
        )));
    }
    Ok(keypair)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)?;
    }
    // A name of its own, created new: a stale temp file (left by a crash, perhaps with a
    // looser mode) is never reused, so the key is never written into a readable file.
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = Path::new(&tmp_name);
    let _ = fs::remove_file(tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = (|| {
        let mut file = options.open(tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "peerdoc-net-identity-{name}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn creates_then_reloads_the_same_identity() {
        let dir = scratch_dir("reload");
        let path = dir.join("identity.key");
        let first = load_or_create_identity(&path).unwrap();
        let second = load_or_create_identity(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), second.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn malformed_file_is_an_error_not_a_new_identity() {
        let dir = scratch_dir("malformed");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("identity.key");
        fs::write(&path, b"definitely not a protobuf keypair").unwrap();
        let err = load_or_create_identity(&path).unwrap_err();
        assert!(matches!(err, NetError::IdentityMalformed { .. }), "{err}");
        assert_eq!(
            fs::read(&path).unwrap(),
            b"definitely not a protobuf keypair"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
