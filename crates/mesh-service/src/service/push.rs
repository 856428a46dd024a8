//! Relaying, the node's side of lazy push: the [`PushTree`] decides which peers get an accepted
//! update's payload and which only its id; this file sends what it decides, answers and asks
//! for payloads (`Graft`), turns links lazy (`Prune`), and runs the task that sends the
//! notices and grafts when they are due.

use std::sync::Arc;

use mesh_gossip::Accepted;
use mesh_types::{Gossiped, LazyIds, MeshMessage, MessageId, NodeId};

use super::{Inner, lock, now};

/// The time the push tree works in: tokio's, so a paused test clock drives it too.
fn instant() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

impl Inner {
    /// Sends an accepted update on: the payload to the peers the push tree chooses, its id to
    /// the others once due. An update that is not relayed (its TTL spent, or an anti-entropy
    /// answer) only stops the wait for it.
    pub(super) fn relay(&self, accepted: &Accepted) -> usize {
        let Some(relay) = &accepted.relay else {
            lock(&self.push).arrived(accepted.update.seen_key());
            return 0;
        };
        let (targets, wake) = {
            let mut tree = lock(&self.push);
            let idle = tree.next_due().is_none();
            let targets = tree.accepted(accepted.except, relay, instant());
            (targets, idle && tree.next_due().is_some())
        };
        if wake {
            self.push_due.notify_one();
        }
        self.manager.send_each(&MeshMessage::PriceUpdate(Arc::clone(relay)), &targets)
    }

    /// A copy of an update already held came from `from` by gossip: a link of the tree that
    /// closes a cycle, which turns lazy.
    pub(super) fn on_duplicate(&self, from: NodeId) {
        if lock(&self.push).duplicate(from) {
            metrics::counter!("mesh_gossip_lazy_push_total", "message" => "prune").increment(1);
            let _ = self.manager.send(from, MeshMessage::Prune);
        }
    }

    /// `from` accepted these updates: wait for those not held. The notice costs its sender one
    /// update's worth of rate, and each id it would make this node wait for one more, charged
    /// before any is waited for: an honest peer sends a notice per `notice_delay` at most and
    /// rarely names an id this node lacks.
    pub(super) async fn on_ihave(&self, from: NodeId, notice: &LazyIds) {
        let unheard = lock(&self.push).unheard(&notice.ids);
        if !self.charge_lazy(from, unheard.saturating_add(1)).await {
            return;
        }
        let wake = {
            let mut tree = lock(&self.push);
            let idle = tree.next_due().is_none();
            tree.announced(from, &notice.ids, instant());
            idle && tree.next_due().is_some()
        };
        if wake {
            self.push_due.notify_one();
        }
    }

    /// `from` asks for these updates, and to be pushed to eagerly: answered with the ones
    /// still held, within its rate.
    pub(super) async fn on_graft(&self, from: NodeId, graft: &LazyIds) {
        let updates = lock(&self.push).grafted(from, &graft.ids);
        if self.charge_lazy(from, updates.len().saturating_add(1)).await {
            for update in updates {
                let _ = self.manager.send(from, MeshMessage::PriceUpdate(update));
            }
        }
    }

    pub(super) fn on_prune(&self, from: NodeId) {
        lock(&self.push).pruned(from);
    }

    /// Whether `count` lazy-push items from `from` fit its rate; a peer far beyond it is banned.
    async fn charge_lazy(&self, from: NodeId, count: usize) -> bool {
        match self.engine.admit_lazy(from, count, now()) {
            Ok(()) => true,
            Err(rejected) => {
                if let Some(ban) = rejected.ban {
                    self.manager.ban_for(ban.peer, ban.reason, ban.duration).await;
                }
                false
            }
        }
    }

    /// Sends the notices and grafts of the push tree when they are due, until shutdown.
    pub(super) async fn push_loop(self: Arc<Self>) {
        loop {
            let next = lock(&self.push).next_due().map(tokio::time::Instant::from_std);
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                () = self.push_due.notified() => continue,
                () = super::sleep_until_some(next) => {}
            }
            let due = lock(&self.push).due(instant());
            for (peer, notice) in due.notices {
                metrics::counter!("mesh_gossip_lazy_push_total", "message" => "ihave").increment(1);
                let _ = self.manager.send(peer, MeshMessage::IHave(notice));
            }
            for (peer, graft) in due.grafts {
                let wanted = self.not_held(graft.ids).await;
                if wanted.is_empty() {
                    continue;
                }
                metrics::counter!("mesh_gossip_lazy_push_total", "message" => "graft").increment(1);
                let _ = self.manager.send(peer, MeshMessage::Graft(LazyIds { ids: wanted }));
            }
        }
    }

    /// The ids among `ids` this node has not seen; the others stop being waited for. (The
    /// tree knows only what it relayed lately; the tracker knows older ids, and ids that
    /// another process sharing it accepted.)
    async fn not_held(&self, ids: Vec<MessageId>) -> Vec<MessageId> {
        let mut wanted = Vec::with_capacity(ids.len());
        for id in ids {
            match self.tracker.has_seen(id).await {
                Ok(true) => lock(&self.push).arrived(id),
                // A tracker that cannot answer: asking costs one payload at most.
                Ok(false) | Err(_) => wanted.push(id),
            }
        }
        wanted
    }
}
