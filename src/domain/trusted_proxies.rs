//! Which peers may tell us who the client is (`TRUSTED_PROXIES`), and the
//! client address that follows from it.
//!
//! A client writes whatever it likes into `X-Forwarded-For`; a proxy appends
//! the address it was connected from. So the only values worth anything are
//! the right-most ones, written by proxies we run: the client is the
//! right-most hop that is not one of ours. Walking from the left (the
//! "original client" of folklore) hands the choice of address to the client:
//! it could put a victim's address there to get it throttled, or change it at
//! will to escape its own throttle. With no trusted proxy configured the
//! header is not read at all.
//!
//! `Forwarded` (RFC 7239) is not read: every proxy we document writes
//! `X-Forwarded-For`, and reading two headers would mean deciding which one
//! wins when they disagree, which is itself something a client could play.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The networks whose peers are our own reverse proxies. Empty by default:
/// every peer is the client itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Comma-separated CIDRs (`10.0.0.0/8`) or single addresses
    /// (`127.0.0.1`, `::1`); empty entries are skipped. The error names the
    /// entry that is neither.
    pub fn parse(value: &str) -> Result<Self, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!("{s:?} is not a CIDR (such as 10.0.0.0/8) or an IP address")
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of our proxies. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`, what a dual-stack listener reports) counts as the
    /// IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address, given the connection's `peer` and the
    /// `X-Forwarded-For` header lines in the order received (several lines
    /// are one list, as RFC 9110 says).
    ///
    /// Only when `peer` is a trusted proxy is the header read, from the
    /// right: hops inside the trusted networks are skipped, and the first one
    /// outside them is the client. A hop that is not an address (`unknown`,
    /// an obfuscated name, garbage) ends the walk at the last trusted proxy
    /// before it: what lies to its left was not written by anyone we trust.
    /// If every hop is trusted, the left-most is the client (a request that
    /// started inside our own network).
    pub fn client_address(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        for hop in forwarded_for.iter().rev().flat_map(|line| line.rsplit(',')) {
            let Some(ip) = parse_hop(hop) else { break };
            client = ip;
            if !self.contains(ip) {
                break;
            }
        }
        client
    }

    /// A value a proxy reports about the request (`X-Forwarded-Host`,
    /// `X-Forwarded-Proto`), only when `peer` is a trusted proxy: its
    /// right-most entry, the one the nearest proxy wrote.
    pub fn forwarded<'a>(&self, peer: IpAddr, value: Option<&'a str>) -> Option<&'a str> {
        if !self.contains(peer) {
            return None;
        }
        value?
            .rsplit(',')
            .next()
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
}

/// One `X-Forwarded-For` hop: an address, with or without a port
/// (`203.0.113.7`, `203.0.113.7:4711`, `2001:db8::1`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .or_else(|_| {
            hop.strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or("")
                .parse::<IpAddr>()
        })
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(s: &str) -> TrustedProxies {
        TrustedProxies::parse(s).unwrap()
    }

    #[test]
    fn cidrs_and_single_addresses_are_parsed_and_garbage_is_named() {
        let p = proxies(" 10.0.0.0/8, 192.168.1.7 ,, ::1, 2001:db8::/32 ");
        assert!(p.contains(ip("10.200.0.1")));
        assert!(p.contains(ip("192.168.1.7")));
        assert!(!p.contains(ip("192.168.1.8")));
        assert!(p.contains(ip("::1")));
        assert!(p.contains(ip("2001:db8:1::5")));
        assert!(!p.contains(ip("11.0.0.1")));
        // A dual-stack listener's form of an IPv4 peer.
        assert!(p.contains(ip("::ffff:10.0.0.1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        for bad in ["10.0.0.0/33", "proxy.internal", "10.0.0.0/8; 1.2.3.4", "*"] {
            let err = TrustedProxies::parse(bad).unwrap_err();
            assert!(err.contains("is not a CIDR"), "{bad}: {err}");
        }
    }

    #[test]
    fn with_no_trusted_proxy_the_header_is_ignored() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_address(ip("198.51.100.9"), &["203.0.113.7"]),
            ip("198.51.100.9")
        );
        // Even a loopback peer (a proxy on the same host) is the client
        // until it is listed.
        assert_eq!(
            none.client_address(ip("127.0.0.1"), &["203.0.113.7"]),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_peer_that_is_not_a_trusted_proxy_is_the_client_whatever_it_writes() {
        let p = proxies("10.0.0.0/8");
        assert_eq!(
            p.client_address(ip("198.51.100.9"), &["10.0.0.5, 203.0.113.7"]),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn the_client_is_the_right_most_hop_that_is_not_a_trusted_proxy() {
        let p = proxies("10.0.0.0/8, 127.0.0.1/32");
        // One proxy: it appended the client's address.
        assert_eq!(
            p.client_address(ip("127.0.0.1"), &["198.51.100.9"]),
            ip("198.51.100.9")
        );
        // The client wrote a victim's address first: it does not matter.
        assert_eq!(
            p.client_address(ip("127.0.0.1"), &["192.0.2.1, 198.51.100.9"]),
            ip("198.51.100.9")
        );
        // Two of our proxies in a row are skipped.
        assert_eq!(
            p.client_address(ip("10.0.0.2"), &["192.0.2.1, 198.51.100.9, 10.0.0.1"]),
            ip("198.51.100.9")
        );
        // A forged hop inside our own range, written by the client, is
        // to the left of the real client and is never reached.
        assert_eq!(
            p.client_address(ip("10.0.0.2"), &["10.9.9.9, 198.51.100.9"]),
            ip("198.51.100.9")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            p.client_address(ip("10.0.0.2"), &["192.0.2.1", "198.51.100.9, 10.0.0.1"]),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn ports_brackets_and_mapped_addresses_are_understood() {
        let p = proxies("127.0.0.1");
        for (hop, client) in [
            ("198.51.100.9:4711", "198.51.100.9"),
            ("2001:db8::9", "2001:db8::9"),
            ("[2001:db8::9]", "2001:db8::9"),
            ("[2001:db8::9]:4711", "2001:db8::9"),
            (" ::ffff:198.51.100.9 ", "198.51.100.9"),
        ] {
            assert_eq!(
                p.client_address(ip("127.0.0.1"), &[hop]),
                ip(client),
                "{hop}"
            );
        }
        assert_eq!(
            p.client_address(ip("::ffff:127.0.0.1"), &["198.51.100.9"]),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn garbage_or_an_empty_header_stops_at_the_last_trusted_proxy() {
        let p = proxies("10.0.0.0/8");
        assert_eq!(p.client_address(ip("10.0.0.2"), &[]), ip("10.0.0.2"));
        assert_eq!(p.client_address(ip("10.0.0.2"), &[""]), ip("10.0.0.2"));
        assert_eq!(
            p.client_address(ip("10.0.0.2"), &["198.51.100.9, unknown"]),
            ip("10.0.0.2")
        );
        assert_eq!(
            p.client_address(ip("10.0.0.2"), &["198.51.100.9, _hidden, 10.0.0.1"]),
            ip("10.0.0.1")
        );
        // Every hop ours: the request started inside; the left-most is it.
        assert_eq!(
            p.client_address(ip("10.0.0.2"), &["10.0.0.7, 10.0.0.1"]),
            ip("10.0.0.7")
        );
    }

    #[test]
    fn forwarded_host_and_proto_are_read_only_from_a_trusted_proxy() {
        let p = proxies("127.0.0.1");
        assert_eq!(
            p.forwarded(ip("127.0.0.1"), Some("evil.example, dash.example")),
            Some("dash.example")
        );
        assert_eq!(p.forwarded(ip("198.51.100.9"), Some("dash.example")), None);
        assert_eq!(p.forwarded(ip("127.0.0.1"), Some(" ")), None);
        assert_eq!(p.forwarded(ip("127.0.0.1"), None), None);
        assert_eq!(
            TrustedProxies::default().forwarded(ip("127.0.0.1"), Some("https")),
            None
        );
    }
}
