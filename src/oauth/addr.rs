//! Which addresses a fetch on a client's behalf may reach (pure): public unicast only. A
//! client ID metadata document URL is chosen by whoever starts an authorization, so without
//! this filter it would make mcp-zt reach into its own network (SSRF): loopback, private
//! ranges, link-local and cloud metadata addresses, and everything that maps onto them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(a: Ipv4Addr) -> bool {
    let [o0, o1, o2, _] = a.octets();
    !(a.is_unspecified()
        || a.is_loopback() // 127/8
        || a.is_private() // 10/8, 172.16/12, 192.168/16
        || a.is_link_local() // 169.254/16 (cloud metadata: 169.254.169.254)
        || a.is_broadcast()
        || a.is_documentation()
        || a.is_multicast() // 224/4
        || o0 == 0 // 0/8 ("this network")
        || o0 >= 240 // 240/4 reserved
        || (o0 == 100 && (64..128).contains(&o1)) // 100.64/10 carrier-grade NAT
        || (o0 == 192 && o1 == 0 && o2 == 0) // 192.0.0/24 protocol assignments
        || (o0 == 198 && (o1 == 18 || o1 == 19))) // 198.18/15 benchmarking
}

fn public_v6(a: Ipv6Addr) -> bool {
    // Addresses that carry an IPv4 address are judged by it.
    if let Some(v4) = a.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = a.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4 address too.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return public_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return public_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    !(a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 IETF protocol assignments (Teredo incl.)
        || s[..6] == [0, 0, 0, 0, 0, 0] // ::/96 IPv4-compatible (deprecated)
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // 100::/64 discard
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn private_loopback_link_local_and_metadata_are_refused() {
        for bad in [
            "127.0.0.1",
            "127.0.0.2",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "192.0.0.170",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "2001::1",
            "::127.0.0.1",
            "fd00:ec2::254",
        ] {
            assert!(!is_public(ip(bad)), "{bad} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for good in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "192.169.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::",
        ] {
            assert!(is_public(ip(good)), "{good} is public");
        }
    }
}
