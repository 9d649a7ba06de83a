//! Existing MCP servers ("upstreams") that mcp-zt fronts as a gateway: their configuration, read
//! from `HOME/upstreams.toml`.

pub mod config;
