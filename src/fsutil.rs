//! Crash-safe, permission-aware file writes.
//!
//! Every file mcp-zt writes goes through here so that nothing is ever half-written on disk: the
//! bytes go to a temporary file in the same directory, are fsynced, and only then renamed (or
//! hard-linked, when the target must not be replaced) into place; the directory is fsynced last.
//!
//! Modes are unix permission bits. Windows has none: there a new file or folder takes the ACL
//! its parent folder passes on, and under the user's profile (`%USERPROFILE%`) that ACL lets in
//! only the user, SYSTEM and the Administrators, so a key written there is private to the user
//! without further steps. mcp-zt neither sets nor checks ACLs: a key written into a shared
//! folder (`C:\Users\Public`, a network share) is as open as that folder.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Mode for secrets: private keys and the control socket.
pub const SECRET_MODE: u32 = 0o600;
/// Mode for public material (certificates, CRLs, the policy).
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode for the CA home and key folders.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Errors from file operations, with the path that failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// An I/O error on a named path. The message already ends with the OS error, so it is
    /// not also given as [`std::error::Error::source`]: `{:#}` (how `main` prints errors) would
    /// then say it twice.
    #[error("{action} {path}: {error}")]
    Io {
        /// What was being done ("write", "read", ...).
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error (in the message, not the error's source).
        error: io::Error,
    },
    /// The target exists and must not be replaced.
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |error| FsError::Io {
        action,
        path: path.to_path_buf(),
        error,
    }
}

/// Creates `dir` and any missing parents, each 0700. Folders that exist already keep their
/// mode: `issue --out /tmp` must not make /tmp private.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FsError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    for d in missing.iter().rev() {
        match perms::dir_builder(PRIVATE_DIR_MODE).create(d) {
            Ok(()) => {}
            // Another process made it in the meantime: not ours to change.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("create folder", d)(e)),
        }
        // The umask may have narrowed the mode; make it exact.
        perms::set(d, PRIVATE_DIR_MODE).map_err(io_err("set permissions on", d))?;
    }
    if !dir.is_dir() {
        return Err(io_err("create folder", dir)(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "exists and is not a folder",
        )));
    }
    Ok(())
}

/// Creates `dir` if needed and makes it 0700 even if it existed (the CA's HOME).
pub fn make_private_dir(dir: &Path) -> Result<(), FsError> {
    ensure_private_dir(dir)?;
    perms::set(dir, PRIVATE_DIR_MODE).map_err(io_err("set permissions on", dir))
}

fn temp_path(target: &Path) -> PathBuf {
    let mut random = [0u8; 8];
    // A collision only makes create_new fail, which is reported; no data is lost.
    let _ = crate::pki::fill_random(&mut random);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.tmp-{}", hex::encode(random)))
}

fn write_temp(target: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf, FsError> {
    let tmp = temp_path(target);
    let mut file = perms::new_file_options(mode)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    // The umask may have narrowed the mode further; make it exact.
    perms::set_file(&file, mode).map_err(io_err("set permissions on", &tmp))?;
    let result = file
        .write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(io_err("write", &tmp));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map(|_| tmp)
}

#[cfg(unix)]
fn sync_parent(target: &Path) -> Result<(), FsError> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync folder", parent))
}

/// Windows cannot open a folder as a file to flush it (std opens files without
/// `FILE_FLAG_BACKUP_SEMANTICS`); the file's own bytes were synced before the rename, and NTFS
/// journals the rename itself.
#[cfg(not(unix))]
fn sync_parent(_target: &Path) -> Result<(), FsError> {
    Ok(())
}

/// Atomically replaces `target` with `bytes` (temp file, fsync, rename, fsync folder).
pub fn write_atomic(target: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let tmp = write_temp(target, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, target) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("rename into", target)(e));
    }
    sync_parent(target)
}

/// Writes `target` only if it does not exist yet: the complete file appears at once or not at
/// all, and an existing file is never touched (hard link of a synced temp file, which fails with
/// `EEXIST` atomically).
pub fn write_new(target: &Path, bytes: &[u8], mode: u32) -> Result<(), FsError> {
    let tmp = write_temp(target, bytes, mode)?;
    let linked = fs::hard_link(&tmp, target);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => sync_parent(target),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(FsError::Exists(target.to_path_buf()))
        }
        Err(e) => Err(io_err("create", target)(e)),
    }
}

/// Renames `from` to `to` (same folder) and makes the rename durable.
pub fn rename_durable(from: &Path, to: &Path) -> Result<(), FsError> {
    fs::rename(from, to).map_err(io_err("rename", from))?;
    sync_parent(to)
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, FsError> {
    fs::read(path).map_err(io_err("read", path))
}

/// Opens `path` for appending, creating it with `mode` if it is missing.
pub fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    perms::append_options(mode).open(path)
}

/// Sets the permission bits of an open file to exactly `mode` (nothing on Windows).
pub fn set_file_mode(file: &File, mode: u32) -> io::Result<()> {
    perms::set_file(file, mode)
}

/// Returns the permission bits of `path`.
#[cfg(unix)]
pub fn mode_of(path: &Path) -> Result<u32, FsError> {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .map_err(io_err("inspect", path))
}

/// The permission bits (`0o7777` at most) of a file or folder that group or others may access
/// in any way; `None` when only its owner may. Always `None` on Windows, which has no mode bits
/// (see the module documentation): the checks built on this are unix checks.
pub fn exposed_mode(meta: &fs::Metadata) -> Option<u32> {
    perms::exposed(meta)
}

/// [`exposed_mode`] of `path`; an error names the path (a missing file is an error everywhere).
pub fn exposed_mode_of(path: &Path) -> Result<Option<u32>, FsError> {
    fs::metadata(path)
        .map(|m| exposed_mode(&m))
        .map_err(io_err("inspect", path))
}

/// Unix permission bits, set and read.
#[cfg(unix)]
mod perms {
    use std::fs::{self, DirBuilder, File, OpenOptions};
    use std::io;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    use std::path::Path;

    pub fn dir_builder(mode: u32) -> DirBuilder {
        let mut b = DirBuilder::new();
        b.mode(mode);
        b
    }

    /// Options that create a new file (never an existing one) for writing, with `mode`.
    pub fn new_file_options(mode: u32) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.write(true).create_new(true).mode(mode);
        o
    }

    pub fn append_options(mode: u32) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.create(true).append(true).mode(mode);
        o
    }

    pub fn set(path: &Path, mode: u32) -> io::Result<()> {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    pub fn set_file(file: &File, mode: u32) -> io::Result<()> {
        file.set_permissions(fs::Permissions::from_mode(mode))
    }

    pub fn exposed(meta: &fs::Metadata) -> Option<u32> {
        let mode = meta.permissions().mode();
        (mode & 0o077 != 0).then_some(mode & 0o7777)
    }
}

/// Windows: no mode bits; new files and folders take their parent folder's ACL (see the module
/// documentation), so modes are neither set nor checked.
#[cfg(not(unix))]
mod perms {
    use std::fs::{self, DirBuilder, File, OpenOptions};
    use std::io;
    use std::path::Path;

    pub fn dir_builder(_mode: u32) -> DirBuilder {
        DirBuilder::new()
    }

    pub fn new_file_options(_mode: u32) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.write(true).create_new(true);
        o
    }

    pub fn append_options(_mode: u32) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.create(true).append(true);
        o
    }

    pub fn set(_path: &Path, _mode: u32) -> io::Result<()> {
        Ok(())
    }

    pub fn set_file(_file: &File, _mode: u32) -> io::Result<()> {
        Ok(())
    }

    pub fn exposed(_meta: &fs::Metadata) -> Option<u32> {
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn write_new_never_replaces_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("ca.key");
        write_new(&target, b"first", SECRET_MODE).expect("first write");
        let err = write_new(&target, b"second", SECRET_MODE).expect_err("second write");
        assert!(matches!(err, FsError::Exists(_)));
        assert_eq!(fs::read(&target).expect("read"), b"first");
        assert_eq!(mode_of(&target).expect("mode"), 0o600);
        // No temp files are left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
    }

    #[test]
    fn write_atomic_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("crl.pem");
        write_atomic(&target, b"one", PUBLIC_MODE).expect("write");
        write_atomic(&target, b"two", PUBLIC_MODE).expect("rewrite");
        assert_eq!(fs::read(&target).expect("read"), b"two");
        assert_eq!(mode_of(&target).expect("mode"), 0o644);
    }
}
