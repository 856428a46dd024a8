//! Text for people: price tables, network and provider status, one line per feed message, and
//! ages such as `12s ago`. Pure functions of the data and the current time, so they are tested
//! without a node.

use std::fmt::Write as _;

use mesh_types::rust_decimal::Decimal;
use mesh_types::{
    CachedPriceData, DataFreshness, FeedMessage, MeshWarning, NetworkStatus, NetworkStatusSummary, NodeId,
    ProviderStatus, ServedPrice, Severity, Timestamp, WarningKind,
};

/// The first eight hex digits of a node id, enough to tell nodes apart in a table.
pub(crate) fn short_id(id: &NodeId) -> String {
    id.to_string().chars().take(8).collect()
}

/// How long ago `then` was, seen at `now`, in the largest whole unit: `12s ago`, `3m ago`,
/// `5h ago`, `2d ago`. A time ahead of `now` (clock skew) reads `in 4s`.
pub(crate) fn age(then: Timestamp, now: Timestamp) -> String {
    let secs = now.signed_duration_since(then).num_seconds();
    let span = |secs: i64| match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86_400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    };
    if secs >= 0 { format!("{} ago", span(secs)) } else { format!("in {}", span(secs.saturating_neg())) }
}

/// `2024-01-01 12:00:00 UTC (12s ago)`.
pub(crate) fn time(then: Timestamp, now: Timestamp) -> String {
    format!("{} ({})", then.format("%Y-%m-%d %H:%M:%S UTC"), age(then, now))
}

/// `+5.2%`, `-2.1%`, or `n/a` when the source did not report a change.
pub(crate) fn change(change_24h: Option<Decimal>) -> String {
    match change_24h {
        Some(change) if change.is_sign_negative() => format!("{change}%"),
        Some(change) => format!("+{change}%"),
        None => "n/a".to_owned(),
    }
}

/// `just now`, `5 minutes ago`, `2 hours ago`, `stale`.
pub(crate) fn freshness(freshness: DataFreshness) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" });
    match freshness {
        DataFreshness::JustNow => "just now".to_owned(),
        DataFreshness::MinutesAgo(n) => plural(n, "minute"),
        DataFreshness::HoursAgo(n) => plural(n, "hour"),
        DataFreshness::Stale => "stale".to_owned(),
    }
}

/// Columns padded to their widest cell; `right` marks the columns aligned right (numbers).
fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|title| title.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|title| (*title).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            let width = widths[column];
            if column > 0 {
                line.push_str("  ");
            }
            if right.get(column).copied().unwrap_or(false) {
                let _ = write!(line, "{cell:>width$}");
            } else {
                let _ = write!(line, "{cell:<width$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.pop();
    out
}

/// One row per price: asset, price, 24h change, age, source node.
pub(crate) fn price_table<'a>(
    prices: impl IntoIterator<Item = &'a CachedPriceData>,
    now: Timestamp,
) -> String {
    let rows: Vec<Vec<String>> = prices
        .into_iter()
        .map(|price| {
            vec![
                price.asset.to_string(),
                price.price.to_string(),
                change(price.change_24h),
                age(price.timestamp, now),
                short_id(&price.source_node_id),
            ]
        })
        .collect();
    table(&["ASSET", "PRICE", "24H", "AGE", "SOURCE"], &[false, true, true, false, false], &rows)
}

/// The network summary followed by the provider table.
pub(crate) fn network_status(status: &NetworkStatus, now: Timestamp) -> String {
    let last_update = status.last_update_time.map_or_else(|| "never".to_owned(), |then| time(then, now));
    let mut out = format!(
        "connected peers:  {}\nnetwork size:     {} nodes\nlast update:      {last_update}\ndata freshness:   {}\n\n",
        status.connected_peers,
        status.total_network_size,
        freshness(status.data_freshness),
    );
    if status.active_providers.is_empty() {
        out.push_str("providers: none (no live data sources)");
        return out;
    }
    let _ = writeln!(out, "providers ({}):", status.active_providers.len());
    let rows: Vec<Vec<String>> = status
        .active_providers
        .iter()
        .map(|provider| {
            vec![provider.node_id.to_string(), provider.hop_count.to_string(), time(provider.last_seen, now)]
        })
        .collect();
    out.push_str(&table(&["NODE", "HOPS", "LAST SEEN"], &[false, true, false], &rows));
    out
}

/// Provider mode of the node: on or off, and its fetches.
pub(crate) fn provider_status(status: &ProviderStatus, now: Timestamp) -> String {
    let last_fetch = status.last_fetch_time.map_or_else(|| "never".to_owned(), |then| time(then, now));
    format!(
        "provider mode:  {}\nnode:           {}\nlast fetch:     {last_fetch}\nfetches:        {}",
        if status.enabled { "enabled" } else { "disabled" },
        status.node_id,
        status.fetch_count,
    )
}

/// The lines `meshctl watch` prints for one feed message.
pub(crate) fn feed_lines(message: &FeedMessage) -> Vec<String> {
    match message {
        FeedMessage::PriceMeshInitial(prices) => {
            let plural = if prices.len() == 1 { "" } else { "s" };
            vec![format!("initial: {} asset{plural}", prices.len())]
        }
        FeedMessage::PriceMeshUpdate(prices) => prices.values().map(served_line).collect(),
        FeedMessage::NetworkStatusUpdate(summary) => vec![status_line(summary)],
        FeedMessage::MeshWarning(warning) => vec![warning_line(warning)],
    }
}

/// `SOL 123.45 (+5.2%) from 550e8400…`, and for an aggregate of several providers
/// `SOL 123.45 from 550e8400… [median of 3, spread 0.12%]`.
pub(crate) fn served_line(served: &ServedPrice) -> String {
    let line = price_line(&served.price);
    if served.providers <= 1 {
        return line;
    }
    let percent =
        served.spread.checked_mul(Decimal::ONE_HUNDRED).unwrap_or(Decimal::MAX).round_dp(2).normalize();
    format!("{line} [median of {}, spread {percent}%]", served.providers)
}

/// `SOL 123.45 (+5.2%) from 550e8400…`.
fn price_line(price: &CachedPriceData) -> String {
    let change = price.change_24h.map(|c| format!(" ({})", change(Some(c)))).unwrap_or_default();
    format!("{} {}{change} from {}…", price.asset, price.price, short_id(&price.source_node_id))
}

/// `status: 2 providers, 5 peers, 10 nodes, data just now`.
fn status_line(summary: &NetworkStatusSummary) -> String {
    let plural = |n: u32, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    format!(
        "status: {}, {}, {}, data {}",
        plural(summary.active_providers, "provider"),
        plural(summary.connected_peers, "peer"),
        plural(summary.total_network_size, "node"),
        freshness(summary.data_freshness),
    )
}

/// `warning STALE_DATA: Price data is older than 1 hour (newest price 3720s old)`.
fn warning_line(warning: &MeshWarning) -> String {
    let severity = match warning.severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    };
    let detail = match &warning.kind {
        WarningKind::NoProviders => String::new(),
        WarningKind::StaleData { age_seconds } => format!(" (newest price {age_seconds}s old)"),
        WarningKind::PriceDiscrepancy { asset, discrepancy_percent } => {
            format!(" ({asset} differs by {discrepancy_percent}%)")
        }
        WarningKind::ClockSkew { node_id, offset_ms } => {
            format!(" ({} off by {offset_ms} ms)", short_id(node_id))
        }
    };
    format!("{severity} {}: {}{detail}", warning.code(), warning.message)
}

#[cfg(test)]
mod tests {
    use mesh_types::chrono::{Duration, TimeZone, Utc};

    use super::*;

    fn noon() -> Timestamp {
        Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn ages_use_the_largest_whole_unit() {
        let now = noon();
        let ago = |secs: i64| age(now - Duration::seconds(secs), now);
        assert_eq!(ago(0), "0s ago");
        assert_eq!(ago(12), "12s ago");
        assert_eq!(ago(59), "59s ago");
        assert_eq!(ago(60), "1m ago");
        assert_eq!(ago(3599), "59m ago");
        assert_eq!(ago(3600), "1h ago");
        assert_eq!(ago(86_399), "23h ago");
        assert_eq!(ago(2 * 86_400 + 5), "2d ago");
        assert_eq!(ago(-4), "in 4s");
        assert_eq!(time(now - Duration::seconds(12), now), "2024-01-01 11:59:48 UTC (12s ago)");
    }

    #[test]
    fn changes_carry_a_sign_and_freshness_reads_as_words() {
        assert_eq!(change(Some("5.2".parse().unwrap())), "+5.2%");
        assert_eq!(change(Some("-2.1".parse().unwrap())), "-2.1%");
        assert_eq!(change(Some(Decimal::ZERO)), "+0%");
        assert_eq!(change(None), "n/a");
        assert_eq!(freshness(DataFreshness::JustNow), "just now");
        assert_eq!(freshness(DataFreshness::MinutesAgo(1)), "1 minute ago");
        assert_eq!(freshness(DataFreshness::HoursAgo(2)), "2 hours ago");
        assert_eq!(freshness(DataFreshness::Stale), "stale");
    }

    #[test]
    fn tables_pad_columns_and_align_numbers_right() {
        let rows =
            vec![vec!["SOL".to_owned(), "123.45".to_owned()], vec!["ETH".to_owned(), "2345.67".to_owned()]];
        assert_eq!(
            table(&["ASSET", "PRICE"], &[false, true], &rows),
            "ASSET    PRICE\nSOL     123.45\nETH    2345.67"
        );
    }

    #[test]
    fn feed_messages_read_as_lines() {
        let json = serde_json::json!({"type": "PriceMeshUpdate", "data": {"SOL": {
            "asset": "SOL", "price": "124.50", "timestamp": "2024-01-01T12:00:30Z",
            "source_node_id": "550e8400-e29b-41d4-a716-446655440000", "blockchain": "Solana", "change_24h": "6.1"
        }}});
        let update: FeedMessage = serde_json::from_value(json).unwrap();
        assert_eq!(feed_lines(&update), ["SOL 124.50 (+6.1%) from 550e8400…"]);

        let json = serde_json::json!({"type": "NetworkStatusUpdate", "data": {"active_providers": 1,
            "connected_peers": 5, "total_network_size": 10, "last_update_time": null,
            "data_freshness": {"MinutesAgo": 3}}});
        let status: FeedMessage = serde_json::from_value(json).unwrap();
        assert_eq!(feed_lines(&status), ["status: 1 provider, 5 peers, 10 nodes, data 3 minutes ago"]);

        let json = serde_json::json!({"type": "MeshWarning", "data": {"severity": "warning",
            "message": "Price discrepancy detected for SOL", "code": "PRICE_DISCREPANCY",
            "asset": "SOL", "discrepancy_percent": 6.5}});
        let warning: FeedMessage = serde_json::from_value(json).unwrap();
        assert_eq!(
            feed_lines(&warning),
            ["warning PRICE_DISCREPANCY: Price discrepancy detected for SOL (SOL differs by 6.5%)"]
        );
    }
}
