//! Who the client is (SPEC §7): the socket peer, or the right-most untrusted `X-Forwarded-For`
//! hop when the peer is a trusted proxy (`client_addr::resolve`). Puts a [`ClientAddr`] in the
//! request extensions for the rate limit, the idempotency scope of anonymous writes, the span,
//! the access line and the forwarded `X-Forwarded-For`.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use ipnet::IpNet;

use crate::client_addr;
use crate::middleware::around::Around;

/// The client of a request, as every later layer and handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client as SPEC §7 defines it (peer, or right-most untrusted `X-Forwarded-For` hop).
    pub client: IpAddr,
    /// The socket peer, for `X-Forwarded-For`.
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy (its `X-Forwarded-For` is kept and appended to).
    pub trusted_peer: bool,
}

#[derive(Clone)]
pub struct RealIp {
    trusted_proxies: Arc<[IpNet]>,
}

impl RealIp {
    pub fn new(trusted_proxies: &[IpNet]) -> Self {
        RealIp {
            trusted_proxies: trusted_proxies.into(),
        }
    }

    pub fn addr(&self, peer: IpAddr, headers: &http::HeaderMap) -> ClientAddr {
        ClientAddr {
            client: client_addr::resolve(peer, headers, &self.trusted_proxies),
            peer,
            trusted_peer: client_addr::is_trusted_peer(peer, &self.trusted_proxies),
        }
    }
}

impl Around for RealIp {
    type State = ();

    fn before(&self, req: &mut Request) -> ((), Option<Response>) {
        // Every listener is served with its `ConnectInfo`; a request built without one (a test
        // calling the router directly) is from loopback.
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let addr = self.addr(peer, req.headers());
        req.extensions_mut().insert(addr);
        ((), None)
    }

    fn after((): (), _: &mut Response) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn the_header_counts_only_from_a_trusted_peer() {
        let real_ip = RealIp::new(&["10.0.0.0/8".parse().unwrap()]);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let direct = real_ip.addr([198, 51, 100, 1].into(), &h);
        assert_eq!(direct.client, IpAddr::from([198, 51, 100, 1]));
        assert!(!direct.trusted_peer);
        let proxied = real_ip.addr([10, 1, 2, 3].into(), &h);
        assert_eq!(proxied.client, IpAddr::from([203, 0, 113, 7]));
        assert_eq!(proxied.peer, IpAddr::from([10, 1, 2, 3]));
        assert!(proxied.trusted_peer);
        // The IPv4-mapped form of a trusted peer is trusted too (one canonicalisation for both).
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert!(real_ip.addr(mapped, &h).trusted_peer);
    }
}
