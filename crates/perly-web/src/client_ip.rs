//! Which address a request came from, for the sign-in throttle. The answer
//! is the TCP peer of the connection, unless that peer is one of the
//! proxies named in the configuration (`[security] trusted_proxies`): then
//! `X-Forwarded-For` is read from the right, skipping trusted proxies, and
//! the first address that is not one is the client. Nobody else can set
//! the header to pick their own address: from an untrusted peer it is
//! ignored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::AppState;

/// Proxies whose `X-Forwarded-For` is believed: addresses or CIDR ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `["10.0.0.1", "10.1.0.0/16", "::1"]`; a bad entry is named in the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("`{e}` is not an IP address or CIDR range"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer` with these headers.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        // Every X-Forwarded-For header, in order, as one list; each proxy
        // appends the address it received the request from.
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // What a trusted proxy wrote that is not an address ends the
            // walk: the last address known is as far as the chain is believed.
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// The client address of a request (see the module docs). Without
/// connection info (an app driven without a socket) every request shares
/// one unknown address, so throttling still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl ClientIp {
    /// The address as the throttle keys it: an IPv4 address, or the /64
    /// network of an IPv6 one (one subscriber usually holds a whole /64, so
    /// counting single IPv6 addresses would let them rotate past the limits).
    pub fn key(&self) -> String {
        match self.0 {
            None => "unknown".to_owned(),
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => match ipnet::Ipv6Net::new(v6, 64) {
                Ok(net) => net.trunc().to_string(),
                Err(_) => v6.to_string(),
            },
        }
    }
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(Self(
            peer.map(|p| state.security.trusted_proxies.client_of(p, &parts.headers)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let trusted = TrustedProxies::parse(&["10.0.0.1"]).expect("parse");
        assert_eq!(
            trusted.client_of(ip("203.0.113.9"), &xff(&["1.2.3.4"])),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::default().client_of(ip("10.0.0.1"), &xff(&["1.2.3.4"])),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies::parse(&["10.0.0.1", "10.1.0.0/16"]).expect("parse");
        // The client forged the first entry; the proxies appended the rest.
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.1.2.3"]);
        assert_eq!(trusted.client_of(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        // Ports and IPv4-mapped IPv6 peers.
        assert_eq!(
            trusted.client_of(ip("::ffff:10.0.0.1"), &xff(&["198.51.100.7:4711"])),
            ip("198.51.100.7")
        );
        // Only trusted hops: the left-most of them.
        assert_eq!(trusted.client_of(ip("10.0.0.1"), &xff(&["10.1.0.5"])), ip("10.1.0.5"));
        // No header: the proxy itself.
        assert_eq!(trusted.client_of(ip("10.0.0.1"), &HeaderMap::new()), ip("10.0.0.1"));
        // Garbage stops the walk at the last address known.
        assert_eq!(
            trusted.client_of(ip("10.0.0.1"), &xff(&["1.2.3.4, garbage, 10.1.0.9"])),
            ip("10.1.0.9")
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_network() {
        let key = |s: &str| ClientIp(Some(ip(s))).key();
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("203.0.113.9"), "203.0.113.9");
        assert_eq!(ClientIp(None).key(), "unknown");
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(TrustedProxies::parse(&["10.0.0.0/8", "::1", "fd00::/8"]).is_ok());
        let e = TrustedProxies::parse(&["10.0.0.0/33"]).expect_err("bad");
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(TrustedProxies::parse(&["proxy.internal"]).is_err());
    }
}
