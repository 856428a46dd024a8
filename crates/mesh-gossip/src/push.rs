//! [`PushTree`]: which peers get an accepted update's payload, and which only hear its id.
//!
//! Flooding sends every update to every peer, so a node with eight peers receives about eight
//! copies of each. Lazy push, Plumtree's design, sends the payload *eagerly* along a spanning
//! tree and only the id ([`MeshMessage::IHave`](mesh_types::MeshMessage::IHave)) on the other
//! links:
//!
//! - Every new peer starts eager.
//! - A payload that arrives as a duplicate from an eager peer shows a cycle: this node turns the
//!   link lazy and tells the peer with a `Prune`, which turns it lazy on that end too.
//! - A payload that is new from a lazy peer turns the link eager again.
//! - An id heard in an `IHave` whose payload has not arrived `graft_timeout` later is asked of
//!   its announcer with a `Graft`, which turns the link eager on both ends: the tree is repaired
//!   where it broke. If the payload still does not come, the next announcer is asked after
//!   `retry_timeout`.
//! - Anti-entropy stays the safety net for whatever all of this misses.
//!
//! Links are symmetric, so one tree serves every provider. The ids to announce are gathered for
//! `notice_delay` and sent as one message per lazy peer.
//!
//! [`PushMode::Flood`] changes only what this node sends: the payload to every peer and no
//! notices. It still answers grafts and asks for what it hears of, so flooding and lazy nodes
//! mix.
//!
//! The state is plain data with the time passed in; the service owns it behind a lock and acts
//! on what it returns. Everything a peer can grow is bounded: the ids it makes this node wait
//! for ([`MAX_MISSING_PER_PEER`], [`MAX_MISSING`]), the announcers remembered per id, the ids
//! waiting to be announced, and the updates kept to answer grafts ([`MAX_RECENT`]).

use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_types::{Gossiped, LazyIds, MAX_LAZY_IDS, MessageId, NodeId, PriceUpdate};

/// Most ids this node waits for at once, over all announcers.
pub const MAX_MISSING: usize = 4096;

/// Most ids one announcer can make this node wait for: a peer announcing made-up ids fills
/// its own share only.
pub const MAX_MISSING_PER_PEER: usize = 512;

/// Most announcers remembered for one missing id: the ones asked in turn.
const MAX_ANNOUNCERS: usize = 4;

/// Most recently relayed updates kept to answer grafts: a few seconds of a busy mesh.
pub const MAX_RECENT: usize = 1024;

/// Most ids gathered for announcing before they go out whatever the delay.
const MAX_PENDING_NOTICES: usize = MAX_LAZY_IDS;

/// `wait` after `at`; a wait beyond the clock's range counts as none, so a timeout
/// configured too long asks at once instead of overflowing.
fn after(at: Instant, wait: Duration) -> Instant {
    at.checked_add(wait).unwrap_or(at)
}

/// How updates are pushed to peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PushMode {
    /// The payload along a spanning tree, ids on the other links (the default).
    #[default]
    Lazy,
    /// The payload to every peer: more copies, no repair delay. For tiny meshes.
    Flood,
}

/// How lazy push behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushConfig {
    /// Lazy or flooding (`MESH_GOSSIP_PUSH`, default lazy).
    pub mode: PushMode,
    /// How long after the first notice of an update its payload may take before this node asks
    /// the announcer for it (default 100 ms). Shorter repairs a broken tree sooner; too short
    /// asks for payloads still on their way, which adds copies.
    pub graft_timeout: Duration,
    /// How long the payload may take after a graft before the next announcer is asked
    /// (default 50 ms).
    pub retry_timeout: Duration,
    /// How long ids are gathered before they are announced (default 25 ms): fewer, fuller
    /// notices (at most 40 a second to each peer, each charged to the sender's rate), for a
    /// repair that much later.
    pub notice_delay: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            mode: PushMode::Lazy,
            graft_timeout: Duration::from_millis(100),
            retry_timeout: Duration::from_millis(50),
            notice_delay: Duration::from_millis(25),
        }
    }
}

/// Duplicates in a row, with no first copy between them, after which an eager peer is pruned.
/// With many updates in flight, a link of the tree sometimes loses a race to a longer path
/// whose queues happened to be shorter; pruning it at the first such loss cuts the tree and
/// costs the nodes below it a graft timeout on the next update. A link off the tree brings
/// only duplicates and goes after a few.
pub const PRUNE_AFTER_DUPLICATES: u8 = 3;

/// How this node pushes to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Payloads, with the duplicates it sent in a row since its last first copy.
    Eager {
        duplicates: u8,
    },
    Lazy,
}

impl Link {
    const EAGER: Self = Self::Eager { duplicates: 0 };

    const fn is_eager(self) -> bool {
        matches!(self, Self::Eager { .. })
    }
}

/// An update heard of and not yet received.
#[derive(Debug)]
struct Missing {
    /// Who announced it and was not asked yet, first first.
    announcers: VecDeque<NodeId>,
    /// Who it counts against (its first announcer).
    charged: NodeId,
    /// When to ask the next announcer.
    deadline: Instant,
}

/// What is due: notices to send and payloads to ask for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// An `IHave` for each lazy peer.
    pub notices: Vec<(NodeId, LazyIds)>,
    /// A `Graft` for each peer asked.
    pub grafts: Vec<(NodeId, LazyIds)>,
}

impl Due {
    /// Whether nothing is due.
    pub fn is_empty(&self) -> bool {
        self.notices.is_empty() && self.grafts.is_empty()
    }
}

/// The push tree of one node: see the [module documentation](self).
#[derive(Debug)]
pub struct PushTree {
    config: PushConfig,
    links: HashMap<NodeId, Link>,
    /// Ids to announce, each with the peer it came from (not told of its own update).
    notices: Vec<(MessageId, Option<NodeId>)>,
    /// When the oldest of `notices` was gathered.
    notices_since: Option<Instant>,
    missing: HashMap<MessageId, Missing>,
    /// How many of `missing` each announcer is charged with.
    missing_by_peer: HashMap<NodeId, usize>,
    /// Deadlines of `missing`, earliest first; an entry whose deadline moved is skipped.
    deadlines: BinaryHeap<Reverse<(Instant, MessageId)>>,
    /// Updates relayed lately, to answer grafts, and their order.
    recent: HashMap<MessageId, Arc<PriceUpdate>>,
    recent_order: VecDeque<MessageId>,
}

impl PushTree {
    /// A tree with no peers yet.
    pub fn new(config: PushConfig) -> Self {
        Self {
            config,
            links: HashMap::new(),
            notices: Vec::new(),
            notices_since: None,
            missing: HashMap::new(),
            missing_by_peer: HashMap::new(),
            deadlines: BinaryHeap::new(),
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &PushConfig {
        &self.config
    }

    /// A peer connected: it starts eager.
    pub fn peer_joined(&mut self, peer: NodeId) {
        self.links.insert(peer, Link::EAGER);
    }

    /// A peer disconnected: forgotten, and no longer asked for anything.
    pub fn peer_left(&mut self, peer: NodeId) {
        self.links.remove(&peer);
        for missing in self.missing.values_mut() {
            missing.announcers.retain(|announcer| *announcer != peer);
        }
    }

    /// How many connected peers get payloads eagerly.
    pub fn eager_peers(&self) -> usize {
        self.links.values().filter(|link| link.is_eager()).count()
    }

    /// An update this node accepted from `from` (`None`: its own), to be relayed as `relay`.
    /// Returns the peers to send the payload to; the others hear its id at the next
    /// [`PushTree::due`].
    pub fn accepted(&mut self, from: Option<NodeId>, relay: &Arc<PriceUpdate>, now: Instant) -> Vec<NodeId> {
        let id = relay.seen_key();
        self.arrived(id);
        if let Some(sender) = from
            && let Some(link) = self.links.get_mut(&sender)
        {
            *link = Link::EAGER;
        }
        self.remember(id, relay);
        let flood = self.config.mode == PushMode::Flood;
        if !flood && self.links.values().any(|link| *link == Link::Lazy) {
            if self.notices.is_empty() {
                self.notices_since = Some(now);
            }
            if self.notices.len() < MAX_PENDING_NOTICES {
                self.notices.push((id, from));
            }
        }
        self.links
            .iter()
            .filter(|(peer, link)| Some(**peer) != from && (flood || link.is_eager()))
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// A copy of an update already held arrived from `from` (not an anti-entropy answer).
    /// Returns whether to send `from` a `Prune`: it was eager and has now sent
    /// [`PRUNE_AFTER_DUPLICATES`] duplicates in a row, so it is lazy now.
    pub fn duplicate(&mut self, from: NodeId) -> bool {
        if self.config.mode == PushMode::Flood {
            return false;
        }
        match self.links.get_mut(&from) {
            Some(link @ Link::Eager { .. }) => {
                let Link::Eager { duplicates } = *link else { return false };
                let duplicates = duplicates.saturating_add(1);
                *link = if duplicates >= PRUNE_AFTER_DUPLICATES {
                    Link::Lazy
                } else {
                    Link::Eager { duplicates }
                };
                *link == Link::Lazy
            }
            _ => false,
        }
    }

    /// `from` pruned this link: it gets ids only from now on.
    pub fn pruned(&mut self, from: NodeId) {
        if let Some(link) = self.links.get_mut(&from) {
            *link = Link::Lazy;
        }
    }

    /// `from` asked for these updates and to be pushed to eagerly: the link turns eager, and
    /// the updates still held are returned to send it. At most [`MAX_LAZY_IDS`] are read.
    pub fn grafted(&mut self, from: NodeId, ids: &[MessageId]) -> Vec<Arc<PriceUpdate>> {
        if let Some(link) = self.links.get_mut(&from) {
            *link = Link::EAGER;
        }
        ids.iter().take(MAX_LAZY_IDS).filter_map(|id| self.recent.get(id).cloned()).collect()
    }

    /// How many of `ids` (at most [`MAX_LAZY_IDS`] read) this node neither relayed lately nor
    /// waits for already: what an announcement of them would make it wait for, to charge
    /// before [`PushTree::announced`].
    pub fn unheard(&self, ids: &[MessageId]) -> usize {
        ids.iter()
            .take(MAX_LAZY_IDS)
            .filter(|id| !self.recent.contains_key(id) && !self.missing.contains_key(id))
            .count()
    }

    /// `from` announced these ids. Those not relayed here lately are waited for; returns how
    /// many of them are new to wait for, which the caller charges to `from`. At most
    /// [`MAX_LAZY_IDS`] are read; beyond the bounds, ids are not waited for (anti-entropy
    /// still brings what they name).
    pub fn announced(&mut self, from: NodeId, ids: &[MessageId], now: Instant) -> usize {
        if !self.links.contains_key(&from) {
            return 0;
        }
        let mut new: usize = 0;
        let mut waiting = self.missing.len();
        for id in ids.iter().take(MAX_LAZY_IDS) {
            if self.recent.contains_key(id) {
                continue;
            }
            match self.missing.entry(*id) {
                Entry::Occupied(mut entry) => {
                    let announcers = &mut entry.get_mut().announcers;
                    if announcers.len() < MAX_ANNOUNCERS && !announcers.contains(&from) {
                        announcers.push_back(from);
                    }
                }
                Entry::Vacant(entry) => {
                    let charged = self.missing_by_peer.entry(from).or_default();
                    if *charged >= MAX_MISSING_PER_PEER || waiting >= MAX_MISSING {
                        continue;
                    }
                    *charged = charged.saturating_add(1);
                    waiting = waiting.saturating_add(1);
                    let deadline = after(now, self.config.graft_timeout);
                    entry.insert(Missing { announcers: VecDeque::from([from]), charged: from, deadline });
                    self.deadlines.push(Reverse((deadline, *id)));
                    new = new.saturating_add(1);
                }
            }
        }
        new
    }

    /// Stops waiting for `id`: it arrived, or it turned out to be held already.
    pub fn arrived(&mut self, id: MessageId) {
        if let Some(missing) = self.missing.remove(&id)
            && let Entry::Occupied(mut charged) = self.missing_by_peer.entry(missing.charged)
        {
            *charged.get_mut() = charged.get().saturating_sub(1);
            if *charged.get() == 0 {
                charged.remove();
            }
        }
    }

    /// The notices and grafts due at `now`. A peer asked in a graft turns eager here too.
    pub fn due(&mut self, now: Instant) -> Due {
        let mut due = Due { notices: self.due_notices(now), grafts: Vec::new() };
        let mut asked: HashMap<NodeId, Vec<MessageId>> = HashMap::new();
        while let Some(Reverse((deadline, id))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let Some(missing) = self.missing.get_mut(&id) else { continue };
            if missing.deadline != deadline {
                continue;
            }
            let Some(announcer) = missing.announcers.pop_front() else {
                // Everyone who announced it was asked: anti-entropy is left.
                self.arrived(id);
                continue;
            };
            missing.deadline = after(now, self.config.retry_timeout);
            self.deadlines.push(Reverse((missing.deadline, id)));
            asked.entry(announcer).or_default().push(id);
        }
        for (peer, ids) in asked {
            if let Some(link) = self.links.get_mut(&peer) {
                *link = Link::EAGER;
            }
            for chunk in ids.chunks(MAX_LAZY_IDS) {
                due.grafts.push((peer, LazyIds { ids: chunk.to_vec() }));
            }
        }
        due
    }

    /// When [`PushTree::due`] next has something to do, if ever.
    pub fn next_due(&self) -> Option<Instant> {
        let notices = self.notices_since.map(|since| after(since, self.config.notice_delay));
        let graft = self.deadlines.peek().map(|Reverse((deadline, _))| *deadline);
        notices.into_iter().chain(graft).min()
    }

    fn due_notices(&mut self, now: Instant) -> Vec<(NodeId, LazyIds)> {
        let full = self.notices.len() >= MAX_PENDING_NOTICES;
        let ready = self.notices_since.is_some_and(|since| now >= after(since, self.config.notice_delay));
        if !full && !ready {
            return Vec::new();
        }
        self.notices_since = None;
        let notices = std::mem::take(&mut self.notices);
        self.links
            .iter()
            .filter(|(_, link)| **link == Link::Lazy)
            .filter_map(|(peer, _)| {
                let ids: Vec<MessageId> =
                    notices.iter().filter(|(_, from)| *from != Some(*peer)).map(|(id, _)| *id).collect();
                (!ids.is_empty()).then_some((*peer, LazyIds { ids }))
            })
            .collect()
    }

    fn remember(&mut self, id: MessageId, update: &Arc<PriceUpdate>) {
        if self.recent.insert(id, Arc::clone(update)).is_some() {
            return;
        }
        self.recent_order.push_back(id);
        if self.recent_order.len() > MAX_RECENT
            && let Some(oldest) = self.recent_order.pop_front()
        {
            self.recent.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{Asset, NetworkId, NodeIdentity, PriceData};

    use super::*;

    fn peer(n: u8) -> NodeId {
        NodeIdentity::from_secret_bytes(&[n; 32]).node_id()
    }

    fn update() -> Arc<PriceUpdate> {
        let provider = NodeIdentity::from_secret_bytes(&[200; 32]);
        let price = PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: Decimal::new(15_000, 2),
            blockchain: "Solana".into(),
            change_24h: None,
        };
        let now = mesh_types::chrono::Utc::now();
        Arc::new(PriceUpdate::new_signed(&provider, &NetworkId::mainnet(), [price], 5, now))
    }

    fn tree(peers: &[u8]) -> PushTree {
        let mut tree = PushTree::new(PushConfig::default());
        for n in peers {
            tree.peer_joined(peer(*n));
        }
        tree
    }

    fn sorted(mut peers: Vec<NodeId>) -> Vec<NodeId> {
        peers.sort();
        peers
    }

    #[test]
    fn new_peers_are_eager_and_the_sender_is_skipped() {
        let mut tree = tree(&[1, 2, 3]);
        let targets = tree.accepted(Some(peer(1)), &update(), Instant::now());
        assert_eq!(sorted(targets), sorted(vec![peer(2), peer(3)]));
        assert_eq!(tree.eager_peers(), 3);
    }

    #[test]
    fn a_duplicate_prunes_its_sender_which_then_hears_ids_only() {
        let start = Instant::now();
        let mut tree = tree(&[1, 2, 3]);
        for _ in 1..PRUNE_AFTER_DUPLICATES {
            assert!(!tree.duplicate(peer(2)), "a link may lose a few races");
        }
        // A first copy from it shows it is on the tree: the count starts again.
        tree.accepted(Some(peer(2)), &update(), start);
        for _ in 1..PRUNE_AFTER_DUPLICATES {
            assert!(!tree.duplicate(peer(2)));
        }
        assert!(tree.duplicate(peer(2)), "duplicates only, in a row: pruned");
        assert!(!tree.duplicate(peer(2)), "pruned once");
        tree.due(start + Duration::from_secs(1));
        let update = update();
        let targets = tree.accepted(Some(peer(1)), &update, start);
        assert_eq!(targets, vec![peer(3)]);
        assert!(tree.due(start).is_empty(), "notices wait for the delay");
        assert_eq!(tree.next_due(), Some(start + PushConfig::default().notice_delay));
        let due = tree.due(start + PushConfig::default().notice_delay);
        assert_eq!(due.notices, vec![(peer(2), LazyIds { ids: vec![update.seen_key()] })]);
        assert!(tree.due(start + Duration::from_secs(1)).is_empty(), "announced once");
    }

    #[test]
    fn a_lazy_peer_is_not_told_of_what_it_sent() {
        let start = Instant::now();
        let mut tree = tree(&[1, 2]);
        tree.pruned(peer(1));
        tree.pruned(peer(2));
        // A new payload from a lazy peer turns its link eager.
        let update = update();
        assert_eq!(tree.accepted(Some(peer(1)), &update, start), Vec::<NodeId>::new());
        assert_eq!(tree.eager_peers(), 1);
        let due = tree.due(start + Duration::from_secs(1));
        assert_eq!(due.notices, vec![(peer(2), LazyIds { ids: vec![update.seen_key()] })]);
    }

    #[test]
    fn a_missing_payload_is_grafted_from_each_announcer_in_turn() {
        let config = PushConfig::default();
        let start = Instant::now();
        let mut tree = tree(&[1, 2]);
        tree.pruned(peer(1));
        tree.pruned(peer(2));
        let id = update().seen_key();
        assert_eq!(tree.unheard(&[id]), 1);
        assert_eq!(tree.announced(peer(1), &[id], start), 1);
        assert_eq!(tree.unheard(&[id]), 0);
        assert_eq!(tree.announced(peer(2), &[id], start), 0, "already waited for");
        assert!(tree.due(start).is_empty());
        let first = start + config.graft_timeout;
        assert_eq!(tree.next_due(), Some(first));
        assert_eq!(tree.due(first).grafts, vec![(peer(1), LazyIds { ids: vec![id] })]);
        assert_eq!(tree.eager_peers(), 1, "the asked peer is eager now");
        let second = first + config.retry_timeout;
        assert_eq!(tree.due(second).grafts, vec![(peer(2), LazyIds { ids: vec![id] })]);
        assert!(tree.due(second + config.retry_timeout).is_empty(), "nobody left to ask");
        assert_eq!(tree.next_due(), None);
    }

    #[test]
    fn a_payload_that_arrives_in_time_is_not_asked_for() {
        let start = Instant::now();
        let mut tree = tree(&[1, 2]);
        let update = update();
        tree.announced(peer(2), &[update.seen_key()], start);
        tree.accepted(Some(peer(1)), &update, start);
        assert!(tree.due(start + Duration::from_secs(1)).grafts.is_empty());
        assert_eq!(tree.announced(peer(2), &[update.seen_key()], start), 0, "held: not waited for");
    }

    #[test]
    fn a_graft_turns_the_link_eager_and_answers_what_is_held() {
        let mut tree = tree(&[1, 2]);
        tree.pruned(peer(2));
        let update = update();
        tree.accepted(Some(peer(1)), &update, Instant::now());
        let unknown = MessageId::new();
        assert_eq!(tree.grafted(peer(2), &[unknown, update.seen_key()]), vec![update.clone()]);
        assert_eq!(tree.eager_peers(), 2);
    }

    #[test]
    fn one_announcer_cannot_make_the_node_wait_for_more_than_its_share() {
        let start = Instant::now();
        let mut tree = tree(&[1, 2]);
        let mut waited = 0;
        for _ in 0..(2 * MAX_MISSING_PER_PEER / MAX_LAZY_IDS) {
            let ids: Vec<MessageId> = (0..MAX_LAZY_IDS).map(|_| MessageId::new()).collect();
            waited += tree.announced(peer(1), &ids, start);
        }
        assert_eq!(waited, MAX_MISSING_PER_PEER);
        assert_eq!(tree.announced(peer(2), &[MessageId::new()], start), 1, "others keep their share");
        let oversized: Vec<MessageId> = (0..MAX_LAZY_IDS * 2).map(|_| MessageId::new()).collect();
        assert!(tree.announced(peer(2), &oversized, start) <= MAX_LAZY_IDS);
        assert_eq!(tree.announced(peer(9), &[MessageId::new()], start), 0, "not a peer");
    }

    #[test]
    fn a_departed_peer_is_not_asked() {
        let start = Instant::now();
        let mut tree = tree(&[1]);
        tree.announced(peer(1), &[MessageId::new()], start);
        tree.peer_left(peer(1));
        assert!(tree.due(start + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn flooding_sends_to_every_peer_and_never_prunes() {
        let start = Instant::now();
        let mut tree = PushTree::new(PushConfig { mode: PushMode::Flood, ..PushConfig::default() });
        for n in [1, 2, 3] {
            tree.peer_joined(peer(n));
        }
        tree.pruned(peer(3));
        assert!(!tree.duplicate(peer(2)));
        let targets = tree.accepted(Some(peer(1)), &update(), start);
        assert_eq!(sorted(targets), sorted(vec![peer(2), peer(3)]));
        assert!(tree.due(start + Duration::from_secs(1)).is_empty(), "no notices");
    }

    #[test]
    fn relayed_updates_are_kept_for_grafts_within_a_bound() {
        let mut tree = tree(&[1]);
        let first = update();
        tree.accepted(None, &first, Instant::now());
        for _ in 0..MAX_RECENT {
            tree.accepted(None, &update(), Instant::now());
        }
        assert_eq!(tree.recent.len(), MAX_RECENT);
        assert!(tree.grafted(peer(1), &[first.seen_key()]).is_empty(), "the oldest went");
    }
}
