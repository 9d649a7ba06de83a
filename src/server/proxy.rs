//! PROXY protocol v2 from the load balancers listed with `--proxy-protocol-from`.
//!
//! Behind an L4 load balancer every connection comes from the balancer's address, so audit,
//! lockout and rate limits would all see one client. HAProxy's `send-proxy-v2` puts the real
//! client address in a binary header before the TLS bytes. Only connections from listed
//! addresses are read for it, and from those it is required: a header from anyone else would
//! let a client choose the address it is audited and rate-limited under, and a listed balancer
//! that sends none is misconfigured (refused, not guessed).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The v2 signature every header starts with.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// How long a balancer may take to send the header (it sends it at once).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest address block accepted after the fixed 16 bytes (addresses plus TLVs).
const MAX_BODY: usize = 1024;

/// The networks whose connections carry a PROXY v2 header.
#[derive(Debug, Clone, Default)]
pub struct ProxyFrom(Vec<ipnet::IpNet>);

impl ProxyFrom {
    /// Parses `CIDR` (or a bare address) values of `--proxy-protocol-from`.
    pub fn parse(values: &[String]) -> Result<ProxyFrom, String> {
        let mut nets = Vec::new();
        for v in values {
            let net = match v.parse::<ipnet::IpNet>() {
                Ok(n) => n,
                Err(_) => match v.parse::<IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                            "--proxy-protocol-from {v:?}: expected an address or CIDR such as \
                             10.0.0.5 or 10.0.0.0/24"
                        ))
                    }
                },
            };
            nets.push(net);
        }
        Ok(ProxyFrom(nets))
    }

    /// Whether connections from `ip` must start with a PROXY v2 header.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether any network is listed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// IPv4-mapped IPv6 addresses compare as IPv4 (a dual-stack listener reports them so).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Reads the header from a balancer's connection and returns the client's address (the
/// balancer's own for a `LOCAL` header, e.g. its health checks). Reads exactly the header's
/// bytes: what follows (the TLS ClientHello) stays in the socket.
pub async fn read_header(
    tcp: &mut TcpStream,
    balancer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, String> {
    match tokio::time::timeout(timeout, read(tcp, balancer)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no PROXY v2 header within {timeout:?}")),
    }
}

async fn read(tcp: &mut TcpStream, balancer: SocketAddr) -> Result<SocketAddr, String> {
    let mut head = [0u8; 16];
    tcp.read_exact(&mut head)
        .await
        .map_err(|e| format!("PROXY v2 header: {e}"))?;
    if head[..12] != SIGNATURE {
        return Err("the connection did not start with a PROXY v2 header".into());
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > MAX_BODY {
        return Err(format!("PROXY v2 header of {len} bytes (limit {MAX_BODY})"));
    }
    let mut buf = Vec::with_capacity(16 + len);
    buf.extend_from_slice(&head);
    buf.resize(16 + len, 0);
    tcp.read_exact(&mut buf[16..])
        .await
        .map_err(|e| format!("PROXY v2 header: {e}"))?;
    parse(&buf, balancer)
}

/// The client address in a complete header.
pub fn parse(bytes: &[u8], balancer: SocketAddr) -> Result<SocketAddr, String> {
    use ppp::v2::{Addresses, Command, Header};
    let header = Header::try_from(bytes).map_err(|e| format!("bad PROXY v2 header: {e}"))?;
    if header.command == Command::Local {
        return Ok(balancer);
    }
    match header.addresses {
        Addresses::IPv4(a) => Ok(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
        Addresses::IPv6(a) => Ok(SocketAddr::new(
            canonical(IpAddr::V6(a.source_address)),
            a.source_port,
        )),
        Addresses::Unspecified => Ok(balancer),
        Addresses::Unix(_) => Err("PROXY v2 header with a Unix socket address".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_header(src: [u8; 4], port: u16) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x21); // v2, PROXY
        h.push(0x11); // TCP over IPv4
        h.extend_from_slice(&12u16.to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&[127, 0, 0, 1]);
        h.extend_from_slice(&port.to_be_bytes());
        h.extend_from_slice(&8443u16.to_be_bytes());
        h
    }

    #[test]
    fn headers_give_the_client_address_and_garbage_is_refused() {
        let lb: SocketAddr = "127.0.0.2:5000".parse().expect("addr");
        let h = v4_header([203, 0, 113, 7], 41_000);
        assert_eq!(
            parse(&h, lb),
            Ok("203.0.113.7:41000".parse().expect("addr"))
        );
        let mut local = h.clone();
        local[12] = 0x20;
        assert_eq!(parse(&local, lb), Ok(lb), "LOCAL: the balancer itself");
        assert!(parse(&h[..20], lb).is_err(), "truncated");
        assert!(parse(b"\x16\x03\x01\x00\xa5garbage-not-proxy", lb).is_err());
    }

    #[test]
    fn only_listed_networks_are_trusted() {
        let p = ProxyFrom::parse(&["127.0.0.2".into(), "10.0.0.0/8".into()]).expect("parse");
        assert!(p.trusts("127.0.0.2".parse().expect("ip")));
        assert!(p.trusts("::ffff:10.1.2.3".parse().expect("ip")));
        assert!(!p.trusts("127.0.0.1".parse().expect("ip")));
        assert!(ProxyFrom::parse(&["nonsense".into()]).is_err());
    }
}
