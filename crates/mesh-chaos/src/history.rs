//! The history of a run and its checker, in the manner of Jepsen: every change of a provider's
//! quote that a node showed, with when it was seen, and the checks over that record.
//!
//! - **Newest wins**: within one life of a node (between starts), the quote it shows for a
//!   provider and an asset never goes back to an older one.
//! - **No loss**: once a fault is over, every live node ends on, or past, the newest quote of
//!   every provider and asset that any node showed before the fault ended.
//!
//! A node's quotes are read from its API (`/api/mesh/prices/{asset}?quotes=true`), the
//! provider's signed price and time as that node holds it. Quotes are sampled, so a quote
//! overtaken between two samples is not recorded; the checks need only the order and the last
//! value, which sampling keeps.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A provider and an asset: what a quote is of.
pub type QuoteKey = (String, String);

/// One quote as a node showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// When the provider signed it.
    pub timestamp: DateTime<Utc>,
    /// The price, as the API wrote it.
    pub price: String,
}

/// One change a node showed.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Time since the run started.
    pub at: Duration,
    /// When it was seen, by this machine's clock (for how old the quote was).
    pub seen: DateTime<Utc>,
    /// The node's host.
    pub node: usize,
    /// Which start of the node (a restarted node begins empty).
    pub life: u32,
    /// Whose quote of what.
    pub key: QuoteKey,
    /// The quote it now shows.
    pub quote: Quote,
}

/// What one node shows now.
#[derive(Debug, Default, Clone)]
struct View {
    life: u32,
    quotes: BTreeMap<QuoteKey, Quote>,
}

/// Every change every node showed, in the order seen.
#[derive(Debug, Default)]
pub struct History {
    observations: Vec<Observation>,
    views: BTreeMap<usize, View>,
}

impl History {
    /// Records what `node` (in its `life`-th start) shows at `at`: only changes are kept.
    pub fn record(&mut self, at: Duration, node: usize, life: u32, quotes: Vec<(QuoteKey, Quote)>) {
        let seen = Utc::now();
        let view = self.views.entry(node).or_default();
        if view.life != life {
            *view = View { life, quotes: BTreeMap::new() };
        }
        for (key, quote) in quotes {
            if view.quotes.get(&key) != Some(&quote) {
                view.quotes.insert(key.clone(), quote.clone());
                self.observations.push(Observation { at, seen, node, life, key, quote });
            }
        }
    }

    /// Every change recorded.
    pub fn observations(&self) -> &[Observation] {
        &self.observations
    }

    /// The newest quote time of each provider and asset that any node showed up to `until`.
    pub fn newest_until(&self, until: Duration) -> BTreeMap<QuoteKey, DateTime<Utc>> {
        let mut newest: BTreeMap<QuoteKey, DateTime<Utc>> = BTreeMap::new();
        for observation in self.observations.iter().filter(|observation| observation.at <= until) {
            let entry = newest.entry(observation.key.clone()).or_insert(observation.quote.timestamp);
            *entry = (*entry).max(observation.quote.timestamp);
        }
        newest
    }

    /// What `node` lacks of `targets`: each provider and asset it shows older than the target,
    /// or not at all.
    pub fn missing(&self, node: usize, targets: &BTreeMap<QuoteKey, DateTime<Utc>>) -> Vec<String> {
        let quotes = self.views.get(&node).map(|view| &view.quotes);
        targets
            .iter()
            .filter_map(|(key, target)| match quotes.and_then(|quotes| quotes.get(key)) {
                Some(quote) if quote.timestamp >= *target => None,
                Some(quote) => Some(format!(
                    "node{node} holds {}'s {} from {}, older than {target}",
                    short(&key.0),
                    key.1,
                    quote.timestamp
                )),
                None => Some(format!("node{node} holds no {} quote of {}", key.1, short(&key.0))),
            })
            .collect()
    }

    /// Whether `node` shows a quote of `asset` from any provider.
    pub fn shows_asset(&self, node: usize, asset: &str) -> bool {
        self.views.get(&node).is_some_and(|view| view.quotes.keys().any(|(_, shown)| shown == asset))
    }

    /// Every time a node showed an older quote than it had shown before in the same life.
    pub fn newest_wins_violations(&self) -> Vec<String> {
        let mut shown: BTreeMap<(usize, u32, &QuoteKey), &Observation> = BTreeMap::new();
        let mut violations = Vec::new();
        for observation in &self.observations {
            let slot = (observation.node, observation.life, &observation.key);
            if let Some(before) = shown.get(&slot)
                && observation.quote.timestamp < before.quote.timestamp
            {
                violations.push(format!(
                    "node{} went back from {}'s {} of {} to {} at {:.1} s",
                    observation.node,
                    short(&observation.key.0),
                    observation.key.1,
                    before.quote.timestamp,
                    observation.quote.timestamp,
                    observation.at.as_secs_f64()
                ));
            }
            shown.insert(slot, observation);
        }
        violations
    }

    /// How long after being signed each quote was first shown by each node, within `window`
    /// (only quotes signed by providers whose clocks agree with this machine's count).
    pub fn propagation_lags(
        &self,
        window: std::ops::Range<Duration>,
        skip_provider: Option<&str>,
    ) -> Vec<Duration> {
        self.observations
            .iter()
            .filter(|observation| window.contains(&observation.at))
            .filter(|observation| skip_provider != Some(observation.key.0.as_str()))
            .filter_map(|observation| (observation.seen - observation.quote.timestamp).to_std().ok())
            .collect()
    }
}

/// A node id shortened for reports.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Parses the `data` of `/api/mesh/prices/{asset}?quotes=true` into quotes keyed by provider.
pub fn quotes_of(asset: &str, body: &serde_json::Value) -> Vec<(QuoteKey, Quote)> {
    let list = body["data"]["quotes"].as_array().map(Vec::as_slice).unwrap_or_default();
    list.iter()
        .filter_map(|quote| {
            let provider = quote["source_node_id"].as_str()?;
            let timestamp =
                DateTime::parse_from_rfc3339(quote["timestamp"].as_str()?).ok()?.with_timezone(&Utc);
            let price = quote["price"].as_str()?.to_owned();
            Some(((provider.to_owned(), asset.to_owned()), Quote { timestamp, price }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote(seconds: i64) -> Quote {
        Quote { timestamp: DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap(), price: "1".into() }
    }

    fn key() -> QuoteKey {
        ("provider-a".into(), "SOL".into())
    }

    #[test]
    fn going_back_within_a_life_is_a_violation_but_a_restart_starts_afresh() {
        let mut history = History::default();
        history.record(Duration::from_secs(1), 0, 1, vec![(key(), quote(10))]);
        history.record(Duration::from_secs(2), 0, 1, vec![(key(), quote(12))]);
        assert!(history.newest_wins_violations().is_empty());
        history.record(Duration::from_secs(3), 0, 2, vec![(key(), quote(5))]);
        assert!(history.newest_wins_violations().is_empty(), "a new life begins empty");
        history.record(Duration::from_secs(4), 0, 2, vec![(key(), quote(4))]);
        assert_eq!(history.newest_wins_violations().len(), 1);
    }

    #[test]
    fn a_node_that_lacks_the_newest_quote_before_the_fault_ended_misses_it() {
        let mut history = History::default();
        history.record(Duration::from_secs(1), 0, 1, vec![(key(), quote(10))]);
        history.record(Duration::from_secs(1), 1, 1, vec![(key(), quote(8))]);
        history.record(Duration::from_secs(9), 0, 1, vec![(key(), quote(20))]);
        let targets = history.newest_until(Duration::from_secs(5));
        assert_eq!(targets[&key()], quote(10).timestamp, "what was shown after the cut-off does not count");
        assert!(history.missing(0, &targets).is_empty());
        assert_eq!(history.missing(1, &targets).len(), 1);
        assert_eq!(history.missing(2, &targets).len(), 1, "a node showing nothing misses everything");
    }

    #[test]
    fn only_changes_are_kept() {
        let mut history = History::default();
        for second in 0..5 {
            history.record(Duration::from_secs(second), 0, 1, vec![(key(), quote(1))]);
        }
        assert_eq!(history.observations().len(), 1);
    }

    #[test]
    fn quotes_are_read_from_the_api_answer() {
        let body = serde_json::json!({"success": true, "data": {"quotes": [
            {"source_node_id": "abc", "price": "150.5", "timestamp": "2027-01-01T00:00:00Z"},
            {"source_node_id": "def", "price": "bad", "timestamp": "not a time"},
        ]}});
        let quotes = quotes_of("SOL", &body);
        assert_eq!(quotes.len(), 1);
        assert_eq!(quotes[0].0, ("abc".to_owned(), "SOL".to_owned()));
    }
}
