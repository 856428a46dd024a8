//! The behaviour every [`PeerStore`] must show, as plain async functions any backend's tests
//! can call — ours, and a service's own backend (enable the `conformance` feature).
//!
//! A backend gets the whole suite with one line in its tests,
//! [`peer_store_conformance!`](crate::peer_store_conformance): give it a name for the tests'
//! module and a setup — an async block that returns a [`Fixture`] of a fresh store, or `None`
//! to skip (a backend whose server URL is unset):
//!
//! ```ignore
//! mesh_peer_store::peer_store_conformance!(memory, async {
//!     Some(Fixture::new(Arc::new(MemoryPeerStore::new())))
//! });
//! ```
//!
//! It expands to two tests: `passes_the_conformance_suite` ([`run_all`]) and
//! `behaves_like_the_reference_model` ([`check_against_model`] on 24 random workloads from
//! [`operations`], or `model_cases = N` after the setup, all against one store). A server
//! backend's setup creates its own schema and gives its cleanup to [`Fixture::then`], which runs
//! after the suite. Checks that only one backend needs (two connection pools to one server,
//! corrupt rows) stay tests of their own beside the line.
//!
//! The checks use fresh random ids and addresses and compare counts before and after, so they
//! do not need an empty backend.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

pub use mesh_storage_core::conformance::Fixture;
use mesh_storage_core::conformance::{run_model, run_suite, runtime};
#[doc(hidden)]
pub use mesh_storage_core::conformance_tests;
use mesh_types::chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use mesh_types::{PublicKey, Timestamp};
use proptest::prelude::*;
use uuid::Uuid;

use crate::{BanReason, DuplicateKey, Error, Peer, PeerId, PeerStatus, PeerStore, Result};

/// The whole suite for one backend, as two tests in a module `$name`; see the [module
/// docs](crate::conformance).
#[macro_export]
macro_rules! peer_store_conformance {
    ($name:ident, $setup:expr $(,)?) => {
        $crate::peer_store_conformance!($name, $setup, model_cases = 24);
    };
    ($name:ident, $setup:expr, model_cases = $cases:expr $(,)?) => {
        $crate::conformance::conformance_tests!(
            $name,
            $setup,
            $crate::conformance::test_suite,
            $crate::conformance::test_model,
            $cases
        );
    };
}

/// Runs [`run_all`] on the store `setup` gives, then finishes the fixture; does nothing when
/// `setup` gives none. The first test of
/// [`peer_store_conformance!`](crate::peer_store_conformance).
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub fn test_suite<S: PeerStore + 'static>(setup: impl Future<Output = Option<Fixture<S>>>) {
    run_suite(&runtime(), setup, |store| run_all(store));
}

/// Runs [`check_against_model`] on `cases` random workloads against the store `setup` gives,
/// then finishes the fixture; does nothing when `setup` gives none. Failing workloads are
/// saved in `proptest-regressions/` beside `source_file` (the `file!()` of the test). The
/// second test of [`peer_store_conformance!`](crate::peer_store_conformance).
///
/// # Panics
/// On the first disagreement, with the smallest workload that shows it.
pub fn test_model<S: PeerStore + 'static>(
    setup: impl Future<Output = Option<Fixture<S>>>,
    cases: u32,
    source_file: &'static str,
) {
    run_model(&runtime(), setup, operations(), cases, source_file, |store, ops| async move {
        check_against_model(store.as_ref(), &ops).await;
    });
}

/// Runs every check below against `store`.
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub async fn run_all(store: Arc<dyn PeerStore>) {
    crud_round_trip(store.as_ref()).await;
    timestamps_keep_microseconds(store.as_ref()).await;
    duplicate_ids_are_rejected(store.as_ref()).await;
    duplicate_addresses_are_rejected(store.as_ref()).await;
    missing_ids_are_not_found(store.as_ref()).await;
    inconsistent_peers_are_rejected(store.as_ref()).await;
    status_queries_agree(store.as_ref()).await;
    find_by_ip_port_matches_ip_and_port(store.as_ref()).await;
    bans_expire(store.as_ref()).await;
    one_peer_per_address_under_concurrency(&[store.clone(), store]).await;
}

/// An address no other check or run uses: random, IPv6 or IPv4.
fn fresh_ip(v6: bool) -> IpAddr {
    let random = Uuid::new_v4().as_u128();
    if v6 {
        IpAddr::V6(Ipv6Addr::from(random))
    } else {
        let [a, b, c, d, ..] = random.to_be_bytes();
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }
}

fn fresh_peer() -> Peer {
    Peer::new(fresh_ip(true), 9470)
}

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; mesh_types::PUBLIC_KEY_LEN])
}

/// The peer is stored and read back unchanged, found by address, updated (also to a new port)
/// and deleted, after which its id is unknown and its address free.
pub async fn crud_round_trip(store: &dyn PeerStore) {
    let mut peer = fresh_peer();
    store.create(peer.clone()).await.unwrap();
    assert_eq!(store.read(peer.id).await.unwrap(), peer, "a created peer reads back unchanged");
    assert_eq!(store.find_by_ip_port(peer.address, peer.port).await.unwrap().as_ref(), Some(&peer));
    assert!(store.list_all().await.unwrap().contains(&peer), "list_all lacks a created peer");

    let old_port = peer.port;
    peer.update_status(PeerStatus::Valid);
    peer.public_key = Some(key(7));
    peer.mark_seen(Utc::now());
    peer.port = 9471;
    store.update(peer.clone()).await.unwrap();
    let read = store.read(peer.id).await.unwrap();
    assert_eq!(read, peer, "an updated peer reads back unchanged");
    assert_eq!(read.node_id(), Some(mesh_types::NodeId::from_public_key(&key(7))));
    assert_eq!(store.find_by_ip_port(peer.address, old_port).await.unwrap(), None, "the old address is free");
    assert_eq!(store.find_by_ip_port(peer.address, peer.port).await.unwrap(), Some(peer.clone()));

    store.delete(peer.id).await.unwrap();
    assert!(matches!(store.read(peer.id).await, Err(Error::NotFound(id)) if id == peer.id));
    assert_eq!(store.find_by_ip_port(peer.address, peer.port).await.unwrap(), None);
    assert!(!store.list_all().await.unwrap().iter().any(|listed| listed.id == peer.id));
    store.create(Peer::new(peer.address, peer.port)).await.expect("a deleted peer's address is free again");
}

/// Timestamps come back rounded down to the microsecond, as PostgreSQL keeps them.
pub async fn timestamps_keep_microseconds(store: &dyn PeerStore) {
    let precise = DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap();
    let mut peer = fresh_peer();
    peer.status_changed_at = precise;
    peer.last_seen = Some(precise);
    store.create(peer.clone()).await.unwrap();
    let read = store.read(peer.id).await.unwrap();
    let rounded = DateTime::from_timestamp(1_700_000_000, 123_456_000).unwrap();
    assert_eq!((read.status_changed_at, read.last_seen), (rounded, Some(rounded)));

    peer.status_changed_at = rounded;
    peer.last_seen = Some(rounded);
    assert_eq!(read, peer);
}

fn assert_duplicate(result: Result<()>, key: DuplicateKey, peer: &Peer) {
    match result {
        Err(Error::DuplicatePeer { key: got, id, address }) => {
            assert_eq!(
                (got, id, address),
                (key, peer.id, peer.socket_addr()),
                "the error names the rejected peer"
            );
        }
        other => panic!("expected a duplicate {key} for peer {}, got {other:?}", peer.id),
    }
}

/// A second peer with a stored id is refused, also when the address is the same too, and the
/// stored one is untouched.
pub async fn duplicate_ids_are_rejected(store: &dyn PeerStore) {
    let peer = fresh_peer();
    store.create(peer.clone()).await.unwrap();
    let mut same_id = fresh_peer();
    same_id.id = peer.id;
    assert_duplicate(store.create(same_id.clone()).await, DuplicateKey::Id, &same_id);
    assert_duplicate(store.create(peer.clone()).await, DuplicateKey::Id, &peer);
    assert_eq!(store.read(peer.id).await.unwrap(), peer);
    assert_eq!(store.find_by_ip_port(same_id.address, same_id.port).await.unwrap(), None);
}

/// A second peer at a stored address is refused, by `create` and by an `update` moving onto it;
/// staying at one's own address is fine.
pub async fn duplicate_addresses_are_rejected(store: &dyn PeerStore) {
    let peer = fresh_peer();
    store.create(peer.clone()).await.unwrap();
    let same_address = Peer::new(peer.address, peer.port);
    assert_duplicate(store.create(same_address.clone()).await, DuplicateKey::Address, &same_address);
    assert!(matches!(store.read(same_address.id).await, Err(Error::NotFound(_))), "nothing was stored");

    let other = fresh_peer();
    store.create(other.clone()).await.unwrap();
    let mut moved = other.clone();
    moved.address = peer.address;
    assert_duplicate(store.update(moved.clone()).await, DuplicateKey::Address, &moved);
    assert_eq!(store.read(other.id).await.unwrap(), other, "a refused update changes nothing");
    assert_eq!(store.read(peer.id).await.unwrap(), peer);

    let mut staying = peer.clone();
    staying.update_status(PeerStatus::Inaccessible);
    store.update(staying.clone()).await.expect("an update keeping its own address");
    store.delete(peer.id).await.unwrap();
    store.update(moved.clone()).await.expect("an address is free once its peer is deleted");
    assert_eq!(store.find_by_ip_port(peer.address, peer.port).await.unwrap(), Some(moved));
}

/// Reading, updating, deleting and banning an unknown id fail with [`Error::NotFound`].
pub async fn missing_ids_are_not_found(store: &dyn PeerStore) {
    let peer = fresh_peer();
    let is_missing = |result: Result<()>| matches!(result, Err(Error::NotFound(id)) if id == peer.id);
    assert!(matches!(store.read(peer.id).await, Err(Error::NotFound(id)) if id == peer.id));
    assert!(is_missing(store.update(peer.clone()).await), "update of an unknown id");
    assert!(is_missing(store.delete(peer.id).await), "delete of an unknown id");
    let until = Utc::now() + TimeDelta::hours(1);
    assert!(is_missing(store.ban(peer.id, BanReason::InvalidSignature, until).await), "ban of an unknown id");
    assert_eq!(store.find_by_ip_port(peer.address, peer.port).await.unwrap(), None, "update created nothing");
}

/// Peers breaking the rules of [`Peer`] are refused with [`Error::InvalidPeer`], before
/// anything else is checked.
pub async fn inconsistent_peers_are_rejected(store: &dyn PeerStore) {
    let until = Utc::now() + TimeDelta::hours(1);
    let mut port_zero = fresh_peer();
    port_zero.port = 0;
    let mut banned_without_reason = fresh_peer();
    banned_without_reason.status = PeerStatus::Banned;
    let mut reason_without_ban = fresh_peer();
    reason_without_ban.ban_reason = Some(BanReason::NetworkMismatch);
    let mut expiry_without_ban = fresh_peer();
    expiry_without_ban.banned_until = Some(until);
    for peer in [port_zero, banned_without_reason, reason_without_ban, expiry_without_ban] {
        let invalid =
            |result: Result<()>| matches!(result, Err(Error::InvalidPeer { id, .. }) if id == peer.id);
        assert!(invalid(store.create(peer.clone()).await), "create of {peer:?}");
        assert!(invalid(store.update(peer.clone()).await), "update of {peer:?}");
        assert!(matches!(store.read(peer.id).await, Err(Error::NotFound(_))));

        let mut stored = peer.clone();
        stored.id = Uuid::new_v4();
        stored.port = 9470;
        stored.ban_reason = None;
        stored.banned_until = None;
        stored.status = PeerStatus::Unknown;
        store.create(stored.clone()).await.unwrap();
        let mut broken = peer.clone();
        broken.id = stored.id;
        assert!(
            matches!(store.update(broken).await, Err(Error::InvalidPeer { id, .. }) if id == stored.id),
            "update of a stored peer into {peer:?}"
        );
        assert_eq!(store.read(stored.id).await.unwrap(), stored, "a refused update changes nothing");
    }
}

async fn counts(store: &dyn PeerStore) -> HashMap<PeerStatus, usize> {
    let mut counts = HashMap::new();
    for status in PeerStatus::ALL {
        counts.insert(status, store.count_by_status(status).await.unwrap());
    }
    counts
}

/// `find_by_status` returns exactly the peers with a status, ordered by id, and
/// `count_by_status` counts them.
pub async fn status_queries_agree(store: &dyn PeerStore) {
    let before = counts(store).await;
    let mut created = Vec::new();
    for status in PeerStatus::ALL {
        let mut peer = fresh_peer();
        if status == PeerStatus::Banned {
            peer.ban(BanReason::ProtocolMismatch, Utc::now() + TimeDelta::hours(1));
        } else {
            peer.update_status(status);
        }
        store.create(peer.clone()).await.unwrap();
        created.push(peer);
    }
    let after = counts(store).await;
    for (status, peer) in PeerStatus::ALL.into_iter().zip(&created) {
        assert_eq!(after[&status], before[&status] + 1, "count_by_status({status})");
        let found = store.find_by_status(status).await.unwrap();
        assert!(found.contains(peer), "find_by_status({status}) lacks a {status} peer");
        assert!(found.iter().all(|peer| peer.status == status), "find_by_status({status}) returns others");
        assert!(found.is_sorted_by_key(|peer| peer.id), "find_by_status is ordered by id");
        assert_eq!(found.len(), after[&status], "find_by_status and count_by_status agree");
    }
    assert!(store.list_all().await.unwrap().is_sorted_by_key(|peer| peer.id), "list_all is ordered by id");
}

/// `find_by_ip_port` needs both the IP and the port to match; IPv4, IPv6 and IPv4-mapped IPv6
/// addresses come back as they went in.
pub async fn find_by_ip_port_matches_ip_and_port(store: &dyn PeerStore) {
    let v4 = Peer::new(fresh_ip(false), 9470);
    let v6 = Peer::new(fresh_ip(true), 9470);
    let IpAddr::V4(plain) = fresh_ip(false) else { unreachable!("asked for IPv4") };
    let mapped = Peer::new(IpAddr::V6(plain.to_ipv6_mapped()), 9470);
    for peer in [&v4, &v6, &mapped] {
        store.create(peer.clone()).await.unwrap();
        assert_eq!(store.find_by_ip_port(peer.address, peer.port).await.unwrap().as_ref(), Some(peer));
        assert_eq!(store.find_by_ip_port(peer.address, 9471).await.unwrap(), None, "another port");
        assert_eq!(store.read(peer.id).await.unwrap().address, peer.address);
    }
    assert_eq!(
        store.find_by_ip_port(IpAddr::V4(plain), 9470).await.unwrap(),
        None,
        "IPv4 is not IPv4-mapped"
    );
    assert_eq!(store.find_by_ip_port(fresh_ip(true), 9470).await.unwrap(), None);
}

/// A ban is reported while it lasts; once `banned_until` has passed every read reports the peer
/// as unknown with its ban cleared, and `unban_expired` stores exactly that.
pub async fn bans_expire(store: &dyn PeerStore) {
    let lasting = fresh_peer();
    let expired = fresh_peer();
    store.create(lasting.clone()).await.unwrap();
    store.create(expired.clone()).await.unwrap();
    let before = counts(store).await;

    let future = Utc::now() + TimeDelta::hours(1);
    let past = Utc::now() - TimeDelta::seconds(1);
    store.ban(lasting.id, BanReason::Misbehaviour { score: 120 }, future).await.unwrap();
    store.ban(expired.id, BanReason::NetworkMismatch, past).await.unwrap();

    let banned = store.read(lasting.id).await.unwrap();
    assert!(banned.is_banned(), "{banned:?}");
    assert_eq!(banned.ban_reason, Some(BanReason::Misbehaviour { score: 120 }));
    assert_eq!(banned.banned_until, Some(future.trunc_subsecs(6)));

    let lifted = store.read(expired.id).await.unwrap();
    assert_eq!(lifted.status, PeerStatus::Unknown, "an expired ban reads as lifted");
    assert_eq!((lifted.ban_reason, lifted.banned_until), (None, None));
    assert!(!lifted.is_banned());
    assert_eq!(store.find_by_ip_port(expired.address, expired.port).await.unwrap().as_ref(), Some(&lifted));
    assert!(store.list_all().await.unwrap().contains(&lifted));

    let banned_list = store.find_by_status(PeerStatus::Banned).await.unwrap();
    assert!(banned_list.contains(&banned) && !banned_list.iter().any(|peer| peer.id == expired.id));
    assert!(store.find_by_status(PeerStatus::Unknown).await.unwrap().contains(&lifted));
    let after = counts(store).await;
    assert_eq!(after[&PeerStatus::Banned], before[&PeerStatus::Banned] + 1, "only the lasting ban counts");
    assert_eq!(after[&PeerStatus::Unknown], before[&PeerStatus::Unknown] - 1, "the expired ban is unknown");

    assert!(store.unban_expired().await.unwrap() >= 1, "unban_expired lifts the expired ban");
    assert_eq!(store.read(expired.id).await.unwrap(), lifted, "stored as it was reported");
    assert_eq!(store.read(lasting.id).await.unwrap(), banned, "a lasting ban stays");
    assert_eq!(counts(store).await, after);

    let mut unbanned = banned.clone();
    unbanned.update_status(PeerStatus::Valid);
    store.update(unbanned.clone()).await.unwrap();
    assert_eq!(store.read(lasting.id).await.unwrap(), unbanned, "an update lifts a ban");
}

/// 64 concurrent `create`s of new peers at one address, spread over `stores` (which must share
/// a backend), store exactly one; then the same for 64 peers sharing one id.
pub async fn one_peer_per_address_under_concurrency(stores: &[Arc<dyn PeerStore>]) {
    const TASKS: usize = 64;
    let address = fresh_ip(true);
    let at_one_address: Vec<Peer> = (0..TASKS).map(|_| Peer::new(address, 9470)).collect();
    let id = Uuid::new_v4();
    let with_one_id: Vec<Peer> = (0..TASKS)
        .map(|_| {
            let mut peer = fresh_peer();
            peer.id = id;
            peer
        })
        .collect();

    for (peers, key) in [(at_one_address, DuplicateKey::Address), (with_one_id, DuplicateKey::Id)] {
        let tasks: Vec<_> = peers
            .into_iter()
            .enumerate()
            .map(|(i, peer)| {
                let store = stores[i % stores.len()].clone();
                tokio::spawn(async move {
                    let result = store.create(peer.clone()).await;
                    (peer, result)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let (peer, result) = task.await.unwrap();
            match result {
                Ok(()) => winners.push(peer),
                Err(Error::DuplicatePeer { key: got, .. }) if got == key => {}
                Err(err) => panic!("a concurrent create failed with {err}, not a duplicate {key}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one concurrent create per {key} may win");
        let winner = &winners[0];
        assert_eq!(stores[stores.len() - 1].read(winner.id).await.unwrap(), *winner);
        assert_eq!(
            stores[0].find_by_ip_port(winner.address, winner.port).await.unwrap().as_ref(),
            Some(winner)
        );
    }
}

/// Number of distinct peer ids a workload draws from.
pub const MODEL_PEERS: usize = 4;
/// Number of distinct addresses a workload draws from: two IPs (v4 and v6) × two ports.
pub const MODEL_ADDRESSES: usize = 4;

/// The status a workload gives a peer it creates or updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelStatus {
    /// [`PeerStatus::Valid`].
    Valid,
    /// [`PeerStatus::Inaccessible`].
    Inaccessible,
    /// [`PeerStatus::Unknown`].
    Unknown,
    /// [`PeerStatus::Banned`] for `reason`, until a second before the run started (`expired`)
    /// or an hour after.
    Banned {
        /// Why.
        reason: BanReason,
        /// Whether the ban has already ended.
        expired: bool,
    },
}

/// The peer a workload writes: a status, maybe a key (all bytes `key`), maybe a last-seen time
/// some seconds before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPeer {
    /// Its status.
    pub status: ModelStatus,
    /// Its public key's repeated byte, if it has one.
    pub key: Option<u8>,
    /// How many seconds before the run it was last seen, if ever.
    pub seen_secs_ago: Option<u16>,
}

/// One step of a random workload; `peer` indexes the run's ids, `address` its addresses.
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    /// `create` of the peer with id `peer` at `address`.
    Create {
        /// Which id.
        peer: usize,
        /// Which address.
        address: usize,
        /// What it looks like.
        shape: ModelPeer,
    },
    /// `update` of the peer with id `peer`, to `address`.
    Update {
        /// Which id.
        peer: usize,
        /// Which address.
        address: usize,
        /// What it looks like afterwards.
        shape: ModelPeer,
    },
    /// `delete(ids[i])`.
    Delete(usize),
    /// `read(ids[i])`.
    Read(usize),
    /// `ban` of the peer with id `peer`.
    Ban {
        /// Which id.
        peer: usize,
        /// Why.
        reason: BanReason,
        /// Whether `until` is already past (a second before the run) or an hour after it.
        expired: bool,
    },
    /// `unban_expired()`.
    UnbanExpired,
    /// `find_by_status`, compared on the run's peers.
    FindByStatus(PeerStatus),
    /// `count_by_status`, compared as the change since the run started.
    CountByStatus(PeerStatus),
    /// `find_by_ip_port(addresses[i])`.
    FindByIpPort(usize),
    /// `list_all()`, compared on the run's peers.
    ListAll,
}

fn ban_reasons() -> impl Strategy<Value = BanReason> {
    prop_oneof![
        Just(BanReason::NetworkMismatch),
        Just(BanReason::ProtocolMismatch),
        Just(BanReason::InvalidSignature),
        any::<u32>().prop_map(|score| BanReason::Misbehaviour { score }),
        Just(BanReason::BannedUserAgent),
    ]
}

fn model_peers() -> impl Strategy<Value = ModelPeer> {
    let status = prop_oneof![
        Just(ModelStatus::Valid),
        Just(ModelStatus::Inaccessible),
        Just(ModelStatus::Unknown),
        (ban_reasons(), any::<bool>()).prop_map(|(reason, expired)| ModelStatus::Banned { reason, expired }),
    ];
    (status, any::<Option<u8>>(), any::<Option<u16>>()).prop_map(|(status, key, seen_secs_ago)| ModelPeer {
        status,
        key,
        seen_secs_ago,
    })
}

/// Random workloads of up to 48 operations.
pub fn operations() -> impl Strategy<Value = Vec<Operation>> {
    let peer = 0..MODEL_PEERS;
    let address = 0..MODEL_ADDRESSES;
    let status = prop::sample::select(PeerStatus::ALL.to_vec());
    let op = prop_oneof![
        4 => (peer.clone(), address.clone(), model_peers())
            .prop_map(|(peer, address, shape)| Operation::Create { peer, address, shape }),
        3 => (peer.clone(), address.clone(), model_peers())
            .prop_map(|(peer, address, shape)| Operation::Update { peer, address, shape }),
        1 => peer.clone().prop_map(Operation::Delete),
        2 => peer.clone().prop_map(Operation::Read),
        2 => (peer, ban_reasons(), any::<bool>())
            .prop_map(|(peer, reason, expired)| Operation::Ban { peer, reason, expired }),
        1 => Just(Operation::UnbanExpired),
        1 => status.clone().prop_map(Operation::FindByStatus),
        1 => status.prop_map(Operation::CountByStatus),
        1 => address.prop_map(Operation::FindByIpPort),
        1 => Just(Operation::ListAll),
    ];
    prop::collection::vec(op, 1..48)
}

/// What a write returned, for comparing a store with the model.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    NotFound(PeerId),
    Duplicate(DuplicateKey, PeerId, SocketAddr),
}

fn outcome(result: Result<()>, step: usize) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(Error::NotFound(id)) => Outcome::NotFound(id),
        Err(Error::DuplicatePeer { key, id, address }) => Outcome::Duplicate(key, id, address),
        Err(err) => panic!("step {step}: unexpected error {err}"),
    }
}

/// The reference model's own rendering of what a store reports for a stored peer at `at`,
/// written independently of [`Peer::lift_expired_ban`].
fn reported(stored: &Peer, at: Timestamp) -> Peer {
    match (stored.status, stored.banned_until) {
        (PeerStatus::Banned, Some(until)) if until <= at => Peer {
            status: PeerStatus::Unknown,
            status_changed_at: stored.status_changed_at.max(until),
            ban_reason: None,
            banned_until: None,
            ..stored.clone()
        },
        _ => stored.clone(),
    }
}

/// The ids, addresses and instants of one run.
struct Run {
    ids: Vec<PeerId>,
    addresses: Vec<SocketAddr>,
    start: Timestamp,
}

impl Run {
    fn new() -> Self {
        let ips = [fresh_ip(false), fresh_ip(true)];
        let addresses =
            ips.iter().flat_map(|ip| [SocketAddr::new(*ip, 9470), SocketAddr::new(*ip, 9471)]).collect();
        Self { ids: (0..MODEL_PEERS).map(|_| Uuid::new_v4()).collect(), addresses, start: crate::peer::now() }
    }

    fn until(&self, expired: bool) -> Timestamp {
        if expired { self.start - TimeDelta::seconds(1) } else { self.start + TimeDelta::hours(1) }
    }

    fn peer(&self, peer: usize, address: usize, shape: ModelPeer) -> Peer {
        let (status, ban_reason, banned_until) = match shape.status {
            ModelStatus::Valid => (PeerStatus::Valid, None, None),
            ModelStatus::Inaccessible => (PeerStatus::Inaccessible, None, None),
            ModelStatus::Unknown => (PeerStatus::Unknown, None, None),
            ModelStatus::Banned { reason, expired } => {
                (PeerStatus::Banned, Some(reason), Some(self.until(expired)))
            }
        };
        Peer {
            id: self.ids[peer],
            address: self.addresses[address].ip(),
            port: self.addresses[address].port(),
            status,
            status_changed_at: self.start - TimeDelta::minutes(1),
            ban_reason,
            banned_until,
            public_key: shape.key.map(key),
            last_seen: shape.seen_secs_ago.map(|secs| self.start - TimeDelta::seconds(secs.into())),
        }
    }
}

/// Applies `operations` to `store` (with fresh ids and addresses) and to a reference model — a
/// map from id to stored peer — and asserts every observation agrees. Expired bans left by
/// earlier runs are lifted first, so `unban_expired` can be compared exactly.
///
/// # Panics
/// On the first disagreement.
pub async fn check_against_model(store: &dyn PeerStore, operations: &[Operation]) {
    store.unban_expired().await.unwrap();
    let run = Run::new();
    let ours: HashSet<PeerId> = run.ids.iter().copied().collect();
    let base = counts(store).await;
    let mut model: HashMap<usize, Peer> = HashMap::new();

    for (step, op) in operations.iter().enumerate() {
        match *op {
            Operation::Create { peer: i, address: a, shape } => {
                let peer = run.peer(i, a, shape);
                let expected = if model.contains_key(&i) {
                    Outcome::Duplicate(DuplicateKey::Id, peer.id, peer.socket_addr())
                } else if model.values().any(|stored| stored.socket_addr() == peer.socket_addr()) {
                    Outcome::Duplicate(DuplicateKey::Address, peer.id, peer.socket_addr())
                } else {
                    model.insert(i, peer.clone());
                    Outcome::Ok
                };
                assert_eq!(outcome(store.create(peer).await, step), expected, "step {step}: {op:?}");
            }
            Operation::Update { peer: i, address: a, shape } => {
                let peer = run.peer(i, a, shape);
                let taken =
                    model.iter().any(|(j, stored)| *j != i && stored.socket_addr() == peer.socket_addr());
                let expected = match model.get_mut(&i) {
                    None => Outcome::NotFound(peer.id),
                    Some(_) if taken => {
                        Outcome::Duplicate(DuplicateKey::Address, peer.id, peer.socket_addr())
                    }
                    Some(stored) => {
                        *stored = peer.clone();
                        Outcome::Ok
                    }
                };
                assert_eq!(outcome(store.update(peer).await, step), expected, "step {step}: {op:?}");
            }
            Operation::Delete(i) => {
                let expected =
                    if model.remove(&i).is_some() { Outcome::Ok } else { Outcome::NotFound(run.ids[i]) };
                assert_eq!(outcome(store.delete(run.ids[i]).await, step), expected, "step {step}: {op:?}");
            }
            Operation::Read(i) => {
                let got = store.read(run.ids[i]).await;
                let at = Utc::now();
                match model.get(&i) {
                    Some(stored) => assert_eq!(got.unwrap(), reported(stored, at), "step {step}: {op:?}"),
                    None => assert!(
                        matches!(got, Err(Error::NotFound(id)) if id == run.ids[i]),
                        "step {step}: {op:?} gave {got:?}"
                    ),
                }
            }
            Operation::Ban { peer: i, reason, expired } => {
                let before = Utc::now().trunc_subsecs(6);
                let result = store.ban(run.ids[i], reason, run.until(expired)).await;
                let after = Utc::now();
                let Some(stored) = model.get_mut(&i) else {
                    assert_eq!(outcome(result, step), Outcome::NotFound(run.ids[i]), "step {step}: {op:?}");
                    continue;
                };
                assert_eq!(outcome(result, step), Outcome::Ok, "step {step}: {op:?}");
                // The ban's own time is the store's to pick; it must be the time of the call.
                let read = store.read(run.ids[i]).await.unwrap();
                let banned_at = read.status_changed_at;
                assert!(before <= banned_at && banned_at <= after, "step {step}: banned at {banned_at}");
                stored.status = PeerStatus::Banned;
                stored.status_changed_at = banned_at;
                stored.ban_reason = Some(reason);
                stored.banned_until = Some(run.until(expired));
                assert_eq!(read, reported(stored, Utc::now()), "step {step}: {op:?}");
            }
            Operation::UnbanExpired => {
                let at = Utc::now();
                let mut lifted = 0;
                for stored in model.values_mut() {
                    let now_reported = reported(stored, at);
                    lifted += usize::from(now_reported != *stored);
                    *stored = now_reported;
                }
                assert_eq!(store.unban_expired().await.unwrap(), lifted, "step {step}: {op:?}");
            }
            Operation::FindByStatus(status) => {
                let found = store.find_by_status(status).await.unwrap();
                let at = Utc::now();
                assert!(found.is_sorted_by_key(|peer| peer.id), "step {step}: ordered by id");
                let found: Vec<Peer> = found.into_iter().filter(|peer| ours.contains(&peer.id)).collect();
                let mut expected: Vec<Peer> = model
                    .values()
                    .map(|stored| reported(stored, at))
                    .filter(|peer| peer.status == status)
                    .collect();
                expected.sort_unstable_by_key(|peer| peer.id);
                assert_eq!(found, expected, "step {step}: {op:?}");
            }
            Operation::CountByStatus(status) => {
                let count = store.count_by_status(status).await.unwrap();
                let at = Utc::now();
                let ours = model.values().filter(|stored| reported(stored, at).status == status).count();
                assert_eq!(count, base[&status] + ours, "step {step}: {op:?}");
            }
            Operation::FindByIpPort(a) => {
                let address = run.addresses[a];
                let found = store.find_by_ip_port(address.ip(), address.port()).await.unwrap();
                let at = Utc::now();
                let expected = model
                    .values()
                    .find(|stored| stored.socket_addr() == address)
                    .map(|stored| reported(stored, at));
                assert_eq!(found, expected, "step {step}: {op:?}");
            }
            Operation::ListAll => {
                let listed = store.list_all().await.unwrap();
                let at = Utc::now();
                assert!(listed.is_sorted_by_key(|peer| peer.id), "step {step}: ordered by id");
                let listed: Vec<Peer> = listed.into_iter().filter(|peer| ours.contains(&peer.id)).collect();
                let mut expected: Vec<Peer> = model.values().map(|stored| reported(stored, at)).collect();
                expected.sort_unstable_by_key(|peer| peer.id);
                assert_eq!(listed, expected, "step {step}: {op:?}");
            }
        }
    }
}
