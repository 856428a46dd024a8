//! Proptest strategies for every type of this crate, so property tests here and in other
//! crates draw from one definition. Enabled by the `proptest` feature.
//!
//! Strategies named `valid_*` produce values that pass [`crate::PriceUpdate::validate`] with
//! the default policy at any `now` after their timestamps; the others cover the whole
//! representable range.

use std::net::SocketAddr;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::{
    Alert, Announce, ApiResponse, Asset, CachedPriceData, DataFreshness, Digest, DigestEntry, FeedMessage,
    Goodbye, GoodbyeReason, Heartbeat, Hello, HelloAck, MeshMessage, MeshWarning, MessageId, NetworkId,
    NetworkStatus, NetworkStatusSummary, NodeId, NodeIdentity, PeerAddress, PeerExchange, PriceData,
    PriceMap, PriceUpdate, ProviderInfo, ProviderStatus, PublicKey, Quote, Request, ServedPrice,
    ServedPriceMap, Severity, Signature, Timestamp, WarningKind,
};

/// Any valid asset symbol.
pub fn asset() -> impl Strategy<Value = Asset> {
    "[A-Z0-9._-]{1,32}".prop_map(|symbol| Asset::new(&symbol).expect("pattern yields valid symbols"))
}

/// Any decimal rust_decimal can represent.
pub fn decimal() -> impl Strategy<Value = Decimal> {
    (-(1i128 << 96) + 1..(1i128 << 96), 0u32..=28)
        .prop_map(|(mantissa, scale)| Decimal::from_i128_with_scale(mantissa, scale))
}

/// A positive price no larger than the default plausible maximum (10^12), down to the smallest
/// `Decimal` (10^-28): peers may send either extreme, and arithmetic on them must not fail.
pub fn valid_price() -> impl Strategy<Value = Decimal> {
    (1i128..=1_000_000_000_000, 0u32..=28)
        .prop_map(|(mantissa, scale)| Decimal::from_i128_with_scale(mantissa, scale))
}

/// A 24 h change of at least -100 %.
pub fn valid_change() -> impl Strategy<Value = Decimal> {
    (-10_000i128..=1_000_000, 0u32..=2).prop_map(|(mantissa, scale)| {
        Decimal::from_i128_with_scale(mantissa, scale).max(-Decimal::ONE_HUNDRED)
    })
}

/// Any instant between 1970 and about 2096, to the nanosecond.
pub fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| Timestamp::from_timestamp(secs, nanos).expect("in range"))
}

/// An instant an update may carry: between 2020 and about 2096, to the nanosecond.
pub fn valid_timestamp() -> impl Strategy<Value = Timestamp> {
    (crate::ValidationPolicy::EARLIEST_TIMESTAMP_SECS..4_000_000_000, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| Timestamp::from_timestamp(secs, nanos).expect("in range"))
}

/// Any node id (not necessarily derived from a key).
pub fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u128>().prop_map(|bits| NodeId::from_uuid(uuid::Uuid::from_u128(bits)))
}

/// Any message id, the nil one included.
pub fn message_id() -> impl Strategy<Value = MessageId> {
    any::<u128>().prop_map(|bits| MessageId::from_uuid(uuid::Uuid::from_u128(bits)))
}

/// Any 32 bytes as a public key (not necessarily a valid point).
pub fn public_key() -> impl Strategy<Value = PublicKey> {
    any::<[u8; 32]>().prop_map(PublicKey::from_bytes)
}

/// Any 64 bytes as a signature.
pub fn signature() -> impl Strategy<Value = Signature> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(a, b)| {
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&a);
        bytes[32..].copy_from_slice(&b);
        Signature::from_bytes(bytes)
    })
}

/// A node identity from a random secret.
pub fn identity() -> impl Strategy<Value = NodeIdentity> {
    any::<[u8; 32]>().prop_map(|secret| NodeIdentity::from_secret_bytes(&secret))
}

fn blockchain() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9 ]{0,49}"
}

/// A price that passes validation.
pub fn valid_price_data() -> impl Strategy<Value = PriceData> {
    (asset(), valid_price(), blockchain(), option::of(valid_change())).prop_map(
        |(asset, price, blockchain, change_24h)| PriceData {
            asset,
            price,
            blockchain: blockchain.into(),
            change_24h,
        },
    )
}

/// Any price, valid or not.
pub fn price_data() -> impl Strategy<Value = PriceData> {
    (asset(), decimal(), ".{0,60}", option::of(decimal())).prop_map(
        |(asset, price, blockchain, change_24h)| PriceData {
            asset,
            price,
            blockchain: blockchain.into(),
            change_24h,
        },
    )
}

/// Any cached price.
pub fn cached_price_data() -> impl Strategy<Value = CachedPriceData> {
    (price_data(), timestamp(), node_id())
        .prop_map(|(price, timestamp, source)| CachedPriceData::from_update(&price, timestamp, source))
}

/// A correctly signed update that passes validation, with 1–8 prices, TTL ≤ 10 and a hop
/// count that keeps `ttl + hop_count` within the default maximum.
pub fn valid_update() -> impl Strategy<Value = PriceUpdate> {
    (identity(), vec(valid_price_data(), 1..8), 0u8..=10, 0u8..=6, valid_timestamp()).prop_map(
        |(identity, prices, ttl, hop_count, timestamp)| {
            let mut update =
                PriceUpdate::new_signed(&identity, &crate::NetworkId::mainnet(), prices, ttl, timestamp);
            update.hop_count = hop_count;
            update
        },
    )
}

/// Any update, with arbitrary (mostly invalid) fields and signature.
pub fn update() -> impl Strategy<Value = PriceUpdate> {
    (
        (message_id(), node_id(), public_key(), timestamp()),
        btree_map(asset(), price_data(), 0..6),
        (any::<u8>(), any::<u8>(), signature()),
    )
        .prop_map(
            |((message_id, source_node_id, source_key, timestamp), prices, (ttl, hop_count, signature))| {
                // Keep each entry filed under its own asset, as decoding requires.
                let prices =
                    prices.into_iter().map(|(asset, price)| (asset, PriceData { asset, ..price })).collect();
                PriceUpdate {
                    message_id,
                    source_node_id,
                    source_key,
                    timestamp,
                    prices,
                    ttl,
                    hop_count,
                    signature,
                }
            },
        )
}

/// Any IPv4 or IPv6 address and port. IPv6 scope ids and flow labels are left at zero: they
/// are meaningful only on the host that chose them and are not carried on the wire.
fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    (any::<std::net::IpAddr>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::new(ip, port))
}

fn network_id() -> impl Strategy<Value = NetworkId> {
    "[a-z0-9-]{1,32}".prop_map(|name| NetworkId::new(&name).expect("pattern yields valid names"))
}

/// Any warning kind.
pub fn warning_kind() -> impl Strategy<Value = WarningKind> {
    prop_oneof![
        Just(WarningKind::NoProviders),
        any::<u64>().prop_map(|age_seconds| WarningKind::StaleData { age_seconds }),
        (asset(), -1.0e9f64..1.0e9).prop_map(|(asset, discrepancy_percent)| WarningKind::PriceDiscrepancy {
            asset,
            discrepancy_percent
        }),
        (node_id(), any::<i64>())
            .prop_map(|(node_id, offset_ms)| WarningKind::ClockSkew { node_id, offset_ms }),
    ]
}

/// Any warning.
pub fn mesh_warning() -> impl Strategy<Value = MeshWarning> {
    (
        prop_oneof![Just(Severity::Info), Just(Severity::Warning), Just(Severity::Critical)],
        ".{0,40}",
        warning_kind(),
    )
        .prop_map(|(severity, message, kind)| MeshWarning { severity, message, kind })
}

/// Any freshness.
pub fn freshness() -> impl Strategy<Value = DataFreshness> {
    prop_oneof![
        Just(DataFreshness::JustNow),
        any::<u64>().prop_map(DataFreshness::MinutesAgo),
        any::<u64>().prop_map(DataFreshness::HoursAgo),
        Just(DataFreshness::Stale),
    ]
}

/// Any network status.
pub fn network_status() -> impl Strategy<Value = NetworkStatus> {
    (
        vec((node_id(), timestamp(), any::<u32>()), 0..4),
        any::<u32>(),
        any::<u32>(),
        option::of(timestamp()),
        freshness(),
    )
        .prop_map(
            |(providers, connected_peers, total_network_size, last_update_time, data_freshness)| {
                NetworkStatus {
                    active_providers: providers
                        .into_iter()
                        .map(|(node_id, last_seen, hop_count)| ProviderInfo {
                            node_id,
                            last_seen,
                            hop_count,
                            last_fetch_time: Some(last_seen),
                            clock_offset_ms: None,
                        })
                        .collect(),
                    connected_peers,
                    total_network_size,
                    last_update_time,
                    data_freshness,
                }
            },
        )
}

/// Any provider status.
pub fn provider_status() -> impl Strategy<Value = ProviderStatus> {
    (any::<bool>(), node_id(), option::of(timestamp()), any::<u64>()).prop_map(
        |(enabled, node_id, last_fetch_time, fetch_count)| ProviderStatus {
            enabled,
            node_id,
            last_fetch_time,
            fetch_count,
        },
    )
}

/// Any successful or failed API response carrying a provider status.
pub fn api_response() -> impl Strategy<Value = ApiResponse<ProviderStatus>> {
    prop_oneof![provider_status().prop_map(ApiResponse::ok), ".{0,40}".prop_map(ApiResponse::error)]
}

/// Any map of cached prices.
pub fn price_map() -> impl Strategy<Value = PriceMap> {
    vec(cached_price_data(), 0..4)
        .prop_map(|prices| prices.into_iter().map(|price| (price.asset, price)).collect())
}

/// Any served price: an aggregate of one to a few quotes, perhaps below quorum, perhaps with
/// its quotes.
pub fn served_price() -> impl Strategy<Value = ServedPrice> {
    (cached_price_data(), 1..8u32, decimal(), any::<bool>(), any::<bool>()).prop_map(
        |(price, providers, spread, below_quorum, with_quotes)| ServedPrice {
            quotes: with_quotes.then(|| vec![Quote::from(&price)]),
            price,
            providers,
            spread: spread.abs(),
            below_quorum,
        },
    )
}

/// Any map of served prices.
pub fn served_price_map() -> impl Strategy<Value = ServedPriceMap> {
    vec(served_price(), 0..4)
        .prop_map(|prices| prices.into_iter().map(|price| (price.asset(), price)).collect())
}

/// Any WebSocket feed message.
pub fn feed_message() -> impl Strategy<Value = FeedMessage> {
    prop_oneof![
        served_price_map().prop_map(FeedMessage::PriceMeshInitial),
        served_price_map().prop_map(FeedMessage::PriceMeshUpdate),
        network_status()
            .prop_map(|status| FeedMessage::NetworkStatusUpdate(NetworkStatusSummary::from(&status))),
        mesh_warning().prop_map(FeedMessage::MeshWarning),
    ]
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (any::<u64>(), any::<bool>(), any::<u32>(), timestamp(), option::of(any::<u8>())).prop_map(
        |(nonce, is_provider, peer_count, sent_at, provider_hops)| Heartbeat {
            nonce,
            is_provider,
            peer_count,
            sent_at,
            provider_hops,
        },
    )
}

fn goodbye_reason() -> impl Strategy<Value = GoodbyeReason> {
    prop_oneof![
        Just(GoodbyeReason::Shutdown),
        Just(GoodbyeReason::TooManyPeers),
        Just(GoodbyeReason::DuplicateConnection),
        Just(GoodbyeReason::NetworkMismatch),
        Just(GoodbyeReason::ProtocolMismatch),
        Just(GoodbyeReason::ProtocolViolation),
        Just(GoodbyeReason::Banned),
        ".{0,40}".prop_map(GoodbyeReason::Other),
    ]
}

/// Any wire message, every variant included.
pub fn mesh_message() -> impl Strategy<Value = MeshMessage> {
    prop_oneof![
        (
            network_id(),
            any::<u16>(),
            node_id(),
            public_key(),
            option::of(socket_addr()),
            ".{0,40}",
            any::<[u8; 32]>()
        )
            .prop_map(
                |(network, protocol_version, node_id, public_key, listen_addr, user_agent, nonce)| {
                    MeshMessage::Hello(Hello {
                        network,
                        protocol_version,
                        node_id,
                        public_key,
                        listen_addr,
                        user_agent,
                        nonce,
                    })
                }
            ),
        signature().prop_map(|proof| MeshMessage::HelloAck(HelloAck { proof })),
        heartbeat().prop_map(MeshMessage::Ping),
        heartbeat().prop_map(MeshMessage::Pong),
        update().prop_map(MeshMessage::from),
        vec((asset(), timestamp(), node_id(), any::<[u8; 32]>()), 0..8).prop_map(|entries| {
            MeshMessage::Digest(Digest {
                entries: entries
                    .into_iter()
                    .map(|(asset, timestamp, source_node_id, content)| DigestEntry {
                        asset,
                        timestamp,
                        source_node_id,
                        content,
                    })
                    .collect(),
            })
        }),
        vec(asset(), 0..8).prop_map(|assets| MeshMessage::Request(Request { assets })),
        vec((node_id(), socket_addr(), option::of(any::<u8>())), 0..8).prop_map(|peers| {
            MeshMessage::PeerExchange(PeerExchange {
                peers: peers
                    .into_iter()
                    .map(|(node_id, addr, provider_hops)| PeerAddress { node_id, addr, provider_hops })
                    .collect(),
            })
        }),
        (
            (message_id(), node_id(), public_key(), any::<bool>(), any::<i64>()),
            (option::of(socket_addr()), timestamp(), any::<u8>(), any::<u8>(), signature()),
        )
            .prop_map(
                |(
                    (message_id, node_id, public_key, is_provider, clock_offset_ms),
                    (listen_addr, timestamp, ttl, hop_count, signature),
                )| {
                    MeshMessage::Announce(Announce {
                        message_id,
                        node_id,
                        public_key,
                        is_provider,
                        listen_addr,
                        timestamp,
                        ttl,
                        hop_count,
                        signature,
                        clock_offset_ms,
                    })
                }
            ),
        (
            (message_id(), node_id(), public_key(), timestamp()),
            (warning_kind(), any::<u8>(), any::<u8>(), signature()),
        )
            .prop_map(
                |((message_id, origin, origin_key, timestamp), (kind, ttl, hop_count, signature))| {
                    MeshMessage::Alert(Alert {
                        message_id,
                        origin,
                        origin_key,
                        timestamp,
                        kind,
                        ttl,
                        hop_count,
                        signature,
                    })
                }
            ),
        goodbye_reason().prop_map(|reason| MeshMessage::Goodbye(Goodbye { reason })),
    ]
}
