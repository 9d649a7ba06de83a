//! mcp-zt: an mTLS-first, zero-trust MCP server with an embedded certificate authority.
//!
//! Data flows one way: CLI → CA + ledger → TLS accept → identity → policy → MCP tools.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ca;
pub mod cli;
pub mod fsutil;
pub mod ledger;
pub mod pki;
pub mod policy;
