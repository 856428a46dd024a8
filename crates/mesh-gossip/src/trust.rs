//! [`TrustPolicy`]: which providers' prices a node accepts (`MESH_TRUSTED_PROVIDERS`).

use std::collections::HashSet;

use mesh_types::{NodeId, PublicKey};
use thiserror::Error;

/// The providers whose updates are accepted. Empty means any correctly signed source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    trusted: HashSet<NodeId>,
}

/// A `MESH_TRUSTED_PROVIDERS` entry that is neither a node id nor a public key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("trusted provider {0:?} is neither a node id (UUID) nor a public key (64 hex digits)")]
pub struct TrustEntryError(pub String);

impl TrustPolicy {
    /// Accept any correctly signed source.
    pub fn any() -> Self {
        Self::default()
    }

    /// Accept only these providers.
    pub fn only(providers: impl IntoIterator<Item = NodeId>) -> Self {
        Self { trusted: providers.into_iter().collect() }
    }

    /// This policy with `node` trusted too — a node always trusts itself, so a provider on a
    /// trust list need not list its own key. A policy that accepts anyone stays so.
    #[must_use]
    pub fn including(mut self, node: NodeId) -> Self {
        if !self.trusted.is_empty() {
            self.trusted.insert(node);
        }
        self
    }

    /// Parses entries that are node ids or hex public keys (whose node ids are derived).
    ///
    /// # Errors
    /// The first entry that is neither.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, TrustEntryError> {
        let mut trusted = HashSet::new();
        for entry in entries.into_iter().map(str::trim).filter(|entry| !entry.is_empty()) {
            let node = match (entry.parse::<NodeId>(), entry.parse::<PublicKey>()) {
                (Ok(node), _) => node,
                (_, Ok(key)) => NodeId::from_public_key(&key),
                _ => return Err(TrustEntryError(entry.to_owned())),
            };
            trusted.insert(node);
        }
        Ok(Self { trusted })
    }

    /// Whether updates from `source` are accepted.
    pub fn allows(&self, source: NodeId) -> bool {
        self.trusted.is_empty() || self.trusted.contains(&source)
    }

    /// Whether every correctly signed source is accepted.
    pub fn accepts_anyone(&self) -> bool {
        self.trusted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_may_be_node_ids_or_keys() {
        let key = PublicKey::from_bytes([4; 32]);
        let id = NodeId::from_public_key(&PublicKey::from_bytes([5; 32]));
        let policy = TrustPolicy::parse([key.to_string().as_str(), &id.to_string(), " "]).unwrap();
        assert!(policy.allows(NodeId::from_public_key(&key)));
        assert!(policy.allows(id));
        assert!(!policy.allows(NodeId::from_public_key(&PublicKey::from_bytes([6; 32]))));
        assert!(TrustPolicy::parse(["nonsense"]).is_err());
        assert!(TrustPolicy::any().allows(id));
        let me = NodeId::from_public_key(&PublicKey::from_bytes([7; 32]));
        assert!(policy.including(me).allows(me), "a node trusts itself");
        assert!(TrustPolicy::any().including(me).accepts_anyone(), "open stays open");
    }
}
