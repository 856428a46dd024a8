//! Topologies for simulated meshes: who is connected to whom.

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The shape of a simulated mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Every node has `degree` neighbours chosen at random (a random regular graph).
    RandomRegular {
        /// Neighbours per node.
        degree: usize,
    },
    /// A cycle.
    Ring,
    /// A path: the worst case for propagation.
    Line,
    /// A planned layout: providers at the top, `relays` relays below each, and consumers spread
    /// over the relays; relays of one tier are linked in a ring.
    Hierarchical {
        /// Relays per provider.
        relays: usize,
    },
    /// The hierarchy a mesh grows into when every new node is pointed at one node already
    /// there: providers linked in a line at the top, and every other node below one node of
    /// the tier above, `fanout` to a parent, filled tier by tier. With 2 providers, 100 nodes
    /// and a fanout of 3 the tiers hold 2, 6, 18, 54 and 20 nodes.
    Tree {
        /// Children per node.
        fanout: usize,
    },
}

/// The edges of `topology` over `nodes` nodes, of which the first `providers` are providers,
/// drawn with `seed`.
pub fn edges(topology: Topology, nodes: usize, providers: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut edges = BTreeSet::new();
    let mut add = |a: usize, b: usize| {
        if a != b {
            edges.insert((a.min(b), a.max(b)));
        }
    };
    match topology {
        Topology::Line => (1..nodes).for_each(|i| add(i - 1, i)),
        Topology::Ring => (0..nodes).for_each(|i| add(i, (i + 1) % nodes)),
        Topology::RandomRegular { degree } => {
            // A ring keeps the graph connected; random chords bring every node to `degree`.
            (0..nodes).for_each(|i| add(i, (i + 1) % nodes));
            let mut degrees = vec![2usize.min(nodes.saturating_sub(1)); nodes];
            let mut attempts = 0;
            while attempts < nodes * degree * 50 {
                attempts += 1;
                let (a, b) = (rng.random_range(0..nodes), rng.random_range(0..nodes));
                if a == b
                    || degrees[a] >= degree
                    || degrees[b] >= degree
                    || edges.contains(&(a.min(b), a.max(b)))
                {
                    continue;
                }
                edges.insert((a.min(b), a.max(b)));
                degrees[a] += 1;
                degrees[b] += 1;
            }
        }
        Topology::Hierarchical { relays } => {
            let providers = providers.clamp(1, nodes);
            let relay_count = (providers * relays).min(nodes - providers);
            let relay = |k: usize| providers + k;
            for k in 0..relay_count {
                add(k % providers, relay(k));
                add(relay(k), relay((k + 1) % relay_count.max(1)));
            }
            for (k, consumer) in (providers + relay_count..nodes).enumerate() {
                add(consumer, relay(k % relay_count.max(1)));
            }
            (1..providers).for_each(|p| add(p - 1, p));
        }
        Topology::Tree { fanout } => {
            let providers = providers.clamp(1, nodes.max(1));
            (1..providers.min(nodes)).for_each(|p| add(p - 1, p));
            (providers..nodes).for_each(|child| add(child, (child - providers) / fanout.max(1)));
        }
    }
    edges.into_iter().collect()
}

/// Whether every node can reach every other over `edges`.
pub fn is_connected(nodes: usize, edges: &[(usize, usize)]) -> bool {
    let mut neighbours = vec![Vec::new(); nodes];
    for &(a, b) in edges {
        neighbours[a].push(b);
        neighbours[b].push(a);
    }
    let mut seen = vec![false; nodes];
    let mut stack = vec![0];
    while let Some(node) = stack.pop() {
        if nodes == 0 || std::mem::replace(&mut seen[node], true) {
            continue;
        }
        stack.extend(neighbours[node].iter().copied());
    }
    seen.iter().all(|seen| *seen)
}

/// Hops from each node to the nearest of `sources` over `edges` (breadth first); `None` for a
/// node none of them reaches.
pub fn distances(nodes: usize, edges: &[(usize, usize)], sources: &[usize]) -> Vec<Option<usize>> {
    let mut neighbours = vec![Vec::new(); nodes];
    for &(a, b) in edges {
        if a < nodes && b < nodes {
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
    }
    let mut distance = vec![None; nodes];
    let mut queue = std::collections::VecDeque::new();
    for &source in sources.iter().filter(|source| **source < nodes) {
        distance[source] = Some(0);
        queue.push_back(source);
    }
    while let Some(node) = queue.pop_front() {
        let next = distance[node].map(|hops| hops + 1);
        for &other in &neighbours[node] {
            if distance[other].is_none() {
                distance[other] = next;
                queue.push_back(other);
            }
        }
    }
    distance
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topology_is_connected() {
        for topology in [
            Topology::RandomRegular { degree: 6 },
            Topology::Ring,
            Topology::Line,
            Topology::Hierarchical { relays: 3 },
            Topology::Tree { fanout: 3 },
        ] {
            let edges = edges(topology, 50, 2, 7);
            assert!(is_connected(50, &edges), "{topology:?}");
        }
    }

    #[test]
    fn a_tree_fills_tier_by_tier_below_its_providers() {
        let edges = edges(Topology::Tree { fanout: 3 }, 100, 2, 1);
        assert_eq!(edges.len(), 99, "a tree: one edge per node but the first");
        let depths = distances(100, &edges, &[0, 1]);
        let tier = |depth: usize| depths.iter().filter(|d| **d == Some(depth)).count();
        assert_eq!([tier(0), tier(1), tier(2), tier(3), tier(4)], [2, 6, 18, 54, 20]);
    }

    #[test]
    fn random_regular_graphs_reach_the_degree() {
        let edges = edges(Topology::RandomRegular { degree: 6 }, 200, 1, 1);
        let mut degrees = [0usize; 200];
        for (a, b) in edges {
            degrees[a] += 1;
            degrees[b] += 1;
        }
        assert!(degrees.iter().all(|d| *d <= 6));
        assert!(degrees.iter().filter(|d| **d == 6).count() >= 190, "nearly every node has degree 6");
    }
}
