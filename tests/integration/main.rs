//! Integration tests: drive the real `mcp-zt` binary (and, for interop, `openssl`).
//! Each test gets a fresh temporary CA home.

mod admission;
mod audit_log;
mod common;
mod completion;
mod config_errors;
mod connect;
mod fleet_ops;
mod foreign_crl;
mod gateway;
mod hardening;
mod holder;
mod hostile;
mod intermediate_crl;
mod oauth;
mod pki_cli;
mod pki_hierarchy;
mod policy_rules;
mod renewal;
mod renewal_chain;
mod server;
mod server_env;
mod upstream_cli;
