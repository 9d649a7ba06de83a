//! Sealing per-holder secrets (upstream OAuth tokens, API keys) at rest: AES-256-GCM under
//! `HOME/secrets.key`, with associated data that binds each sealed value to what it is for.
//!
//! The ledger may be a shared PostgreSQL database or a sled folder that ends up in a backup;
//! neither must hand anyone a usable upstream token. The key is a separate file, 0600, that
//! every replica needs a copy of (like the CA files), so a copy of the ledger alone is
//! useless. The associated data names the purpose, the upstream, the holder and the holder's
//! certificate chain: a sealed value copied onto another holder's record, or another
//! upstream's, does not open.
//!
//! Sealed text: `v1.KEYID.BASE64URL(nonce || ciphertext || tag)`, where KEYID is 16 hex digits
//! of the key's SHA-256, so a value sealed under another key says so instead of failing as
//! "corrupt".

use std::io;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::{digest, rand as lc_rand};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use zeroize::Zeroizing;

use crate::fsutil::{self, FsError};

/// The key file's name in HOME.
pub const KEY_FILE: &str = "secrets.key";

const VERSION: &str = "v1";

/// What went wrong with the key or a sealed value; messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// Group or others may read the key.
    #[error(
        "{path} has mode {mode:04o}: it unseals every stored upstream token, so group and \
         others must not access it; check it was not exposed, then run: chmod 600 {path}"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not 64 hex digits.
    #[error(
        "{0} is not a secrets key (64 hex digits expected); restore it from a replica or a backup"
    )]
    Malformed(PathBuf),
    /// A sealed value made under another key.
    #[error("sealed under key {found}, but {KEY_FILE} is key {have}: copy the right {KEY_FILE} here (every replica needs the same one)")]
    OtherKey {
        /// Key id in the value.
        found: String,
        /// Key id of the loaded key.
        have: String,
    },
    /// Not a sealed value, or it does not open with its binding (tampered, or moved to
    /// another holder or upstream).
    #[error(
        "a sealed value does not open: it was altered or belongs to another holder or upstream"
    )]
    Corrupt,
    /// The system random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// Reading or writing the key.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// The sealing key, loaded once; during a rotation it also holds the other key, so values
/// sealed under either open (each names its key).
pub struct SealKey {
    key: LessSafeKey,
    id: String,
    other: Option<Box<SealKey>>,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({})", self.id)
    }
}

/// What a sealed value is bound to: purpose, upstream, holder, and the holder's chain (the
/// CA's trust domain and, for a foreign certificate, its trust).
#[derive(Debug, Clone)]
pub struct Binding<'a> {
    /// What the value is (`access`, `refresh`, `secret`, `verifier`, `client-secret`).
    pub purpose: &'a str,
    /// The upstream's name.
    pub upstream: &'a str,
    /// The holder's name (empty for values of the upstream itself).
    pub holder: &'a str,
    /// The holder's certificate chain.
    pub chain: &'a str,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        // NUL-separated: none of the parts can contain a NUL (names are validated), so two
        // bindings never make the same bytes.
        [
            "mcp-zt seal v1",
            self.purpose,
            self.upstream,
            self.holder,
            self.chain,
        ]
        .join("\0")
        .into_bytes()
    }
}

impl SealKey {
    /// A key from 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> SealKey {
        let id = hex::encode(&digest::digest(&digest::SHA256, bytes).as_ref()[..8]);
        // 32 bytes is AES-256's key length, so this cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).unwrap_or_else(|_| unreachable!());
        SealKey {
            key: LessSafeKey::new(unbound),
            id,
            other: None,
        }
    }

    /// This key, also opening values sealed under `other` (an interrupted rotation).
    pub fn also_opening(mut self, other: SealKey) -> SealKey {
        if other.id != self.id {
            self.other = Some(Box::new(other));
        }
        self
    }

    /// A fresh random key.
    pub fn generate() -> Result<(SealKey, Zeroizing<[u8; 32]>), SecretsError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        lc_rand::fill(&mut raw[..]).map_err(|_| SecretsError::Random)?;
        Ok((SealKey::from_bytes(&raw), raw))
    }

    /// Its id (16 hex digits of its SHA-256): safe to print and log.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `plain` under `binding`.
    pub fn seal(&self, binding: &Binding<'_>, plain: &[u8]) -> Result<String, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        lc_rand::fill(&mut nonce).map_err(|_| SecretsError::Random)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(binding.aad()),
                &mut buf,
            )
            .map_err(|_| SecretsError::Corrupt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!(
            "{VERSION}.{}.{}",
            self.id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// Whether `sealed` names this key (sealed under it, not yet checked).
    pub fn sealed_by(&self, sealed: &str) -> bool {
        sealed
            .strip_prefix(VERSION)
            .and_then(|r| r.strip_prefix('.'))
            .and_then(|r| r.split('.').next())
            == Some(self.id.as_str())
    }

    /// Opens a sealed value; refuses values of another key, altered ones, and values moved
    /// to another binding.
    pub fn open(
        &self,
        binding: &Binding<'_>,
        sealed: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretsError::Corrupt);
        };
        if id != self.id {
            if let Some(other) = &self.other {
                if other.id == id {
                    return other.open(binding, sealed);
                }
            }
            return Err(SecretsError::OtherKey {
                found: id.to_string(),
                have: self.id.clone(),
            });
        }
        let raw = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretsError::Corrupt)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SecretsError::Corrupt);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretsError::Corrupt)?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(binding.aad()), &mut buf[..])
            .map_err(|_| SecretsError::Corrupt)?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }

    /// Opens a sealed value as UTF-8 text.
    pub fn open_text(
        &self,
        binding: &Binding<'_>,
        sealed: &str,
    ) -> Result<Zeroizing<String>, SecretsError> {
        let bytes = self.open(binding, sealed)?;
        String::from_utf8(bytes.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Corrupt)
    }
}

/// The key file of `home`.
pub fn key_path(home: &Path) -> PathBuf {
    home.join(KEY_FILE)
}

/// Where a rotation writes the new key before re-sealing (renamed over the key at the end).
pub fn next_key_path(home: &Path) -> PathBuf {
    home.join("secrets.key.next")
}

/// Loads `HOME/secrets.key`, creating it (0600) on first use. A key that group or others may
/// read is refused: the server does not start with it. A rotation that was interrupted left
/// `secrets.key.next`: values sealed under it open too (run `secrets rotate-key` again).
pub fn load_or_create(home: &Path) -> Result<SealKey, SecretsError> {
    let key = load_or_create_current(home)?;
    Ok(match load(&next_key_path(home))? {
        Some(next) => key.also_opening(next),
        None => key,
    })
}

/// Loads `HOME/secrets.key` (and an interrupted rotation's next key) if it exists; never
/// creates it.
pub fn load_existing(home: &Path) -> Result<Option<SealKey>, SecretsError> {
    let Some(key) = load(&key_path(home))? else {
        return Ok(None);
    };
    Ok(Some(match load(&next_key_path(home))? {
        Some(next) => key.also_opening(next),
        None => key,
    }))
}

fn load_or_create_current(home: &Path) -> Result<SealKey, SecretsError> {
    let path = key_path(home);
    match load(&path)? {
        Some(key) => Ok(key),
        None => {
            let (key, raw) = SealKey::generate()?;
            let text = Zeroizing::new(format!("{}\n", hex::encode(&raw[..])));
            match fsutil::write_new(&path, text.as_bytes(), 0o600) {
                Ok(()) => Ok(key),
                // Another process made it first: use theirs.
                Err(FsError::Io { error, .. }) if error.kind() == io::ErrorKind::AlreadyExists => {
                    load(&path)?.ok_or(SecretsError::Malformed(path))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Loads a key file; `None` if it does not exist.
pub fn load(path: &Path) -> Result<Option<SealKey>, SecretsError> {
    match fsutil::exposed_mode_of(path) {
        Ok(Some(mode)) => {
            return Err(SecretsError::Permissions {
                path: path.to_path_buf(),
                mode,
            })
        }
        Ok(None) => {}
        Err(FsError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    }
    let bytes = Zeroizing::new(fsutil::read(path)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| SecretsError::Malformed(path.into()))?;
    let mut raw = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut raw[..])
        .map_err(|_| SecretsError::Malformed(path.into()))?;
    Ok(Some(SealKey::from_bytes(&raw)))
}

/// Writes `secrets.key.next` (0600, durable) before a rotation re-seals anything.
pub fn write_next_key(home: &Path, raw: &[u8; 32]) -> Result<(), SecretsError> {
    let text = Zeroizing::new(format!("{}\n", hex::encode(raw)));
    fsutil::write_atomic(&next_key_path(home), text.as_bytes(), 0o600)?;
    Ok(())
}

/// Ends a rotation: `secrets.key.next` becomes `secrets.key`.
pub fn promote_next_key(home: &Path) -> Result<(), SecretsError> {
    fsutil::rename_durable(&next_key_path(home), &key_path(home))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b<'a>(holder: &'a str, upstream: &'a str) -> Binding<'a> {
        Binding {
            purpose: "access",
            upstream,
            holder,
            chain: "example.org:own",
        }
    }

    #[test]
    fn sealed_values_open_only_with_their_binding_and_key() {
        let (key, _) = SealKey::generate().expect("key");
        let sealed = key
            .seal(&b("alice", "github"), b"gho_secret")
            .expect("seal");
        assert!(!sealed.contains("gho_secret"));
        assert_eq!(
            &key.open(&b("alice", "github"), &sealed).expect("open")[..],
            b"gho_secret"
        );
        assert!(matches!(
            key.open(&b("bob", "github"), &sealed),
            Err(SecretsError::Corrupt)
        ));
        assert!(matches!(
            key.open(&b("alice", "linear"), &sealed),
            Err(SecretsError::Corrupt)
        ));
        let (other, _) = SealKey::generate().expect("key");
        assert!(matches!(
            other.open(&b("alice", "github"), &sealed),
            Err(SecretsError::OtherKey { .. })
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open(&b("alice", "github"), &tampered).is_err());
        assert!(key.open(&b("alice", "github"), "v1.x").is_err());
    }

    #[test]
    fn the_key_file_is_private_and_created_once() {
        let dir = tempfile::tempdir().expect("dir");
        let k1 = load_or_create(dir.path()).expect("create");
        let k2 = load_or_create(dir.path()).expect("load");
        assert_eq!(k1.id(), k2.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let p = key_path(dir.path());
            assert_eq!(
                std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let e = load_or_create(dir.path()).expect_err("0644 refused");
            assert!(e.to_string().contains("chmod 600"), "{e}");
        }
    }
}
