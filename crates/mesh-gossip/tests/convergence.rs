//! Property: on random connected topologies of up to 30 nodes, with updates delivered in random
//! order, some of them twice, every node ends with the same prices — the newest of everything
//! published — once anti-entropy has run; and no copy ever travels further than its TTL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mesh_dedup::{MemoryTracker, TrackerConfig};
use mesh_gossip::{GossipConfig, GossipEngine, Outcome};
use mesh_price_cache::{MemoryPriceStore, PriceStore};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{
    Asset, CachedPriceData, MessageId, NodeId, NodeIdentity, PriceData, PriceUpdate, Timestamp,
};
use proptest::prelude::*;

/// One update to publish: by which provider, at which node, for which asset, when, with which TTL.
#[derive(Debug, Clone)]
struct Publication {
    provider: u8,
    node: prop::sample::Index,
    asset: u8,
    second: i64,
    cents: i64,
    ttl: u8,
}

#[derive(Debug, Clone)]
struct Scenario {
    nodes: usize,
    edges: Vec<(usize, usize)>,
    publications: Vec<Publication>,
    order_seed: u64,
}

/// A random connected graph: a random spanning tree plus random extra edges.
fn scenario() -> impl Strategy<Value = Scenario> {
    (2usize..=30).prop_flat_map(|nodes| {
        let tree = prop::collection::vec(any::<prop::sample::Index>(), nodes - 1);
        let extra = prop::collection::vec((0..nodes, 0..nodes), 0..nodes);
        let publication = (0u8..3, any::<prop::sample::Index>(), 0u8..4, 0i64..50, 1i64..100_000, 0u8..=10)
            .prop_map(|(provider, node, asset, second, cents, ttl)| Publication {
                provider,
                node,
                asset,
                second,
                cents,
                ttl,
            });
        let publications = prop::collection::vec(publication, 1..8);
        (tree, extra, publications, any::<u64>()).prop_map(move |(tree, extra, publications, order_seed)| {
            let mut edges: Vec<(usize, usize)> =
                tree.iter().enumerate().map(|(i, parent)| (i + 1, parent.index(i + 1))).collect();
            edges.extend(extra.into_iter().filter(|(a, b)| a != b));
            Scenario { nodes, edges, publications, order_seed }
        })
    })
}

fn base() -> Timestamp {
    Timestamp::from_timestamp(1_704_067_200, 0).expect("valid")
}

struct Mesh {
    engines: Vec<GossipEngine>,
    stores: Vec<Arc<MemoryPriceStore>>,
    ids: Vec<NodeId>,
    neighbours: Vec<Vec<usize>>,
}

impl Mesh {
    fn new(scenario: &Scenario) -> Self {
        let mut neighbours = vec![Vec::new(); scenario.nodes];
        for &(a, b) in &scenario.edges {
            if !neighbours[a].contains(&b) {
                neighbours[a].push(b);
                neighbours[b].push(a);
            }
        }
        let stores: Vec<Arc<MemoryPriceStore>> =
            (0..scenario.nodes).map(|_| Arc::new(MemoryPriceStore::new())).collect();
        let engines = stores
            .iter()
            .map(|store| {
                GossipEngine::new(
                    Arc::new(MemoryTracker::new(TrackerConfig::default())),
                    store.clone(),
                    GossipConfig::default(),
                )
            })
            .collect();
        let ids = (0..scenario.nodes)
            .map(|i| NodeIdentity::from_secret_bytes(&[i as u8 + 100; 32]).node_id())
            .collect();
        Self { engines, stores, ids, neighbours }
    }
}

async fn run(scenario: Scenario) {
    let mesh = Mesh::new(&scenario);
    let now = base() + mesh_types::chrono::Duration::seconds(60);
    let providers: Vec<NodeIdentity> =
        (0..3).map(|i| NodeIdentity::from_secret_bytes(&[i + 1; 32])).collect();
    let mut state = scenario.order_seed | 1;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };

    // Publish, collecting the first hops; remember each message's starting TTL.
    let mut queue: Vec<(usize, usize, Arc<PriceUpdate>)> = Vec::new();
    let mut initial_ttl: HashMap<MessageId, u8> = HashMap::new();
    let mut published: Vec<CachedPriceData> = Vec::new();
    for publication in &scenario.publications {
        let price = PriceData {
            asset: Asset::new(&format!("A{}", publication.asset)).unwrap(),
            price: Decimal::new(publication.cents, 2),
            blockchain: "Solana".into(),
            change_24h: None,
        };
        let at = base() + mesh_types::chrono::Duration::seconds(publication.second);
        let update = PriceUpdate::new_signed(
            &providers[usize::from(publication.provider)],
            &mesh_types::NetworkId::mainnet(),
            [price],
            publication.ttl,
            at,
        );
        initial_ttl.insert(update.message_id, update.ttl);
        published.extend(update.cached_prices());
        let node = publication.node.index(scenario.nodes);
        if let Outcome::Accepted(accepted) = mesh.engines[node].publish(update, now).await.unwrap()
            && let Some(relay) = accepted.relay
        {
            for &next in &mesh.neighbours[node] {
                queue.push((next, node, relay.clone()));
            }
        }
    }

    // Deliver in random order, duplicating some copies.
    while !queue.is_empty() {
        let pick = (random() % queue.len() as u64) as usize;
        let (to, from, update) = queue.swap_remove(pick);
        if random() % 5 == 0 {
            queue.push((to, from, update.clone()));
        }
        let hops = u16::from(update.hop_count);
        assert!(
            hops <= u16::from(initial_ttl[&update.message_id]),
            "a copy travelled {hops} hops, beyond its TTL"
        );
        if let Outcome::Accepted(accepted) =
            mesh.engines[to].process_update(mesh.ids[from], update, now).await.unwrap()
            && let Some(relay) = accepted.relay
        {
            for &next in mesh.neighbours[to].iter().filter(|next| **next != from) {
                queue.push((next, to, relay.clone()));
            }
        }
    }

    // Anti-entropy along every edge until nothing changes.
    for _round in 0..=scenario.nodes {
        let mut changed = false;
        for node in 0..scenario.nodes {
            for &peer in &mesh.neighbours[node] {
                let digest = mesh.engines[peer].digest().await.unwrap();
                let Some(request) = mesh.engines[node].on_digest(&digest).await.unwrap() else { continue };
                for answer in mesh.engines[peer].on_request(&request) {
                    if let Outcome::Accepted(accepted) =
                        mesh.engines[node].process_synced(mesh.ids[peer], answer, now).await.unwrap()
                    {
                        changed |= !accepted.changed.is_empty();
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }

    // Every node holds the newest of everything published.
    let mut expected: BTreeMap<Asset, CachedPriceData> = BTreeMap::new();
    for price in published {
        if expected.get(&price.asset).is_none_or(|held| price.newer_than(held)) {
            expected.insert(price.asset, price);
        }
    }
    for (node, store) in mesh.stores.iter().enumerate() {
        let held: BTreeMap<Asset, CachedPriceData> = store.get_all().await.unwrap().into_iter().collect();
        assert_eq!(held, expected, "node {node} of {} disagrees", scenario.nodes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_node_converges_on_the_newest_prices(scenario in scenario()) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(run(scenario));
    }
}
