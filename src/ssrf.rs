//! The outbound guard: the one check every URL the service calls passes
//! (tenants' three Slack webhooks, the service's own Slack webhooks, buyers'
//! push-notification configs, media buys' reporting webhooks).
//!
//! A URL is refused when its host is, or resolves to, an address of a class
//! no outside receiver lives at: loopback, private (RFC 1918, IPv6 unique
//! local), link-local, CGNAT (100.64/10), multicast, unspecified, broadcast,
//! documentation and benchmarking ranges, reserved space, and the IPv4-mapped,
//! IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4 (2002::/16) forms of those;
//! and when its host is a cloud metadata name. Every resolved address must
//! pass (one bad answer refuses the URL), and the sender connects to the
//! addresses checked here, never resolving again (no DNS rebinding; see
//! `crate::outbound::GuardedClient`). In production only `https` is called.
//!
//! It runs twice. At registration ([`SsrfPolicy::admit`]) it gives the
//! caller a 422 naming the field. At send time it runs again on the stored
//! URL, whatever wrote it (a URL written behind the API's back, or allowed
//! by an allowlist since shortened, or a name that now resolves elsewhere):
//! that check is the one that protects, the first one only tells early.
//! So a name that does not resolve at registration is accepted: it reaches
//! nothing, a registration must not fail because DNS is slow or a record is
//! not published yet, and every send resolves it again through the guard.
//!
//! Operators may allow CIDRs or host names (`WEBHOOK_ALLOWED_CIDRS`,
//! `WEBHOOK_ALLOWED_HOSTS`), for every kind of URL alike: tests use
//! `127.0.0.1/32`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::domain::InvalidField;

/// How long a registration waits for DNS before accepting the name as
/// unresolved (it is checked again at every send).
const REGISTRATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Host names of cloud metadata services (their addresses are link-local or
/// CGNAT and refused anyway; the names are refused before any lookup).
const METADATA_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.com",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the URL must name a host")]
    NoHost,
    #[error("{0} is a cloud metadata host")]
    MetadataHost(String),
    #[error("the host is or resolves to a {class} address")]
    Blocked { class: &'static str },
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("{0} is not allowed (https only in production)")]
    Scheme(String),
    #[error("not an absolute URL")]
    NotAUrl,
}

/// What may be reached despite the rules, and over which schemes.
#[derive(Debug, Clone, Default)]
pub struct SsrfPolicy {
    pub allowed_cidrs: Vec<IpNet>,
    /// Lower-case host names.
    pub allowed_hosts: Vec<String>,
    /// `ENVIRONMENT=production`: only `https` URLs are called (plain `http`
    /// also in development).
    pub https_only: bool,
}

impl SsrfPolicy {
    /// Parses `WEBHOOK_ALLOWED_CIDRS` (comma-separated CIDRs or addresses).
    pub fn parse_cidrs(value: &str) -> Result<Vec<IpNet>, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not a CIDR or an IP address"))
            })
            .collect()
    }

    fn allows_ip(&self, ip: IpAddr) -> bool {
        self.allowed_cidrs.iter().any(|net| net.contains(&ip))
    }

    fn allows_host(&self, host: &str) -> bool {
        self.allowed_hosts.iter().any(|h| h == host)
    }

    /// Checks one address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allows_ip(ip) {
            return Ok(());
        }
        match blocked_class(ip) {
            Some(class) => Err(Refusal::Blocked { class }),
            None => Ok(()),
        }
    }

    /// The checks that need no lookup, made on every URL before a request
    /// goes out: the scheme, an address literal (which no resolver ever
    /// sees), a metadata host name. Answers the host name still to resolve
    /// (through [`Self::resolve`]), or `None` for an address literal.
    pub fn check_target<'u>(&self, url: &'u url::Url) -> Result<Option<&'u str>, Refusal> {
        match url.scheme() {
            "https" => {}
            "http" if !self.https_only => {}
            other => return Err(Refusal::Scheme(other.to_owned())),
        }
        // The WHATWG parser has already turned `2130706433`, `0x7f.1` and
        // `127.1` into 127.0.0.1: every spelling of an address is a literal.
        match url.host() {
            None => Err(Refusal::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)).map(|()| None),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)).map(|()| None),
            Some(url::Host::Domain(name)) => {
                let lower = name.trim_end_matches('.').to_ascii_lowercase();
                if lower.is_empty() {
                    return Err(Refusal::NoHost);
                }
                if !self.allows_host(&lower) && METADATA_HOSTS.contains(&lower.as_str()) {
                    return Err(Refusal::MetadataHost(lower));
                }
                Ok(Some(name))
            }
        }
    }

    /// The registration check of `url`: everything [`Self::check_target`]
    /// checks, and the addresses its name resolves to now. A name that does
    /// not resolve (or not within a few seconds) passes: see the module
    /// documentation.
    pub async fn check_url(&self, url: &url::Url) -> Result<(), Refusal> {
        let Some(name) = self.check_target(url)? else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        match tokio::time::timeout(REGISTRATION_LOOKUP_TIMEOUT, self.resolve(name, port)).await {
            Ok(Ok(_)) | Ok(Err(Refusal::Unresolvable)) | Err(_) => Ok(()),
            Ok(Err(refusal)) => Err(refusal),
        }
    }

    /// [`Self::check_url`] for a URL a caller registers as `field`: a
    /// refusal is a 422 naming the field. The URL itself is never logged
    /// or echoed (a Slack webhook URL is a credential).
    pub async fn admit(&self, field: &'static str, url: &str) -> Result<(), InvalidField> {
        let refusal = match url::Url::parse(url) {
            Ok(parsed) => self.check_url(&parsed).await.err(),
            Err(_) => Some(Refusal::NotAUrl),
        };
        match refusal {
            None => Ok(()),
            Some(refusal) => {
                tracing::warn!(field, %refusal, "outbound URL refused at registration");
                Err(InvalidField::new(field, format!("refused: {refusal}")))
            }
        }
    }

    /// Checks `host` (a name or an address literal, IPv6 with or without
    /// brackets) and resolves it; answers the addresses to connect to.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(Refusal::NoHost);
        }
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(ip) = lower.parse::<IpAddr>() {
            self.check_ip(ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let allowed_host = self.allows_host(&lower);
        if !allowed_host && METADATA_HOSTS.contains(&lower.as_str()) {
            return Err(Refusal::MetadataHost(lower));
        }
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((lower.as_str(), port))
            .await
            .map_err(|_| Refusal::Unresolvable)?
            .collect();
        if addrs.is_empty() {
            return Err(Refusal::Unresolvable);
        }
        if !allowed_host {
            for addr in &addrs {
                self.check_ip(addr.ip())?;
            }
        }
        Ok(addrs)
    }
}

/// The class of a non-public address, or `None` for a public one.
pub fn blocked_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn in_net(ip: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let rules: &[([u8; 4], u8, &'static str)] = &[
        ([0, 0, 0, 0], 8, "unspecified"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "CGNAT"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "reserved"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "reserved"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    if ip == Ipv4Addr::BROADCAST {
        return Some("broadcast");
    }
    rules
        .iter()
        .find(|(net, prefix, _)| in_net(ip, *net, *prefix))
        .map(|(_, _, class)| *class)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let s = ip.segments();
    // Forms that carry an IPv4 address: judged by that address.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    if let Some(v4) = ip.to_ipv4_mapped() {
        return blocked_v4(v4).map(|_| "IPv4-mapped non-public");
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        // IPv4-compatible (deprecated): ::a.b.c.d.
        return blocked_v4(embedded(s[6], s[7]))
            .map(|_| "IPv4-compatible non-public")
            .or(Some("reserved"));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return blocked_v4(embedded(s[6], s[7])).map(|_| "NAT64 non-public");
    }
    if s[0] == 0x2002 {
        return blocked_v4(embedded(s[1], s[2])).map(|_| "6to4 non-public");
    }
    match s[0] {
        x if x & 0xfe00 == 0xfc00 => Some("private"),
        x if x & 0xffc0 == 0xfe80 => Some("link-local"),
        x if x & 0xffc0 == 0xfec0 => Some("site-local"),
        x if x & 0xff00 == 0xff00 => Some("multicast"),
        0x2001 if s[1] == 0x0db8 => Some("documentation"),
        0x3fff if s[1] & 0xf000 == 0 => Some("documentation"),
        0x0100 if s[1..4] == [0, 0, 0] => Some("discard-only"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> Option<&'static str> {
        blocked_class(ip.parse().expect("an address"))
    }

    #[test]
    fn every_non_public_class_is_blocked() {
        for (ip, expected) in [
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "CGNAT"),
            ("100.127.255.254", "CGNAT"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("192.0.2.10", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fc00::1", "private"),
            ("fd12:3456::1", "private"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("::ffff:127.0.0.1", "IPv4-mapped non-public"),
            ("::ffff:169.254.169.254", "IPv4-mapped non-public"),
            ("::127.0.0.1", "IPv4-compatible non-public"),
            ("64:ff9b::7f00:1", "NAT64 non-public"),
            ("64:ff9b::a9fe:a9fe", "NAT64 non-public"),
            ("2002:7f00:1::", "6to4 non-public"),
            ("2002:c0a8:101::1", "6to4 non-public"),
        ] {
            assert_eq!(class(ip), Some(expected), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[actix_web::test]
    async fn names_literals_and_the_allowlist() {
        let strict = SsrfPolicy::default();
        assert_eq!(
            strict.resolve("localhost", 80).await,
            Err(Refusal::Blocked { class: "loopback" })
        );
        assert_eq!(
            strict.resolve("[::1]", 80).await,
            Err(Refusal::Blocked { class: "loopback" })
        );
        assert_eq!(
            strict.resolve("metadata.google.internal", 80).await,
            Err(Refusal::MetadataHost("metadata.google.internal".into()))
        );
        assert_eq!(
            strict.resolve("Metadata.Google.Internal.", 80).await,
            Err(Refusal::MetadataHost("metadata.google.internal".into()))
        );
        let allowed = SsrfPolicy {
            allowed_cidrs: SsrfPolicy::parse_cidrs("127.0.0.1/32, ::1").expect("CIDRs"),
            ..SsrfPolicy::default()
        };
        assert_eq!(
            allowed.resolve("127.0.0.1", 8080).await,
            Ok(vec!["127.0.0.1:8080".parse().expect("address")])
        );
        assert!(allowed.resolve("[::1]", 8080).await.is_ok());
        // Only what the allowlist names.
        assert_eq!(
            allowed.resolve("127.0.0.2", 80).await,
            Err(Refusal::Blocked { class: "loopback" })
        );
        assert!(SsrfPolicy::parse_cidrs("nonsense").is_err());
    }

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("a URL")
    }

    #[test]
    fn every_spelling_of_an_inside_address_is_a_literal_and_refused() {
        let strict = SsrfPolicy::default();
        for u in [
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://127.1/",
            "http://017700000001/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::127.0.0.1]/",
            "https://[0:0:0:0:0:ffff:a9fe:a9fe]/",
        ] {
            assert!(
                matches!(strict.check_target(&url(u)), Err(Refusal::Blocked { .. })),
                "{u}"
            );
        }
        assert_eq!(
            strict.check_target(&url("https://METADATA.google.internal./x")),
            Err(Refusal::MetadataHost("metadata.google.internal".into()))
        );
        assert_eq!(
            strict.check_target(&url("https://hooks.slack.com/services/x")),
            Ok(Some("hooks.slack.com"))
        );
        assert_eq!(strict.check_target(&url("https://8.8.8.8/x")), Ok(None));
    }

    #[test]
    fn production_calls_https_only() {
        let production = SsrfPolicy {
            https_only: true,
            ..SsrfPolicy::default()
        };
        assert_eq!(
            production.check_target(&url("http://8.8.8.8/x")),
            Err(Refusal::Scheme("http".into()))
        );
        assert!(production.check_target(&url("https://8.8.8.8/x")).is_ok());
        assert!(
            SsrfPolicy::default()
                .check_target(&url("http://8.8.8.8/x"))
                .is_ok()
        );
        assert_eq!(
            SsrfPolicy::default().check_target(&url("ftp://8.8.8.8/x")),
            Err(Refusal::Scheme("ftp".into()))
        );
    }

    #[actix_web::test]
    async fn registration_refuses_what_resolves_inside_and_lets_unknown_names_through() {
        let strict = SsrfPolicy::default();
        let field = |r: Result<(), InvalidField>| r.expect_err("refused").field;
        assert_eq!(
            field(
                strict
                    .admit("slack_webhook_url", "https://localhost/x")
                    .await
            ),
            "slack_webhook_url"
        );
        assert_eq!(
            field(strict.admit("hitl_webhook_url", "https://10.1.2.3/x").await),
            "hitl_webhook_url"
        );
        // `.invalid` never resolves (RFC 6761): checked again when sending.
        assert!(strict.admit("u", "https://nowhere.invalid/x").await.is_ok());
        let local_names = SsrfPolicy {
            allowed_hosts: vec!["localhost".into()],
            ..SsrfPolicy::default()
        };
        assert!(local_names.admit("u", "http://localhost:9/x").await.is_ok());
    }
}
