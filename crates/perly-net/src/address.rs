//! Which IP addresses Perly may connect to. [`non_public`] names the kind
//! of an address that is not on the public internet (loopback, private,
//! link-local, carrier-grade NAT, multicast, documentation, …) and returns
//! `None` for a public one. The lists follow the IANA special-purpose
//! address registries (RFC 6890 and its updates); addresses that carry an
//! IPv4 address inside an IPv6 one are judged by what they carry, except
//! IPv4-mapped and IPv4-compatible ones, which are refused outright (an
//! outside name has no business resolving to them).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kind of a non-public address, or `None` when it is public.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

/// Whether Perly may connect to `ip` without the private-network opt-in.
pub fn is_public(ip: IpAddr) -> bool {
    non_public(ip).is_none()
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "\"this network\" (unspecified)"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, kind)| *kind)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32)
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    // ::ffff:a.b.c.d and the deprecated ::a.b.c.d.
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        return Some("IPv4-mapped");
    }
    if in_v6(ip, [0; 8], 96) {
        return Some("IPv4-compatible");
    }
    // ::ffff:0:a.b.c.d, IPv4-translated (RFC 2765, SIIT).
    if in_v6(ip, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96) {
        return Some("IPv4-translated");
    }
    // NAT64 (64:ff9b::/96) reaches the IPv4 address it carries.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return non_public_v4(low_v4(ip));
    }
    // 6to4 (2002::/16) carries an IPv4 address in bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let carried = Ipv4Addr::from(((u128::from(ip) >> 80) & 0xffff_ffff) as u32);
        return non_public_v4(carried);
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use NAT64"),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
        ([0x2001, 0x0db8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
        (
            [0x2001, 0, 0, 0, 0, 0, 0, 0],
            23,
            "IETF protocol assignment (Teredo, ORCHID, …)",
        ),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (private)"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, kind)| *kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("127.0.0.1", "loopback")]
    #[case("127.255.0.9", "loopback")]
    #[case("10.0.0.1", "private")]
    #[case("172.16.0.1", "private")]
    #[case("172.31.255.255", "private")]
    #[case("192.168.1.1", "private")]
    #[case("169.254.169.254", "link-local")]
    #[case("100.64.0.1", "carrier-grade NAT")]
    #[case("100.127.255.255", "carrier-grade NAT")]
    #[case("0.0.0.0", "\"this network\" (unspecified)")]
    #[case("0.1.2.3", "\"this network\" (unspecified)")]
    #[case("224.0.0.1", "multicast")]
    #[case("255.255.255.255", "reserved")]
    #[case("192.0.2.10", "documentation")]
    #[case("198.18.0.1", "benchmarking")]
    #[case("::1", "loopback")]
    #[case("::", "unspecified")]
    #[case("fe80::1", "link-local")]
    #[case("fc00::1", "unique local (private)")]
    #[case("fd12:3456::1", "unique local (private)")]
    #[case("ff02::1", "multicast")]
    #[case("::ffff:127.0.0.1", "IPv4-mapped")]
    #[case("::ffff:0:127.0.0.1", "IPv4-translated")]
    #[case("::ffff:0:8.8.8.8", "IPv4-translated")]
    #[case("::ffff:8.8.8.8", "IPv4-mapped")]
    #[case("::127.0.0.1", "IPv4-compatible")]
    #[case("64:ff9b::a9fe:a9fe", "link-local")]
    #[case("2002:7f00:1::", "loopback")]
    #[case("2001:db8::1", "documentation")]
    #[case("2001::1", "IETF protocol assignment (Teredo, ORCHID, …)")]
    #[case("fec0::1", "site-local")]
    fn non_public_addresses_are_named(#[case] ip: &str, #[case] kind: &str) {
        let ip: IpAddr = ip.parse().expect("an address");
        assert_eq!(non_public(ip), Some(kind), "{ip}");
        assert!(!is_public(ip));
    }

    #[rstest]
    #[case("8.8.8.8")]
    #[case("13.108.0.1")] // a Salesforce range
    #[case("100.63.255.255")]
    #[case("100.128.0.0")]
    #[case("172.15.255.255")]
    #[case("172.32.0.0")]
    #[case("169.253.0.1")]
    #[case("2606:4700::1111")]
    #[case("64:ff9b::808:808")] // NAT64 of 8.8.8.8
    #[case("2002:808:808::")] // 6to4 of 8.8.8.8
    fn public_addresses_pass(#[case] ip: &str) {
        let ip: IpAddr = ip.parse().expect("an address");
        assert_eq!(non_public(ip), None, "{ip}");
    }
}
