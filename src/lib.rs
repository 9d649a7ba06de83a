//! mcp-zt: an mTLS-first, zero-trust MCP server with an embedded certificate authority.
//!
//! Data flows one way: CLI → CA + ledger → TLS accept → identity → policy → MCP tools.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
pub mod bridge;
pub mod ca;
pub mod cli;
pub mod console;
pub mod fsutil;
pub mod identity;
pub mod ledger;
pub mod mcp;
pub mod oauth;
pub mod pki;
pub mod policy;
pub mod secrets;
pub mod server;
pub mod tls;
pub mod upstream;
