//! The guard against requests into the host's own network (SSRF): which
//! addresses a webhook may not reach unless `allow_private = true`, and a
//! resolver that refuses a name resolving to one, checked at every
//! connection (so a name that changes what it resolves to is caught too).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why `ip` may not be reached (`"a loopback address"`), or None when it may.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_broadcast() {
        Some("a broadcast address")
    } else if a == 100 && (b & 0xc0) == 64 {
        Some("a shared (carrier-grade NAT) address")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_loopback() {
        Some("a loopback address")
    } else if let Some(v4) = ip.to_ipv4_mapped() {
        forbidden_v4(v4).map(|_| "an IPv4-mapped form of a forbidden address")
    } else if s[..6] == [0; 6] {
        // IPv4-compatible (`::a.b.c.d`, deprecated): judged as its IPv4 address.
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        forbidden_v4(v4).map(|_| "an IPv4-compatible form of a forbidden address")
    } else if (s[0] & 0xffc0) == 0xfe80 {
        Some("a link-local address")
    } else if (s[0] & 0xffc0) == 0xfec0 {
        Some("a site-local address")
    } else if (s[0] & 0xfe00) == 0xfc00 {
        Some("a unique-local address")
    } else {
        None
    }
}

/// The URL's host when it is an IP address (which is connected to without
/// resolving, so the resolver never sees it).
pub fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()
}

/// A name resolved to an address the guard refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves to {addr}, {why} (set `allow_private = true` to allow it)")]
pub struct Blocked {
    pub host: String,
    pub addr: IpAddr,
    pub why: &'static str,
}

/// Resolves with the system resolver and refuses the whole answer when any
/// address in it is forbidden (an answer mixing public and private
/// addresses must not reach the private one on a retry).
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some((addr, why)) = addrs.iter().find_map(|a| forbidden(a.ip()).map(|why| (a.ip(), why))) {
                return Err(Box::new(Blocked { host, addr, why }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<&'static str> {
        forbidden(s.parse().unwrap())
    }

    #[test]
    fn ipv4_private_ranges_are_refused_and_public_ones_allowed() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "100.64.0.1",
        ] {
            assert!(v4(ip).is_some(), "{ip} must be refused");
        }
        for ip in ["8.8.8.8", "172.15.255.255", "172.32.0.1", "192.169.0.1", "169.253.0.1", "100.128.0.1", "1.1.1.1"] {
            assert_eq!(v4(ip), None, "{ip} must be allowed");
        }
        assert_eq!(v4("169.254.169.254"), Some("a link-local address"));
        assert_eq!(v4("127.0.0.1"), Some("a loopback address"));
    }

    #[test]
    fn ipv6_private_ranges_are_refused_and_public_ones_allowed() {
        for ip in ["::1", "::", "fe80::1", "febf::1", "fc00::1", "fd12:3456::1", "fec0::1"] {
            assert!(v4(ip).is_some(), "{ip} must be refused");
        }
        for ip in ["2001:4860:4860::8888", "2606:4700::1111", "fe7f::1", "ff02::1"] {
            assert_eq!(v4(ip), None, "{ip} must be allowed");
        }
        assert_eq!(v4("fd00::1"), Some("a unique-local address"));
    }

    #[test]
    fn ipv4_mapped_and_compatible_forms_are_judged_as_ipv4() {
        for ip in
            ["::ffff:127.0.0.1", "::ffff:10.1.2.3", "::ffff:169.254.169.254", "::ffff:192.168.0.1", "::ffff:0.0.0.0"]
        {
            assert_eq!(v4(ip), Some("an IPv4-mapped form of a forbidden address"), "{ip}");
        }
        assert_eq!(v4("::127.0.0.1"), Some("an IPv4-compatible form of a forbidden address"));
        assert_eq!(v4("::ffff:8.8.8.8"), None);
        assert_eq!(v4("::8.8.8.8"), None);
    }

    #[test]
    fn literal_hosts_are_seen_and_names_are_left_to_the_resolver() {
        let ip = |u: &str| literal_ip(&reqwest::Url::parse(u).unwrap());
        assert_eq!(ip("http://127.0.0.1:8080/x"), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(ip("https://[::ffff:10.0.0.1]/"), Some("::ffff:10.0.0.1".parse().unwrap()));
        assert_eq!(ip("https://example.com/"), None);
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_for_a_loopback_address() {
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match GuardedResolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        let blocked = err.downcast_ref::<Blocked>().expect("a Blocked error");
        assert!(blocked.addr.is_loopback(), "{blocked}");
    }
}
