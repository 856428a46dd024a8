//! The gauges a dashboard and alert rules read from a node's status: the served price and its
//! age per asset (`mesh_price_usd`, `mesh_price_age_seconds`) and the warnings that hold
//! (`mesh_warnings_active{code}`).
//!
//! An asset that stops being served keeps its last price and an age that goes on growing, so
//! a chart shows the price going stale instead of a line that silently ends. The assets shown
//! are bounded: a mesh in open mode could otherwise grow the exporter's series without end.

use std::collections::BTreeMap;

use mesh_types::rust_decimal::prelude::ToPrimitive;
use mesh_types::{Asset, ServedPriceMap, Timestamp, WarningCode};

/// The most assets given their own price series.
pub const MAX_PRICE_SERIES: usize = 256;

/// The price gauges of the assets shown so far, with their newest price's time.
#[derive(Debug, Default)]
pub(crate) struct PriceGauges {
    shown: BTreeMap<Asset, Timestamp>,
}

impl PriceGauges {
    /// Describes the gauges to the installed recorder.
    pub(crate) fn describe() {
        metrics::describe_gauge!("mesh_price_usd", "The price this node serves, by asset (USD)");
        metrics::describe_gauge!(
            "mesh_price_age_seconds",
            metrics::Unit::Seconds,
            "Age of the newest price of each asset; it keeps growing once the asset is no longer served"
        );
        metrics::describe_gauge!(
            "mesh_warnings_active",
            "Warnings that hold now, by code: 1 for NO_PROVIDERS or STALE_DATA, one per asset or provider otherwise"
        );
    }

    /// Sets the gauges from the prices served at `now`.
    pub(crate) fn publish(&mut self, served: &ServedPriceMap, now: Timestamp) {
        for (asset, price) in served {
            let known = self.shown.contains_key(asset);
            if !known && self.shown.len() >= MAX_PRICE_SERIES {
                continue;
            }
            self.shown.insert(*asset, price.price.timestamp);
            if let Some(usd) = price.price.price.to_f64() {
                metrics::gauge!("mesh_price_usd", "asset" => asset.to_string()).set(usd);
            }
        }
        for (asset, timestamp) in &self.shown {
            let age = now.signed_duration_since(*timestamp).to_std().unwrap_or_default();
            metrics::gauge!("mesh_price_age_seconds", "asset" => asset.to_string()).set(age.as_secs_f64());
        }
    }

    /// Sets `mesh_warnings_active` for every code.
    pub(crate) fn publish_warnings(active: [(WarningCode, usize); 4]) {
        for (code, count) in active {
            metrics::gauge!("mesh_warnings_active", "code" => code.as_str()).set(count as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{CachedPriceData, NodeId, PublicKey, ServedPrice};
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

    use super::*;

    fn served(symbols: impl IntoIterator<Item = String>, at: Timestamp) -> ServedPriceMap {
        symbols
            .into_iter()
            .map(|symbol| {
                let price = CachedPriceData {
                    asset: Asset::new(&symbol).unwrap(),
                    price: Decimal::new(15, 1),
                    timestamp: at,
                    source_node_id: NodeId::from_public_key(&PublicKey::from_bytes([1; 32])),
                    blockchain: "Solana".into(),
                    change_24h: None,
                };
                (price.asset, ServedPrice::single(price))
            })
            .collect()
    }

    /// The `(label value, value)` of every series of `name` the recorder renders.
    fn series(recorder: &PrometheusRecorder, name: &str) -> Vec<(String, f64)> {
        let prefix = format!("{name}{{");
        recorder
            .handle()
            .render()
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (labels, value) = rest.split_once("} ")?;
                let label = labels.split_once('"')?.1.trim_end_matches('"').to_owned();
                Some((label, value.parse().ok()?))
            })
            .collect()
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_timestamp(1_700_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn an_asset_no_longer_served_keeps_ageing() {
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            let mut price_gauges = PriceGauges::default();
            price_gauges.publish(&served(["SOL".to_owned()], at(0)), at(0));
            assert_eq!(series(&recorder, "mesh_price_usd"), [("SOL".to_owned(), 1.5)]);
            price_gauges.publish(&ServedPriceMap::new(), at(90));
            assert_eq!(series(&recorder, "mesh_price_age_seconds"), [("SOL".to_owned(), 90.0)]);
        });
    }

    #[test]
    fn the_series_are_bounded_however_many_assets_a_mesh_carries() {
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            let mut price_gauges = PriceGauges::default();
            let symbols = (0..MAX_PRICE_SERIES + 50).map(|i| format!("A{i}"));
            price_gauges.publish(&served(symbols, at(0)), at(0));
            assert_eq!(series(&recorder, "mesh_price_usd").len(), MAX_PRICE_SERIES);
            assert_eq!(price_gauges.shown.len(), MAX_PRICE_SERIES);
        });
    }

    #[test]
    fn every_warning_code_is_published_even_when_clear() {
        let recorder = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&recorder, || {
            PriceGauges::publish_warnings([
                (WarningCode::NoProviders, 0),
                (WarningCode::StaleData, 1),
                (WarningCode::PriceDiscrepancy, 2),
                (WarningCode::ClockSkew, 0),
            ]);
            let codes = series(&recorder, "mesh_warnings_active");
            assert_eq!(codes.len(), 4, "{codes:?}");
            assert!(codes.contains(&("PRICE_DISCREPANCY".to_owned(), 2.0)), "{codes:?}");
        });
    }
}
