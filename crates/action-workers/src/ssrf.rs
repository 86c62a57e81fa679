//! Which addresses a webhook may reach. Private, loopback, link-local, shared, multicast and
//! metadata addresses are refused unless a configured CIDR admits them, and the check runs
//! on every address a name resolves to, through the HTTP client's own resolver, so a
//! redirect or a DNS answer cannot lead a request inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// The address policy of outgoing requests.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Ranges admitted although they are not public (e.g. `127.0.0.0/8` in tests).
    pub allowed: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to connect to {0}: not a public address (allow it with WEBHOOK_ALLOWED_CIDRS)")]
pub struct Refused(pub IpAddr);

/// A name that resolves to no permitted address. The addresses it resolved to are not
/// named: in a delivery log they would tell a stranger what a name means inside the network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused to connect to {0}: it resolves to no public address (allow it with WEBHOOK_ALLOWED_CIDRS)")]
pub struct RefusedName(pub String);

impl AddressPolicy {
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        if is_public(ip) || self.allowed.iter().any(|net| net.contains(&ip)) { Ok(()) } else { Err(Refused(ip)) }
    }

    /// A resolver for the HTTP client that keeps only permitted addresses and fails when
    /// none is left.
    pub fn resolver(&self) -> Arc<PolicyResolver> {
        Arc::new(PolicyResolver { policy: self.clone() })
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // includes 169.254.169.254, the cloud metadata address
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still routed inside some networks)
        || first == 0x2001 && second == 0x0db8 // documentation
        || first == 0x2002 // 6to4: an IPv4 address, any of them, inside
        || first == 0x2001 && second == 0 // Teredo: the same
        || first == 0x0064 && second == 0xff9b // NAT64 (64:ff9b::/96 and the local-use /48)
        || ip.segments()[..6] == [0; 6]) // IPv4-compatible ::a.b.c.d (and ::, ::1)
}

pub struct PolicyResolver {
    policy: AddressPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let any = !resolved.is_empty();
            let permitted: Vec<SocketAddr> =
                resolved.into_iter().filter(|addr| policy.check(addr.ip()).is_ok()).collect();
            if permitted.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> =
                    if any { Box::new(RefusedName(host)) } else { format!("{host} has no address").into() };
                return Err(err);
            }
            let addrs: Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_and_special_ranges_are_refused() {
        let policy = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            // Ranges that carry an IPv4 address inside, or are internal by definition.
            "64:ff9b::a9fe:a9fe",  // NAT64 of 169.254.169.254
            "64:ff9b:1::a00:1",    // local-use NAT64
            "2002:a9fe:a9fe::1",   // 6to4 of 169.254.169.254
            "2001:0:a9fe:a9fe::1", // Teredo
            "::a9fe:a9fe",         // IPv4-compatible 169.254.169.254
            "::127.0.0.1",
            "fec0::1", // site-local
        ] {
            assert!(policy.check(ip(refused)).is_err(), "{refused} was allowed");
        }
        for allowed in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(policy.check(ip(allowed)).is_ok(), "{allowed} was refused");
        }
    }

    #[tokio::test]
    async fn a_refused_name_does_not_tell_what_it_resolves_to() {
        let resolver = AddressPolicy::default().resolver();
        let name: Name = "localhost".parse().unwrap();
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost was allowed"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("localhost") && err.contains("no public address"), "{err}");
        assert!(!err.contains("127.0.0.1") && !err.contains("::1"), "{err}");
    }

    #[test]
    fn configured_ranges_are_admitted() {
        let policy = AddressPolicy { allowed: vec!["127.0.0.0/8".parse().unwrap()] };
        assert!(policy.check(ip("127.0.0.1")).is_ok());
        assert!(policy.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(policy.check(ip("10.0.0.1")).is_err());
    }
}
