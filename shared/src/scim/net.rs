//! Where we are willing to connect.
//!
//! A bridge URL comes from a customer, so it may point anywhere: at our own cloud metadata
//! service, at an internal admin port, at localhost. We refuse internal addresses at connect
//! time, after DNS resolution, inside the resolver that the HTTP client uses for the actual
//! connection: a name that resolves to a public address when checked and to 127.0.0.1 when
//! connected (DNS rebinding) cannot slip through, because there is only one resolution and it
//! is the one we filter. URLs with an IP literal never reach a resolver, so they are checked
//! up front by [`check_literal_host`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Whether a non-public address may be called. Tests and the demo allow it to reach the
/// emulator on loopback; production never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddressPolicy {
    pub allow_private: bool,
}

/// Is this an address no customer bridge can legitimately have?
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00 // unique local, incl. fd00:ec2::254 (AWS metadata)
                || (seg0 & 0xffc0) == 0xfe80 // link-local
                || (seg0 & 0xffc0) == 0xfec0 // site-local (deprecated, still routable inside)
                || is_nat64_of_internal(v6)
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16, incl. 169.254.169.254 metadata
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// 64:ff9b::/96 embeds an IPv4 address; an internal one behind it is still internal.
fn is_nat64_of_internal(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return is_internal_v4(v4);
    }
    false
}

/// The error a refused resolution carries through the HTTP stack, recognised on the way out
/// (see `client::classify_transport`).
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to internal addresses ({addr})")]
pub struct BlockedAddress {
    pub host: String,
    pub addr: String,
}

/// Checks a URL host that is an IP literal, which the resolver never sees.
pub fn check_literal_host(
    host: &url::Host<&str>,
    policy: AddressPolicy,
) -> Result<(), BlockedAddress> {
    let ip = match host {
        url::Host::Ipv4(v4) => IpAddr::V4(*v4),
        url::Host::Ipv6(v6) => IpAddr::V6(*v6),
        // Names are checked after resolution, by the resolver.
        url::Host::Domain(_) => return Ok(()),
    };
    if !policy.allow_private && is_internal(ip) {
        return Err(BlockedAddress {
            host: ip.to_string(),
            addr: ip.to_string(),
        });
    }
    Ok(())
}

/// A resolver that drops internal addresses unless the policy allows them, and fails the
/// connection when nothing is left.
#[derive(Debug, Clone)]
pub struct FilteringResolver {
    policy: AddressPolicy,
}

impl FilteringResolver {
    pub fn new(policy: AddressPolicy) -> Arc<Self> {
        Arc::new(Self { policy })
    }
}

impl reqwest::dns::Resolve for FilteringResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| policy.allow_private || !is_internal(a.ip()))
                .collect();
            if allowed.is_empty()
                && let Some(first) = addrs.first()
            {
                return Err(Box::new(BlockedAddress {
                    host,
                    addr: first.ip().to_string(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_hosts() {
        let deny = AddressPolicy {
            allow_private: false,
        };
        let allow = AddressPolicy {
            allow_private: true,
        };
        let h = |s: &str| url::Url::parse(s).unwrap();
        let u = h("https://127.0.0.1:8443/");
        assert!(check_literal_host(&u.host().unwrap(), deny).is_err());
        assert!(check_literal_host(&u.host().unwrap(), allow).is_ok());
        let u = h("https://[::1]/");
        assert!(check_literal_host(&u.host().unwrap(), deny).is_err());
        let u = h("https://scim.example.com/");
        assert!(check_literal_host(&u.host().unwrap(), deny).is_ok());
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_resolve_inside() {
        use reqwest::dns::Resolve;
        let r = FilteringResolver::new(AddressPolicy {
            allow_private: false,
        });
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = r.resolve(name).await.err().expect("blocked");
        assert!(err.downcast_ref::<BlockedAddress>().is_some());
        let r = FilteringResolver::new(AddressPolicy {
            allow_private: true,
        });
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        assert!(r.resolve(name).await.unwrap().next().is_some());
    }
}
