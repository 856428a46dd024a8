//! The connection manager over real TCP sockets on loopback: discovery, bans, one connection
//! per node, isolation of bad connections, heartbeat timeouts with redial, and the peer limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use mesh_peer_store::{BanReason, MemoryPeerStore, PeerStatus, PeerStore};
use mesh_testkit::TcpProxy;
use mesh_transport::handshake::{HandshakeConfig, handshake};
use mesh_transport::{
    Connection, ConnectionManager, LinkConfig, Listener, ManagerConfig, TcpTransport, Transport,
    TransportError, TransportEvent,
};
use mesh_types::{Hello, HelloAck, MeshMessage, NetworkId, NodeIdentity, PROTOCOL_VERSION, Signature};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A TCP transport that counts dials per address.
struct CountingTcp {
    inner: TcpTransport,
    dials: Mutex<HashMap<SocketAddr, usize>>,
}

impl CountingTcp {
    fn new(identity: &NodeIdentity, network: &NetworkId) -> Self {
        Self {
            inner: TcpTransport::new(LinkConfig::default(), identity, network),
            dials: Mutex::new(HashMap::new()),
        }
    }

    fn dials_to(&self, addr: SocketAddr) -> usize {
        self.dials.lock().unwrap().get(&addr).copied().unwrap_or(0)
    }
}

#[async_trait]
impl Transport for CountingTcp {
    async fn listen(&self, addr: SocketAddr) -> Result<Listener, TransportError> {
        self.inner.listen(addr).await
    }

    async fn dial(&self, addr: SocketAddr) -> Result<Connection, TransportError> {
        *self.dials.lock().unwrap().entry(addr).or_default() += 1;
        self.inner.dial(addr).await
    }
}

pub(crate) struct Node {
    pub(crate) manager: ConnectionManager,
    store: Arc<MemoryPeerStore>,
    transport: Arc<CountingTcp>,
    events: Arc<Mutex<Vec<TransportEvent>>>,
}

impl Node {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.manager.local_addr().expect("listening")
    }

    pub(crate) fn disconnect_reasons(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|event| match event {
                TransportEvent::Disconnected { reason, .. } => Some(reason.to_string()),
                _ => None,
            })
            .collect()
    }
}

/// Fast timers so the tests take seconds, not minutes.
pub(crate) fn config(network: &str, bootstrap: Vec<String>) -> ManagerConfig {
    let mut config = ManagerConfig::new(NetworkId::new(network).unwrap());
    config.listen_addr = Some("127.0.0.1:0".parse().unwrap());
    config.bootstrap = bootstrap;
    config.maintenance_interval = Duration::from_millis(50);
    config.heartbeat_interval = Duration::from_millis(200);
    config.heartbeat_timeout = Duration::from_millis(1200);
    config.handshake_timeout = Duration::from_secs(2);
    config.peer_exchange_interval = Duration::from_millis(300);
    config.backoff_initial = Duration::from_millis(100);
    config.backoff_max = Duration::from_secs(1);
    config
}

pub(crate) async fn start(config: ManagerConfig, identity: Arc<NodeIdentity>) -> Node {
    let store = Arc::new(MemoryPeerStore::new());
    let transport = Arc::new(CountingTcp::new(&identity, &config.network));
    let (manager, mut receiver) =
        ConnectionManager::start(config, identity, transport.clone(), store.clone())
            .await
            .expect("manager starts");
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(event) = receiver.recv().await {
            sink.lock().unwrap().push(event);
        }
    });
    Node { manager, store, transport, events }
}

async fn node(network: &str, bootstrap: Vec<String>) -> Node {
    start(config(network, bootstrap), Arc::new(NodeIdentity::generate())).await
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
pub(crate) async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

/// [`eventually`] for a condition that needs to await.
async fn eventually_async(limit: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_with_one_bootstrap_each_become_fully_connected() {
    let a = node("devnet", vec![]).await;
    let b = node("devnet", vec![a.addr().to_string()]).await;
    let c = node("devnet", vec![b.addr().to_string()]).await;
    let full = eventually(Duration::from_secs(10), || {
        [&a, &b, &c].iter().all(|node| node.manager.peer_count() == 2)
    })
    .await;
    assert!(
        full,
        "peer counts: {} {} {}",
        a.manager.peer_count(),
        b.manager.peer_count(),
        c.manager.peer_count()
    );
    // C never had A's address: it learned it through peer exchange.
    let c_peers: Vec<_> = c.manager.connected_peers().iter().map(|peer| peer.info.node_id).collect();
    assert!(c_peers.contains(&a.manager.node_id()));
    // Heartbeats measured round trips.
    assert!(
        eventually(Duration::from_secs(3), || a
            .manager
            .connected_peers()
            .iter()
            .all(|p| p.round_trip.is_some()))
        .await
    );
}

/// Two free loopback ports, so two nodes can be told each other's address before they start.
fn free_ports() -> (SocketAddr, SocketAddr) {
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (first.local_addr().unwrap(), second.local_addr().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_dialling_each_other_keep_exactly_one_connection() {
    for _ in 0..5 {
        let (a_addr, b_addr) = free_ports();
        let mut a_config = config("devnet", vec![b_addr.to_string()]);
        a_config.listen_addr = Some(a_addr);
        let mut b_config = config("devnet", vec![a_addr.to_string()]);
        b_config.listen_addr = Some(b_addr);
        // Both start at once, each dialling the other.
        let (a, b) = tokio::join!(
            start(a_config, Arc::new(NodeIdentity::generate())),
            start(b_config, Arc::new(NodeIdentity::generate()))
        );
        assert!(
            eventually(Duration::from_secs(5), || a.manager.peer_count() == 1 && b.manager.peer_count() == 1)
                .await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!((a.manager.peer_count(), b.manager.peer_count()), (1, 1), "one connection survives");
        a.manager.shutdown().await;
        b.manager.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reached_by_others_first_still_dials_its_bootstrap_peer() {
    // B's bootstrap peer C is not up yet when A dials B, which fills B's minimum of one peer.
    let (b_addr, c_addr) = free_ports();
    let mut b_config = config("devnet", vec![c_addr.to_string()]);
    b_config.listen_addr = Some(b_addr);
    b_config.min_peers = 1;
    let b = start(b_config, Arc::new(NodeIdentity::generate())).await;
    let mut a_config = config("devnet", vec![b_addr.to_string()]);
    a_config.min_peers = 1;
    let a = start(a_config, Arc::new(NodeIdentity::generate())).await;
    assert!(eventually(Duration::from_secs(5), || b.manager.peer_count() == 1).await);

    let mut c_config = config("devnet", vec![]);
    c_config.listen_addr = Some(c_addr);
    c_config.min_peers = 0;
    let c = start(c_config, Arc::new(NodeIdentity::generate())).await;
    let reached = eventually(Duration::from_secs(10), || {
        b.manager.connected_peers().iter().any(|peer| peer.info.node_id == c.manager.node_id())
    })
    .await;
    assert!(reached, "B dials its bootstrap peer although A's connection met its minimum");
    assert!(a.manager.peer_count() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_on_another_network_never_gets_a_session_and_backs_off() {
    let a = node("devnet", vec![]).await;
    let x = node("othernet", vec![a.addr().to_string()]).await;
    // The Noise prologue names the network: X's dials fail in the Noise handshake, before any
    // `Hello` (the `NetworkMismatch` ban of a `Hello` is tested in `handshake`).
    assert!(eventually(Duration::from_secs(3), || x.transport.dials_to(a.addr()) >= 1).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Maintenance runs every 50 ms; a failure that retrying will not fix waits the longest
    // backoff (1 s here).
    let dials = x.transport.dials_to(a.addr());
    assert!(dials <= 4, "X dialled A {dials} times in about 2 s");
    assert_eq!(a.manager.peer_count() + x.manager.peer_count(), 0);
    // Nothing was proven, so nobody is banned: a relay on the path could otherwise get honest
    // addresses banned.
    assert!(x.store.find_by_status(PeerStatus::Banned).await.unwrap().is_empty());
    assert!(a.store.find_by_status(PeerStatus::Banned).await.unwrap().is_empty());
}

/// A client that speaks the handshake by hand, to forge it.
async fn forged_handshake(target: SocketAddr, hello: impl FnOnce(&NodeIdentity) -> Hello, proof: Signature) {
    let identity = NodeIdentity::generate();
    let transport = TcpTransport::new(LinkConfig::default(), &identity, &NetworkId::devnet());
    let mut connection = transport.dial(target).await.expect("dial");
    connection.sender.send(MeshMessage::Hello(hello(&identity))).await.expect("send hello");
    // Read the node's hello, then answer with the forged proof.
    let _ = connection.receiver.recv().await;
    let _ = connection.sender.send(MeshMessage::HelloAck(HelloAck { proof })).await;
    // Give the node time to judge and answer.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), connection.receiver.recv()).await
    {
    }
}

fn hello_from(identity: &NodeIdentity, listen: &str) -> Hello {
    Hello {
        network: NetworkId::devnet(),
        protocol_version: PROTOCOL_VERSION,
        node_id: identity.node_id(),
        public_key: identity.public_key(),
        listen_addr: Some(listen.parse().unwrap()),
        user_agent: "forger/1".into(),
        nonce: [1; 32],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_key_proofs_and_stolen_ids_are_banned() {
    let a = node("devnet", vec![]).await;

    // A valid id and key, but a proof signed by nobody.
    forged_handshake(a.addr(), |me| hello_from(me, "127.0.0.1:1001"), Signature::from_bytes([7; 64])).await;
    // Someone else's node id with the forger's own key.
    let victim = NodeIdentity::generate();
    forged_handshake(
        a.addr(),
        |me| Hello { node_id: victim.node_id(), ..hello_from(me, "127.0.0.1:1002") },
        Signature::from_bytes([7; 64]),
    )
    .await;

    for port in [1001, 1002] {
        // The node records the ban right after closing the connection.
        let banned = eventually_async(Duration::from_secs(3), async || {
            a.store.find_by_ip_port("127.0.0.1".parse().unwrap(), port).await.ok().flatten().is_some_and(
                |peer| {
                    peer.status == PeerStatus::Banned && peer.ban_reason == Some(BanReason::InvalidSignature)
                },
            )
        })
        .await;
        assert!(banned, "the forger advertising port {port} is banned for InvalidSignature");
        let record = a.store.find_by_ip_port("127.0.0.1".parse().unwrap(), port).await.unwrap().unwrap();
        assert_eq!(record.public_key, None, "an unproven key is never attached to a ban");
    }
    assert_eq!(a.manager.peer_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_close_only_their_connection() {
    let a = node("devnet", vec![]).await;
    let b = node("devnet", vec![a.addr().to_string()]).await;
    assert!(eventually(Duration::from_secs(5), || a.manager.peer_count() == 1).await);

    let mut garbage = tokio::net::TcpStream::connect(a.addr()).await.unwrap();
    garbage.write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x00]).await.unwrap();
    let mut oversized = tokio::net::TcpStream::connect(a.addr()).await.unwrap();
    oversized.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.unwrap();
    // The node closes both: reading them ends (after whatever it sent first) within seconds.
    for (name, stream) in [("garbage", &mut garbage), ("oversized", &mut oversized)] {
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "the node closed the {name} connection");
    }

    assert_eq!(a.manager.peer_count(), 1, "the good peer is still connected");
    assert_eq!(b.manager.peer_count(), 1);
    assert!(a.disconnect_reasons().is_empty(), "nobody was disconnected: {:?}", a.disconnect_reasons());
    // And the node still accepts newcomers.
    let c = node("devnet", vec![a.addr().to_string()]).await;
    assert!(eventually(Duration::from_secs(5), || c.manager.peer_count() >= 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_times_out_and_is_redialled_after_it_restarts() {
    let a = node("devnet", vec![]).await;
    // B reaches A through a proxy that can go silent without closing anything.
    let proxy = TcpProxy::start(&a.addr().to_string()).await;
    let b_identity = Arc::new(NodeIdentity::generate());
    let b = start(config("devnet", vec![proxy.addr().to_string()]), b_identity.clone()).await;
    let b_addr = b.addr();
    assert!(eventually(Duration::from_secs(5), || a.manager.peer_count() == 1).await);

    // B dies without a word: the proxy freezes, so A hears silence, not a close.
    proxy.freeze();
    b.manager.shutdown().await;
    drop(b);
    let timed_out = eventually(Duration::from_secs(5), || {
        a.disconnect_reasons().iter().any(|reason| reason == "heartbeat timeout")
    })
    .await;
    assert!(timed_out, "A notices by heartbeat timeout: {:?}", a.disconnect_reasons());
    let stored =
        a.store.find_by_ip_port(b_addr.ip(), b_addr.port()).await.unwrap().expect("A knows B's address");
    assert_eq!(stored.status, PeerStatus::Inaccessible);

    // B restarts on the same address; A redials it from the peer store.
    let mut restart = config("devnet", vec![]);
    restart.listen_addr = Some(b_addr);
    restart.min_peers = 0;
    let b = start(restart, b_identity).await;
    let back = eventually(Duration::from_secs(10), || {
        a.manager.connected_peers().iter().any(|peer| peer.info.node_id == b.manager.node_id())
    })
    .await;
    assert!(back, "A redials B after it restarts");
    proxy.cut();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_lost_to_a_partition_is_dialled_again_after_the_heal_by_a_node_at_its_minimum() {
    // A dials B (reached only through a proxy that can go silent, as a partition does) and C,
    // and D dials A: once B is lost A still has its minimum of two, one of them its own
    // choice, so nothing but the lost link itself gives A a reason to dial.
    let passive = || {
        let mut config = config("devnet", vec![]);
        config.min_peers = 0;
        config
    };
    let b = start(passive(), Arc::new(NodeIdentity::generate())).await;
    let proxy = TcpProxy::start(&b.addr().to_string()).await;
    let c = start(passive(), Arc::new(NodeIdentity::generate())).await;
    let mut a_config = config("devnet", vec![proxy.addr().to_string(), c.addr().to_string()]);
    a_config.min_peers = 2;
    a_config.reconnect_interval = Duration::from_millis(300);
    let a = start(a_config, Arc::new(NodeIdentity::generate())).await;
    let mut d_config = config("devnet", vec![a.addr().to_string()]);
    d_config.min_peers = 1;
    let _d = start(d_config, Arc::new(NodeIdentity::generate())).await;
    assert!(eventually(Duration::from_secs(5), || a.manager.peer_count() == 3).await);

    proxy.freeze();
    let timed_out = eventually(Duration::from_secs(5), || {
        a.disconnect_reasons().iter().any(|reason| reason == "heartbeat timeout")
    })
    .await;
    assert!(timed_out, "A loses B to silence: {:?}", a.disconnect_reasons());
    assert_eq!(a.manager.peer_count(), 2, "C and D keep A at its minimum");

    // The partition heals: new connections through the proxy work again.
    proxy.thaw();
    let back = eventually(Duration::from_secs(5), || {
        a.manager.connected_peers().iter().any(|peer| peer.info.node_id == b.manager.node_id())
    })
    .await;
    assert!(back, "A dials B again although it is at its minimum");
    proxy.cut();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_limit_holds_under_fifty_simultaneous_inbound_dials() {
    let mut limited = config("devnet", vec![]);
    limited.min_peers = 0;
    limited.max_peers = 5;
    limited.max_inbound = 5;
    let a = start(limited, Arc::new(NodeIdentity::generate())).await;
    let target = a.addr();

    let dials: Vec<_> = (0..50)
        .map(|_| {
            tokio::spawn(async move {
                let identity = NodeIdentity::generate();
                let transport = TcpTransport::new(LinkConfig::default(), &identity, &NetworkId::devnet());
                let Ok(mut connection) = transport.dial(target).await else { return None };
                let result =
                    handshake(&mut connection, &identity, &HandshakeConfig::new(NetworkId::devnet())).await;
                result.ok().map(|_| connection)
            })
        })
        .collect();
    // Sample the peer count every millisecond while the dials land.
    let sampler = {
        let manager = a.manager.clone();
        tokio::spawn(async move {
            let mut highest = 0;
            for _ in 0..600 {
                highest = highest.max(manager.peer_count());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            highest
        })
    };
    let mut held = Vec::new();
    for dial in dials {
        if let Some(connection) = dial.await.unwrap() {
            held.push(connection);
        }
    }
    let highest = sampler.await.unwrap();
    // The clients never answer heartbeats, so they are dropped after the timeout: judge the
    // highest count seen while they were connected.
    assert_eq!(highest, 5, "the free slots were filled, and never more");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refused_as_banned_backs_off_instead_of_redialling_every_tick() {
    let a = node("devnet", vec![]).await;
    let b = node("devnet", vec![a.addr().to_string()]).await;
    assert!(eventually(Duration::from_secs(5), || a.manager.peer_count() == 1).await);
    a.manager.ban(b.manager.node_id(), BanReason::Misbehaviour { score: 100 }).await;
    assert!(eventually(Duration::from_secs(3), || b.manager.peer_count() == 0).await);
    let before = b.transport.dials_to(a.addr());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let redials = b.transport.dials_to(a.addr()) - before;
    // Maintenance runs every 50 ms; the refusal's backoff (1 s at most here) allows a few.
    assert!(redials <= 4, "B redialled A {redials} times in 2 s");
    assert_eq!(a.manager.peer_count(), 0, "and A keeps refusing it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_listen_is_still_banned_by_its_key() {
    let a = node("devnet", vec![]).await;
    let mut quiet = config("devnet", vec![a.addr().to_string()]);
    quiet.listen_addr = None;
    let b_identity = Arc::new(NodeIdentity::generate());
    let b = start(quiet, b_identity.clone()).await;
    assert!(eventually(Duration::from_secs(5), || a.manager.peer_count() == 1).await);

    a.manager.ban(b_identity.node_id(), BanReason::Misbehaviour { score: 100 }).await;
    assert!(eventually(Duration::from_secs(2), || a.manager.peer_count() == 0).await);
    // B keeps redialling (its backoff tops out at 1 s); every attempt is refused.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(a.manager.peer_count(), 0, "the banned key never got back in");
    assert!(b.transport.dials_to(a.addr()) >= 2, "it did try again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_cannot_keep_a_node_from_its_own_dials() {
    // The case: ten sockets that connect and say nothing isolated a node.
    let b_addr = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap()
    };
    let mut a_config = config("devnet", vec![b_addr.to_string()]);
    a_config.max_peers = 3;
    a_config.max_inbound = 3;
    a_config.min_peers = 1;
    a_config.handshake_timeout = Duration::from_secs(20);
    let a = start(a_config, Arc::new(NodeIdentity::generate())).await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(tokio::net::TcpStream::connect(a.addr()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b_config = config("devnet", vec![]);
    b_config.listen_addr = Some(b_addr);
    let b = start(b_config, Arc::new(NodeIdentity::generate())).await;
    assert!(
        eventually(Duration::from_secs(5), || a.manager.peer_count() == 1).await,
        "the node reached its bootstrap peer despite the idle sockets"
    );
    assert_eq!(b.manager.peer_count(), 1);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_cannot_take_more_than_its_share_of_inbound_slots() {
    let mut a_config = config("devnet", vec![]);
    a_config.max_inbound_per_ip = 2;
    a_config.limit_loopback = true;
    a_config.handshake_timeout = Duration::from_secs(20);
    let a = start(a_config, Arc::new(NodeIdentity::generate())).await;
    // Sessions from one host, each of which then says nothing.
    let mut connections = Vec::new();
    for _ in 0..5 {
        let transport = TcpTransport::new(
            LinkConfig::default(),
            &NodeIdentity::generate(),
            &NetworkId::new("devnet").unwrap(),
        );
        connections.push(transport.dial(a.addr()).await.expect("a session"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut greeted, mut refused) = (0, 0);
    for connection in &mut connections {
        // An admitted connection gets the node's Hello; a refused one a goodbye.
        match tokio::time::timeout(Duration::from_secs(2), connection.receiver.recv()).await {
            Ok(Some(Ok(MeshMessage::Hello(_)))) => greeted += 1,
            Ok(Some(Ok(MeshMessage::Goodbye(_))) | None | Some(Err(_))) => refused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((greeted, refused), (2, 3), "two handshakes from this host may wait, the rest are refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_cannot_grow_the_peer_store_without_bound() {
    let mut a_config = config("devnet", vec![]);
    a_config.max_banned_records = 3;
    let a = start(a_config, Arc::new(NodeIdentity::generate())).await;
    for port in 2001..2007 {
        let listen = format!("127.0.0.1:{port}");
        forged_handshake(a.addr(), |me| hello_from(me, &listen), Signature::from_bytes([7; 64])).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let banned = a.store.count_by_status(PeerStatus::Banned).await.unwrap();
    assert_eq!(banned, 3, "ban records stop at the cap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_user_agent_is_kept_short() {
    let a = node("devnet", vec![]).await;
    let mut chatty = config("devnet", vec![a.addr().to_string()]);
    chatty.user_agent = "x".repeat(200_000);
    let _b = start(chatty, Arc::new(NodeIdentity::generate())).await;
    assert!(eventually(Duration::from_secs(5), || a.manager.peer_count() == 1).await);
    let peers = a.manager.connected_peers();
    assert_eq!(peers[0].info.user_agent.len(), mesh_transport::handshake::MAX_USER_AGENT_LEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_exchange_cannot_make_a_node_dial_faster_than_its_backoff() {
    let mut slow = config("devnet", vec![]);
    slow.min_peers = 3;
    slow.backoff_initial = Duration::from_secs(1);
    slow.backoff_max = Duration::from_secs(4);
    let a = start(slow, Arc::new(NodeIdentity::generate())).await;
    // An address nothing listens on: every dial fails at once.
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let stranger = NodeIdentity::generate();
    let transport = TcpTransport::new(LinkConfig::default(), &stranger, &NetworkId::devnet());
    let mut connection = transport.dial(a.addr()).await.unwrap();
    handshake(&mut connection, &stranger, &HandshakeConfig::new(NetworkId::devnet())).await.unwrap();

    // Told of the dead address every 50 ms for 3.5 s: 70 times.
    let told = mesh_types::PeerExchange {
        peers: vec![mesh_types::PeerAddress {
            node_id: NodeIdentity::generate().node_id(),
            addr: dead,
            provider_hops: None,
        }],
    };
    for _ in 0..70 {
        let _ = connection.sender.send(MeshMessage::PeerExchange(told.clone())).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dials = a.transport.dials_to(dead);
    // Backoff of 1 s, then 2 s: attempts near 0 s, 1 s and 3 s.
    assert!((1..=3).contains(&dials), "A dialled the address it was told of {dials} times in 3.5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_messages_wait_within_a_byte_budget_and_none_is_lost() {
    let mut tight = config("devnet", vec![]);
    tight.event_queue_bytes = 1024 * 1024;
    // The stranger answers no pings; it must outlive the test.
    tight.heartbeat_interval = Duration::from_secs(20);
    tight.heartbeat_timeout = Duration::from_secs(60);
    let identity = Arc::new(NodeIdentity::generate());
    let transport = Arc::new(CountingTcp::new(&identity, &tight.network));
    let store = Arc::new(MemoryPeerStore::new());
    // Nobody reads the events yet: a busy node.
    let (manager, mut events) = ConnectionManager::start(tight, identity, transport, store).await.unwrap();
    let stranger = NodeIdentity::generate();
    let link = TcpTransport::new(LinkConfig::default(), &stranger, &NetworkId::devnet());
    let mut connection = link.dial(manager.local_addr().unwrap()).await.unwrap();
    handshake(&mut connection, &stranger, &HandshakeConfig::new(NetworkId::devnet())).await.unwrap();

    // Forty digests of 4,000 entries: about 13 MB of decoded messages.
    let entries = (0..4000)
        .map(|i| mesh_types::DigestEntry {
            asset: mesh_types::Asset::new(&format!("A{i}")).unwrap(),
            timestamp: mesh_types::chrono::Utc::now(),
            source_node_id: stranger.node_id(),
            content: [7; 32],
        })
        .collect();
    let digest = MeshMessage::Digest(mesh_types::Digest { entries });
    let weight = digest.weight();
    let sending = tokio::spawn(async move {
        for _ in 0..40 {
            connection.sender.send(digest.clone()).await.unwrap();
        }
        connection
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(events.queued_bytes() <= 1024 * 1024, "{} bytes wait", events.queued_bytes());
    let digests_waiting = events.len().saturating_sub(1); // the Connected event
    assert!(digests_waiting * weight <= 1024 * 1024, "{digests_waiting} digests of {weight} bytes wait");

    // Taking them lets the rest through: backpressure, not loss.
    let mut digests = 0;
    while digests < 40 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.unwrap().unwrap();
        if let TransportEvent::Message { message: MeshMessage::Digest(_), .. } = event {
            digests += 1;
        }
    }
    let _connection = sending.await.unwrap();
    assert_eq!(events.queued_bytes(), 0);
}
