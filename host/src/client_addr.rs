//! Who the client is behind trusted proxies (`TRUSTED_PROXIES`): its
//! address, for rate limits and logs.
//!
//! Invariants:
//! - A forwarding header counts only when the TCP peer is a trusted proxy:
//!   anyone else may write it. Only the one header the proxies are known to
//!   write counts (`TRUSTED_PROXY_HEADER`); a client can always add the
//!   other, which no proxy would correct.
//! - The chain is walked from the right, from the peer back towards the
//!   client, and ends at the first hop that is not a trusted proxy: that is
//!   the client. What stands left of it was written by the client itself
//!   and is never read. A hop that does not read as an address ends the
//!   walk at the last trusted hop before it (a proxy's own address, never a
//!   client's choice).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::config::ForwardedHeader;

/// The networks whose forwarding header is believed, and which header.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
}

/// The client of a request, as far as the trusted proxies tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The address as rate limits count it: an IPv6 client by its /64 (a
    /// client gets a whole /64 to pick addresses from).
    pub fn limit_key(self) -> IpAddr {
        match self.0 {
            IpAddr::V6(ip) => {
                let [a, b, c, d, ..] = ip.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
            ip => ip,
        }
    }
}

impl TrustedProxies {
    /// `list`: comma-separated CIDRs or addresses (`10.0.0.0/8, ::1`).
    pub fn parse(list: &str, header: ForwardedHeader) -> anyhow::Result<Self> {
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
        Ok(Self { networks, header })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|network| network.contains(&ip))
    }

    /// The client of a request that reached this server from `peer` with
    /// `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return ClientAddr(client);
        }
        for hop in self.hops(headers).into_iter().rev() {
            let Some(hop) = hop else { break };
            client = hop.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        ClientAddr(client)
    }

    /// The chain's hops, left to right (`None` for one that does not read
    /// as an address), of every instance of the header in order.
    fn hops(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        let values = headers.get_all(self.header.name()).iter();
        let text: Vec<&str> = values.map(|value| value.to_str().unwrap_or("?")).collect();
        let elements = text.iter().flat_map(|value| value.split(','));
        match self.header {
            ForwardedHeader::XForwardedFor => elements.map(|hop| node_address(hop.trim())).collect(),
            ForwardedHeader::Forwarded => elements
                .map(|element| {
                    element.split(';').find_map(|pair| {
                        let (name, value) = pair.split_once('=')?;
                        name.trim().eq_ignore_ascii_case("for").then(|| node_address(value.trim().trim_matches('"')))
                    })?
                })
                .collect(),
        }
    }
}

/// An address as a proxy writes it: `192.0.2.1`, `192.0.2.1:80`,
/// `[2001:db8::1]:80`, `2001:db8::1`.
fn node_address(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    node.parse().ok().or_else(|| node.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
}

/// Records the request's `ClientAddr` in its extensions.
pub async fn identify_client(State(proxies): State<Arc<TrustedProxies>>, mut request: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let client = proxies.client(peer.ip(), request.headers());
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

    fn trusting(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list, ForwardedHeader::XForwardedFor).unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(trusting("10.0.0.0/8").client(ip("203.0.113.9"), &spoofed), ClientAddr(ip("203.0.113.9")));
    }

    #[test]
    fn the_client_is_the_right_most_address_no_trusted_proxy_wrote() {
        let proxies = trusting("10.0.0.0/8, 192.168.1.1");
        // The client forged "1.2.3.4"; the edge proxy saw it come from 203.0.113.9.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &chain), ClientAddr(ip("203.0.113.9")));
        let two_headers = headers(&[("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "192.168.1.1")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &two_headers), ClientAddr(ip("203.0.113.9")));
        let all_trusted = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &all_trusted), ClientAddr(ip("10.9.9.9")));
    }

    #[test]
    fn garbage_ends_the_walk_at_a_trusted_hop_never_at_the_clients_choice() {
        let proxies = trusting("10.0.0.0/8");
        // Left of the client's own address: never read.
        let forged_left = headers(&[("x-forwarded-for", "junk, 203.0.113.9")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &forged_left), ClientAddr(ip("203.0.113.9")));
        // Between trusted hops: the last trusted one.
        let broken = headers(&[("x-forwarded-for", "203.0.113.9, unknown, 10.1.1.1")]);
        assert_eq!(proxies.client(ip("10.0.0.2"), &broken), ClientAddr(ip("10.1.1.1")));
        for value in ["unknown", "not an address", ""] {
            let chain = headers(&[("x-forwarded-for", value)]);
            assert_eq!(proxies.client(ip("10.0.0.2"), &chain), ClientAddr(ip("10.0.0.2")), "{value:?}");
        }
        assert_eq!(
            trusting("127.0.0.1").client(ip("::ffff:127.0.0.1"), &HeaderMap::new()),
            ClientAddr(ip("127.0.0.1"))
        );
    }

    #[test]
    fn only_the_configured_header_counts() {
        let forwarded = TrustedProxies::parse("::1/128, 10.0.0.0/8", ForwardedHeader::Forwarded).unwrap();
        let both = headers(&[
            ("forwarded", r#"for="[2001:db8::7]:4711";proto=https, for=10.0.0.3"#),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(forwarded.client(ip("::1"), &both), ClientAddr(ip("2001:db8::7")));
        assert_eq!(trusting("::1/128").client(ip("::1"), &both), ClientAddr(ip("198.51.100.1")));
        let only_forwarded = headers(&[("forwarded", "for=198.51.100.9")]);
        assert_eq!(
            trusting("::1/128").client(ip("::1"), &only_forwarded),
            ClientAddr(ip("::1")),
            "the other header is the client's"
        );
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let client = ClientAddr(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
        assert_eq!(client.limit_key(), ip("2001:db8:1:2::"));
        assert_eq!(ClientAddr(ip("192.0.2.1")).limit_key(), ip("192.0.2.1"));
    }

    #[test]
    fn a_bad_list_is_refused() {
        assert!(TrustedProxies::parse("10.0.0.0/33", ForwardedHeader::XForwardedFor).is_err());
        assert!(TrustedProxies::parse("proxy.internal", ForwardedHeader::XForwardedFor).is_err());
        assert!(TrustedProxies::parse("", ForwardedHeader::XForwardedFor).unwrap().networks.is_empty());
    }
}
