//! Who the client is, for rate limiting and `X-Forwarded-For` (SPEC §7): the socket peer, or —
//! only when the peer is a trusted proxy — the right-most `X-Forwarded-For` hop that is not
//! itself a trusted proxy. A client can never pick its own identity by sending the header.
use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut client = peer;
    // Walk the hops right to left: the nearest hop was added by our trusted peer.
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(list) = value.to_str() else {
            return client;
        };
        for hop in list.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return client;
            };
            client = canonical(ip);
            if !is_trusted(client, trusted) {
                return client;
            }
        }
    }
    client
}

/// Whether the socket peer is a trusted proxy (its `X-Forwarded-For` is kept and appended to).
/// The same test as [`resolve`] makes, so the two can never disagree about a peer.
pub fn is_trusted_peer(peer: IpAddr, trusted: &[IpNet]) -> bool {
    is_trusted(canonical(peer), trusted)
}

/// The rate-limit identity of a client (SPEC §7, issue #4): an IPv4 address as it is, an IPv6
/// address as its /64, since one subscriber is usually handed a whole /64 and could otherwise
/// rotate through 2^64 fresh buckets.
pub fn bucket(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    // Addresses are canonical (IPv4) here; a net written in IPv4-mapped form
    // (`::ffff:10.0.0.0/104`) still covers the IPv4 addresses it names.
    trusted.iter().any(|net| {
        net.contains(&ip)
            || matches!((ip, net), (IpAddr::V4(v4), IpNet::V6(n)) if n.contains(&v4.to_ipv6_mapped()))
    })
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is the IPv4 client it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn xff(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static(v));
        h
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_the_header() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(resolve(peer, &xff("1.2.3.4"), &[]), peer);
    }

    #[test]
    fn a_trusted_proxy_passes_the_rightmost_untrusted_hop() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let got = resolve(peer, &xff("6.6.6.6, 198.51.100.7, 10.0.0.3"), &trusted);
        assert_eq!(got, "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn garbage_in_the_header_stops_the_walk() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(resolve(peer, &xff("1.1.1.1, not-an-ip"), &trusted), peer);
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(bucket(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket(c));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(bucket(v4), v4);
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        let peer: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(
            resolve(peer, &HeaderMap::new(), &[]),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}

/// Property tests (issue #15): the client is the peer, or the right-most untrusted hop behind
/// trusted peers and hops; never anything a client behind an untrusted peer wrote.
#[cfg(test)]
mod proptests {
    #![allow(clippy::unwrap_used)]
    use std::net::{Ipv4Addr, Ipv6Addr};

    use http::HeaderValue;
    use proptest::prelude::*;
    use proptest::sample::select;

    use super::*;

    const NETS: [&str; 9] = [
        "10.0.0.0/8",
        "192.168.0.0/16",
        "172.16.0.0/12",
        "203.0.113.0/24",
        "198.51.100.7/32",
        "2001:db8::/32",
        "2001:db8:1::/48",
        "fd00::/8",
        "::1/128",
    ];

    fn trusted() -> impl Strategy<Value = Vec<IpNet>> {
        let fixed = proptest::sample::subsequence(NETS.to_vec(), 0..=NETS.len()).prop_map(|nets| {
            nets.iter()
                .map(|n| n.parse().unwrap())
                .collect::<Vec<IpNet>>()
        });
        let random = proptest::collection::vec(
            prop_oneof![
                (any::<u32>(), 0u8..=32).prop_map(|(a, p)| {
                    IpNet::new(Ipv4Addr::from(a).into(), p).unwrap().trunc()
                }),
                (any::<u128>(), 0u8..=128).prop_map(|(a, p)| {
                    IpNet::new(Ipv6Addr::from(a).into(), p).unwrap().trunc()
                }),
            ],
            0..2,
        );
        (fixed, random).prop_map(|(mut a, b)| {
            a.extend(b);
            a
        })
    }

    /// Addresses in and around the nets above, and anywhere.
    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<[u8; 3]>().prop_map(|[a, b, c]| IpAddr::from([10, a, b, c])),
            any::<[u8; 2]>().prop_map(|[a, b]| IpAddr::from([192, 168, a, b])),
            any::<u8>().prop_map(|a| IpAddr::from([203, 0, 113, a])),
            any::<u8>().prop_map(|a| IpAddr::from([198, 51, 100, a])),
            any::<u32>().prop_map(|a| IpAddr::from(Ipv4Addr::from(a))),
            any::<u64>().prop_map(|a| IpAddr::from(Ipv6Addr::from(
                (0x2001_0db8_u128 << 96) | u128::from(a)
            ))),
            any::<u128>().prop_map(|a| IpAddr::from(Ipv6Addr::from((0xfd_u128 << 120) | (a >> 8)))),
            Just(IpAddr::from(Ipv6Addr::LOCALHOST)),
            any::<u128>().prop_map(|a| IpAddr::from(Ipv6Addr::from(a))),
        ]
    }

    /// A peer as the socket reports it: IPv4 sometimes arrives IPv4-mapped (a dual-stack
    /// listener).
    fn peer() -> impl Strategy<Value = IpAddr> {
        (addr(), any::<bool>()).prop_map(|(ip, mapped)| match ip {
            IpAddr::V4(v4) if mapped => IpAddr::V6(v4.to_ipv6_mapped()),
            ip => ip,
        })
    }

    #[derive(Debug, Clone)]
    enum Hop {
        /// An address, written plainly, IPv4-mapped (IPv4 only) or with spaces around.
        Addr(IpAddr, u8),
        /// Anything else a client may write.
        Junk(String),
    }

    impl Hop {
        fn text(&self) -> String {
            match self {
                Hop::Addr(IpAddr::V4(v4), 1) => format!("::ffff:{v4}"),
                Hop::Addr(ip, 2) => format!("  {ip}\t"),
                Hop::Addr(ip, _) => ip.to_string(),
                Hop::Junk(s) => s.clone(),
            }
        }

        /// What the hop names, the way the spec reads it (IPv4-mapped is IPv4).
        fn names(&self) -> Option<IpAddr> {
            match self {
                Hop::Addr(ip, _) => Some(canonical(*ip)),
                Hop::Junk(s) => s.trim().parse::<IpAddr>().ok().map(canonical),
            }
        }
    }

    fn hop() -> impl Strategy<Value = Hop> {
        prop_oneof![
            6 => (addr(), 0u8..3).prop_map(|(ip, form)| Hop::Addr(ip, form)),
            1 => select(vec![
                "unknown", "", " ", "1.2.3.4:80", "[2001:db8::1]", "1.2.3", "999.1.1.1",
                "_hidden", "2001:db8::1%eth0", "1.2.3.4 5.6.7.8", "0x7f.1",
            ])
            .prop_map(|s| Hop::Junk(s.to_string())),
            1 => "[ -+\\--~]{0,12}".prop_map(Hop::Junk),
        ]
    }

    /// `X-Forwarded-For` values (the header may come more than once), each a list of hops.
    fn values() -> impl Strategy<Value = Vec<Vec<Hop>>> {
        proptest::collection::vec(proptest::collection::vec(hop(), 1..5), 0..4)
    }

    fn header_map(values: &[Vec<Hop>], sep: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for hops in values {
            let text: Vec<String> = hops.iter().map(Hop::text).collect();
            h.append(
                "x-forwarded-for",
                HeaderValue::from_str(&text.join(sep)).unwrap(),
            );
        }
        h
    }

    /// A net covers an address in either of its forms: a trusted net written in IPv4-mapped
    /// form (`::ffff:10.0.0.0/104`) covers the IPv4 addresses it names.
    fn is_in(ip: IpAddr, trusted: &[IpNet]) -> bool {
        let mapped = match ip {
            IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
            v6 => v6,
        };
        trusted
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&mapped))
    }

    /// SPEC §7, read directly: the peer unless trusted; then, across every value in order,
    /// the right-most hop that is not trusted, stopping (at the last trusted address) at a hop
    /// that names no address; the left-most hop when all are trusted.
    fn spec(peer: IpAddr, values: &[Vec<Hop>], trusted: &[IpNet]) -> IpAddr {
        let peer = canonical(peer);
        if !is_in(peer, trusted) {
            return peer;
        }
        let hops: Vec<&Hop> = values.iter().flatten().collect();
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Some(ip) = hop.names() else {
                return client;
            };
            client = ip;
            if !is_in(ip, trusted) {
                return ip;
            }
        }
        client
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_client_is_the_rightmost_untrusted_hop_behind_trusted_peers(
            peer in peer(),
            values in values(),
            trusted in trusted(),
            sep in select(vec![",", ", ", " , "]),
        ) {
            let got = resolve(peer, &header_map(&values, sep), &trusted);
            prop_assert_eq!(got, spec(peer, &values, &trusted));
        }

        /// Behind an untrusted peer the header is ignored whatever it holds; behind a trusted
        /// one any bytes at all never panic and give the peer or an address some hop named.
        #[test]
        fn garbage_never_panics_nor_names_the_client_behind_an_untrusted_peer(
            peer in peer(),
            raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..3),
            hops in values(),
            trusted in trusted(),
        ) {
            let mut h = header_map(&hops, ",");
            for v in &raw {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append("x-forwarded-for", v);
                }
            }
            let got = resolve(peer, &h, &trusted);
            let peer = canonical(peer);
            if !is_in(peer, &trusted) {
                prop_assert_eq!(got, peer);
            } else if got != peer {
                let named = h
                    .get_all("x-forwarded-for")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(','))
                    .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
                    .any(|ip| canonical(ip) == got);
                prop_assert!(named, "{} named by no hop", got);
            }
        }

        /// An IPv4-mapped IPv6 peer or hop (`::ffff:10.0.0.1`) is its IPv4 address: same
        /// trust, same answer, same rate-limit bucket.
        #[test]
        fn ipv4_mapped_is_ipv4(
            v4 in any::<u32>().prop_map(Ipv4Addr::from),
            in_ten in any::<[u8; 3]>(),
            values in values(),
            trusted in trusted(),
        ) {
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            let h = header_map(&values, ",");
            prop_assert_eq!(resolve(mapped, &h, &trusted), resolve(v4.into(), &h, &trusted));
            let [a, b, c] = in_ten;
            let ten = Ipv4Addr::new(10, a, b, c);
            let ten_mapped = IpAddr::V6(ten.to_ipv6_mapped());
            prop_assert_eq!(
                resolve(ten_mapped, &h, &trusted),
                resolve(ten.into(), &h, &trusted)
            );
            // A hop written mapped counts as the IPv4 hop.
            let as_v4 = vec![vec![Hop::Addr(v4.into(), 0)]];
            let as_mapped = vec![vec![Hop::Addr(v4.into(), 1)]];
            let peer = IpAddr::from(ten);
            prop_assert_eq!(
                resolve(peer, &header_map(&as_mapped, ","), &trusted),
                resolve(peer, &header_map(&as_v4, ","), &trusted)
            );
            prop_assert_eq!(bucket(mapped), IpAddr::V4(v4));
        }

        /// The bucket of an address is its IPv4 address or its IPv6 /64, and a bucket is its
        /// own bucket.
        #[test]
        fn buckets_are_ipv4_or_a_64(ip in peer()) {
            let b = bucket(ip);
            prop_assert_eq!(bucket(b), b);
            match (canonical(ip), b) {
                (IpAddr::V4(a), IpAddr::V4(b)) => prop_assert_eq!(a, b),
                (IpAddr::V6(a), IpAddr::V6(b)) => {
                    prop_assert_eq!(u128::from(a) >> 64, u128::from(b) >> 64);
                    prop_assert_eq!(u128::from(b) & u128::from(u64::MAX), 0);
                }
                (a, b) => prop_assert!(false, "{} in bucket {}", a, b),
            }
        }

        /// A trusted proxy listed in IPv4-mapped form (`::ffff:10.0.0.0/104`) trusts what its
        /// IPv4 form (`10.0.0.0/8`) trusts.
        #[test]
        fn a_mapped_trusted_net_trusts_like_its_ipv4_form(
            net in (any::<u32>(), 0u8..=32)
                .prop_map(|(a, p)| ipnet::Ipv4Net::new(Ipv4Addr::from(a), p).unwrap().trunc()),
            peer in peer(),
            values in values(),
        ) {
            let mapped_net = ipnet::Ipv6Net::new(
                net.network().to_ipv6_mapped(),
                net.prefix_len() + 96,
            )
            .unwrap();
            let h = header_map(&values, ",");
            prop_assert_eq!(
                resolve(peer, &h, &[IpNet::V6(mapped_net)]),
                resolve(peer, &h, &[IpNet::V4(net)])
            );
        }
    }
}
