//! `ca init` and `ca rotate`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use zeroize::Zeroizing;

use super::backend::Backend;
use super::commands::{print_json, print_out};
use crate::ca::rollover;
use crate::ca::rotate::{self, RotateFrom};
use crate::ca::{self, Home, InitLayout, InitOptions, RootKey};
use crate::ledger::{CaMeta, Layout};
use crate::pki::build::KeyAlgorithm;
use crate::pki::role_ext::Oid;

/// What `ca init` was given.
pub struct InitArgs {
    pub name: String,
    pub trust_domain: String,
    pub role_oid: Option<String>,
    pub key_type: KeyAlgorithm,
    pub offline_root: Option<PathBuf>,
    pub import: Option<(PathBuf, PathBuf)>,
    pub single: bool,
    pub crl_url: Option<String>,
    pub json: bool,
}

/// `ca init`.
pub fn init(home: &Home, passphrase: Option<Zeroizing<Vec<u8>>>, args: InitArgs) -> Result<()> {
    let role_oid = match args.role_oid {
        Some(s) => s.parse::<Oid>().context("--role-oid")?,
        None => Oid::default(),
    };
    let layout = match (args.single, args.offline_root, args.import) {
        (true, _, _) => InitLayout::Single,
        (_, _, Some((cert, key))) => InitLayout::Import { cert, key },
        (_, Some(dir), _) => InitLayout::Hierarchy(RootKey::Offline(dir)),
        _ => InitLayout::Hierarchy(RootKey::InHome),
    };
    let offline = match &layout {
        InitLayout::Hierarchy(RootKey::Offline(dir)) => Some(dir.clone()),
        _ => None,
    };
    let opts = InitOptions {
        name: args.name,
        trust_domain: args.trust_domain,
        role_oid,
        key_algorithm: args.key_type,
        passphrase,
        layout,
        crl_url: args.crl_url,
    };
    let meta = ca::init(home, &opts)?;
    if args.json {
        return print_json(&meta);
    }
    eprintln!(
        "created CA {:?} in {} ({}; trust domain {}, role OID {}{})",
        meta.name,
        home.display(),
        meta.layout.as_str(),
        meta.trust_domain,
        meta.role_oid,
        if meta.key_encrypted {
            ", keys encrypted"
        } else {
            ""
        }
    );
    if let Some(dir) = offline {
        eprintln!(
            "the root key is in {} only; HOME keeps the root certificate and the online intermediate.\n\
             store it offline now: copy {dir}/root.key to two encrypted removable media kept apart, \
             check both copies, then delete it from this disk (shred -u {dir}/root.key). \
             Bring one back only for `mcp-zt ca rotate --root-key FILE`.",
            dir.display(),
            dir = dir.display()
        );
        if !meta.key_encrypted {
            eprintln!(
                "warning: the root key is not encrypted; run `ca init` with --passphrase-file FILE to encrypt the CA keys"
            );
        }
    }
    print_out(&format!("{}\n", home.ca_cert().display()))
}

/// What `ca rotate` was given.
pub struct RotateArgs {
    pub root_key: Option<PathBuf>,
    pub root_passphrase_file: Option<PathBuf>,
    pub import: Option<(PathBuf, PathBuf)>,
    pub root: Option<RootStep>,
    pub json: bool,
}

/// The steps of a root rollover.
pub enum RootStep {
    /// `ca rotate --root [--offline-root DIR]`.
    Roll { offline: Option<PathBuf> },
    /// `ca rotate --root --finish`.
    Finish,
}

/// `ca rotate`: the new intermediate is made here (the root key never reaches the server),
/// then made current by the running server, or here when none runs.
pub fn rotate(
    home: &Home,
    passphrase: Option<&Zeroizing<Vec<u8>>>,
    args: RotateArgs,
) -> Result<()> {
    let backend = Backend::open(home)?;
    let (_, meta) = backend.records()?;
    rotate::check_rotatable(&meta)?;
    let root_passphrase = args
        .root_passphrase_file
        .as_deref()
        .map(ca::read_passphrase)
        .transpose()?;
    match args.root {
        Some(RootStep::Finish) => {
            let serial = rollover::finish(home, &meta)?;
            backend.activate_intermediate(&serial, passphrase)?;
            eprintln!(
                "root rollover finished: ca.crt holds the new root only, and the server's chain no longer carries the cross certificate"
            );
            return print_out(&format!("{}\n", home.ca_cert().display()));
        }
        Some(RootStep::Roll { offline }) => {
            let old_key = root_key_path(home, &meta, args.root_key)?;
            let old_ca_crt = std::fs::read(home.ca_cert())?;
            let mut prepared = rollover::prepare(
                home,
                &meta,
                &old_key,
                root_passphrase.as_deref().map(|p| p.as_slice()),
                passphrase.map(|p| p.as_slice()),
                offline.as_deref(),
            )?;
            if let Err(e) = backend.activate_intermediate(&prepared.intermediate, passphrase) {
                rollover::abandon(home, &prepared, &old_ca_crt);
                return Err(e.context("the root rollover was undone; nothing changed"));
            }
            rollover::commit_root_key(home, &mut prepared)?;
            if args.json {
                return print_json(&serde_json::json!({
                    "root": prepared.root,
                    "intermediate": prepared.intermediate,
                    "root_key": prepared.root_key,
                }));
            }
            eprintln!(
                "new root {} (key {}) and intermediate {} in force; ca.crt holds the new root and the old one, and the server's chain carries a cross certificate, so clients that trust only the old root keep working. Hand the new ca.crt to every client, then run `mcp-zt ca rotate --root --finish`.",
                prepared.root,
                prepared.root_key.display(),
                prepared.intermediate
            );
            return print_out(&format!("{}\n", home.ca_cert().display()));
        }
        None => {}
    }
    let from = match args.import {
        Some((cert, key)) => RotateFrom::Import { cert, key },
        None => RotateFrom::RootKey {
            path: root_key_path(home, &meta, args.root_key)?,
            passphrase: root_passphrase,
        },
    };
    let pass = passphrase.map(|p| p.as_slice());
    let serial = rotate::prepare(home, &meta, &from, pass)?;
    if let Err(e) = backend.activate_intermediate(&serial, passphrase) {
        rotate::discard(home, &serial);
        return Err(e);
    }
    if args.json {
        return print_json(&serde_json::json!({ "intermediate": serial }));
    }
    eprintln!(
        "new intermediate {serial} signs from now on; certificates of the earlier one keep working until they end or are revoked"
    );
    print_out(&format!("{}\n", home.intermediate_cert().display()))
}

/// The root key to use: `--root-key FILE`, else HOME/root.key when the root is kept there.
fn root_key_path(home: &Home, meta: &CaMeta, given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p),
        None if meta.layout == Layout::Hierarchy && home.root_key().is_file() => Ok(home.root_key()),
        None if meta.layout == Layout::Hierarchy => anyhow::bail!(
            "the root key is not in {} (it was kept offline): bring it back and give it with --root-key FILE",
            home.display()
        ),
        None => anyhow::bail!(
            "this home's intermediate comes from your organization's PKI: rotate with --import-cert FILE --import-key FILE"
        ),
    }
}
