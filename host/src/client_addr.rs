//! Who the client is behind trusted proxies (`TRUSTED_PROXIES`): its
//! address, for rate limits and logs, and the scheme it used.
//!
//! Invariants:
//! - Forwarding headers count only when the TCP peer is a trusted proxy:
//!   anyone else may write them.
//! - The client is the right-most address of the chain that is not a
//!   trusted proxy, walking back from the peer through `Forwarded` (RFC
//!   7239) or, without it, `X-Forwarded-For`: what stands left of it was
//!   written by the client itself and may be forged. A chain of trusted
//!   proxies only ends at its left-most address.
//! - A chain that does not read as addresses counts as no chain: the
//!   client is the peer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The networks whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// The client of a request, as far as the trusted proxies tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    pub ip: IpAddr,
    /// Whether the client's connection was HTTPS (to the first trusted
    /// proxy, or to this server).
    pub https: bool,
}

impl TrustedProxies {
    /// `list`: comma-separated CIDRs or addresses (`10.0.0.0/8, ::1`).
    pub fn parse(list: &str) -> anyhow::Result<Self> {
        let networks = list
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .with_context(|| format!("TRUSTED_PROXIES: `{item}` is neither a CIDR nor an address"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self(networks))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|network| network.contains(&ip))
    }

    /// The client of a request that reached this server from `peer`, over
    /// TLS or not, with `headers`.
    pub fn client(&self, peer: IpAddr, tls: bool, headers: &HeaderMap) -> ClientAddr {
        let own = ClientAddr { ip: peer.to_canonical(), https: tls };
        if !self.trusts(peer) {
            return own;
        }
        let Some(hops) = forwarded_for(headers).or_else(|| x_forwarded_for(headers)) else { return own };
        let ip = hops.iter().rev().copied().find(|hop| !self.trusts(*hop)).or(hops.first().copied()).unwrap_or(own.ip);
        let https = forwarded_proto(headers).map_or(tls, |proto| proto.eq_ignore_ascii_case("https"));
        ClientAddr { ip: ip.to_canonical(), https }
    }
}

/// The `for=` addresses of every `Forwarded` element, in order; `None`
/// when there is none or one does not read as an address (an obfuscated
/// or `unknown` node breaks the chain).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("forwarded") {
        for element in value.to_str().ok()?.split(',') {
            let node = element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
            });
            if let Some(node) = node {
                hops.push(node_address(node)?);
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// An RFC 7239 node: `192.0.2.1`, `192.0.2.1:80`, `[2001:db8::1]:80`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse().ok().or_else(|| node.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        for hop in value.to_str().ok()?.split(',') {
            hops.push(node_address(hop.trim())?);
        }
    }
    (!hops.is_empty()).then_some(hops)
}

/// The scheme the first proxy was reached with: `Forwarded: proto=`, else
/// the first `X-Forwarded-Proto`.
fn forwarded_proto(headers: &HeaderMap) -> Option<String> {
    let from_forwarded =
        headers.get_all("forwarded").iter().filter_map(|value| value.to_str().ok()).find_map(|value| {
            value.split(',').next()?.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim().eq_ignore_ascii_case("proto").then(|| value.trim().trim_matches('"').to_string())
            })
        });
    from_forwarded.or_else(|| {
        let value = headers.get("x-forwarded-proto")?.to_str().ok()?;
        Some(value.split(',').next()?.trim().to_string())
    })
}

/// Whether this server's own listener speaks TLS (set by `startup`).
#[derive(Debug, Clone, Copy)]
pub struct ListenerTls(pub bool);

/// Records the request's `ClientAddr` in its extensions.
pub async fn identify_client(
    State((proxies, tls)): State<(Arc<TrustedProxies>, ListenerTls)>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = proxies.client(peer.ip(), tls.0, request.headers());
        request.extensions_mut().insert(client);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            proxies.client(ip("203.0.113.9"), false, &spoofed),
            ClientAddr { ip: ip("203.0.113.9"), https: false }
        );
    }

    #[test]
    fn the_client_is_the_right_most_address_no_trusted_proxy_wrote() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap();
        // The client forged "1.2.3.4"; the edge proxy saw it come from 203.0.113.9.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.1.1"), ("x-forwarded-proto", "https")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), false, &chain), ClientAddr { ip: ip("203.0.113.9"), https: true });
        let two_headers = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "192.168.1.1")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), false, &two_headers).ip, ip("203.0.113.9"));
        let all_trusted = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), false, &all_trusted).ip, ip("10.9.9.9"));
    }

    #[test]
    fn forwarded_wins_over_x_forwarded_for_and_reads_ports_and_ipv6() {
        let proxies = TrustedProxies::parse("::1/128, 10.0.0.0/8").unwrap();
        let both = headers(&[
            ("forwarded", r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.3"#),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(proxies.client(ip("::1"), false, &both), ClientAddr { ip: ip("2001:db8::7"), https: true });
        let with_port = headers(&[("forwarded", "for=198.51.100.2:8080")]);
        assert_eq!(
            proxies.client(ip("10.0.0.1"), true, &with_port),
            ClientAddr { ip: ip("198.51.100.2"), https: true }
        );
    }

    #[test]
    fn an_unreadable_chain_counts_as_none() {
        let proxies = TrustedProxies::parse("127.0.0.1").unwrap();
        for value in ["unknown", "not an address", ""] {
            let chain = headers(&[("x-forwarded-for", value)]);
            assert_eq!(proxies.client(ip("127.0.0.1"), false, &chain).ip, ip("127.0.0.1"), "{value:?}");
        }
        assert_eq!(proxies.client(ip("::ffff:127.0.0.1"), false, &HeaderMap::new()).ip, ip("127.0.0.1"));
    }

    #[test]
    fn a_bad_list_is_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
        assert!(TrustedProxies::parse("").unwrap().0.is_empty());
    }
}
