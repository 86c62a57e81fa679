//! Which client a request comes from, for the limits kept per client: the peer, or, behind a
//! proxy the configuration trusts (`TRUSTED_PROXIES`), the address that proxy forwarded for.
//! `X-Forwarded-For` from anyone else is ignored, since a client could write anything in it.
//! An IPv6 client is counted by its /64, the block one subscriber is given, so that the
//! addresses of one host do not each get a limit of their own.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// The key the per-client limits are kept under.
pub fn limit_key(peer: Option<IpAddr>, forwarded_for: Option<&str>, trusted: &[IpNet]) -> String {
    let Some(mut client) = peer.map(canonical) else { return "unknown".to_owned() };
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&ip));
    if is_trusted(client)
        && let Some(forwarded) = forwarded_for
    {
        // Each proxy appends the address it got the request from: read from the right, past
        // the trusted proxies, to the first address none of them vouches for.
        for hop in forwarded.rsplit(',') {
            // Some proxies write the port too (`1.2.3.4:5678`, `[2001:db8::1]:443`).
            let hop = hop.trim();
            let parsed = hop.parse::<IpAddr>().or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()));
            let Ok(ip) = parsed.map(canonical) else { break };
            client = ip;
            if !is_trusted(ip) {
                break;
            }
        }
    }
    match client {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{}/64", Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
        }
    }
}

/// An IPv4 address written as IPv6 is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Parses `TRUSTED_PROXIES`: addresses or CIDRs separated by commas. Returns the entries that
/// parse and the ones that do not.
pub fn parse_trusted(raw: &str) -> (Vec<IpNet>, Vec<String>) {
    let mut nets = Vec::new();
    let mut bad = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match entry.parse::<IpNet>().or_else(|_| entry.parse::<IpAddr>().map(IpNet::from)) {
            Ok(net) => nets.push(net),
            Err(_) => bad.push(entry.to_owned()),
        }
    }
    (nets, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_forwarded_header_counts_only_from_a_trusted_proxy() {
        let trusted = parse_trusted("10.0.0.0/8, 192.168.1.1").0;
        // From a stranger the header is ignored: it could say anything.
        assert_eq!(limit_key(ip("203.0.113.9"), Some("198.51.100.1"), &trusted), "203.0.113.9");
        // Through a trusted proxy, the client it forwarded for.
        assert_eq!(limit_key(ip("10.1.2.3"), Some("198.51.100.1"), &trusted), "198.51.100.1");
        // A client prepending its own entries does not escape: the rightmost untrusted counts.
        let forged = "1.2.3.4, 5.6.7.8, 198.51.100.1, 192.168.1.1";
        assert_eq!(limit_key(ip("10.1.2.3"), Some(forged), &trusted), "198.51.100.1");
        // Garbage in the header stops the walk at the last address a proxy wrote.
        assert_eq!(limit_key(ip("10.1.2.3"), Some("<script>, 198.51.100.7"), &trusted), "198.51.100.7");
        assert_eq!(limit_key(ip("10.1.2.3"), Some("\0\0\0"), &trusted), "10.1.2.3");
        assert_eq!(limit_key(ip("10.1.2.3"), Some(&"9".repeat(100_000)), &trusted), "10.1.2.3");
        assert_eq!(limit_key(None, None, &trusted), "unknown");
        // Entries with ports count by their address.
        assert_eq!(limit_key(ip("10.1.2.3"), Some("198.51.100.1:5678"), &trusted), "198.51.100.1");
        assert_eq!(limit_key(ip("10.1.2.3"), Some("[2001:db8::7]:443"), &trusted), "2001:db8::/64");
        assert_eq!(limit_key(ip("10.1.2.3"), Some("203.0.113.5:1, 10.0.0.1:80"), &trusted), "203.0.113.5");
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        let none: Vec<IpNet> = Vec::new();
        let a = limit_key(ip("2001:db8:1:2:aaaa::1"), None, &none);
        let b = limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), None, &none);
        assert_eq!(a, b);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_ne!(a, limit_key(ip("2001:db8:1:3::1"), None, &none));
        assert_eq!(limit_key(ip("::ffff:203.0.113.9"), None, &none), "203.0.113.9");
    }

    #[test]
    fn bad_proxy_entries_are_reported() {
        let (nets, bad) = parse_trusted("10.0.0.0/8, nonsense, ::1, 300.1.1.1");
        assert_eq!(nets.len(), 2);
        assert_eq!(bad, ["nonsense", "300.1.1.1"]);
    }
}
