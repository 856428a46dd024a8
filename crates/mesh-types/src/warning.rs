//! Warnings a node raises about its data: [`MeshWarning`] with the codes `NO_PROVIDERS`,
//! `STALE_DATA`, `PRICE_DISCREPANCY` and `CLOCK_SKEW`.
//!
//! [`WarningKind`] is the machine part (it also travels inside mesh-wide
//! [`crate::Alert`]s); [`MeshWarning`] adds the severity and the human message, and renders as
//! one flat JSON object (`{"severity", "message", "code", ...details}`), as the HTTP API serves
//! it (the contract `mesh-api` serves at `/api/openapi.json`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Asset, NodeId};

/// How urgent a warning is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Needs attention.
    Warning,
    /// Data should not be relied on.
    Critical,
}

/// The code of a warning, as the HTTP API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WarningCode {
    /// No provider has been heard from within the offline threshold.
    NoProviders,
    /// The newest price is older than the staleness threshold.
    StaleData,
    /// Two providers disagree on an asset's price by more than the threshold.
    PriceDiscrepancy,
    /// A provider's clock is further from this node's than the threshold: its prices would
    /// look fresher or staler than they are, and are corrected by the estimated offset.
    ClockSkew,
}

impl WarningCode {
    /// The code as text, e.g. `"NO_PROVIDERS"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::NoProviders => "NO_PROVIDERS",
            Self::StaleData => "STALE_DATA",
            Self::PriceDiscrepancy => "PRICE_DISCREPANCY",
            Self::ClockSkew => "CLOCK_SKEW",
        }
    }
}

impl fmt::Display for WarningCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a warning is about, with its details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WarningKind {
    /// No live data sources.
    NoProviders,
    /// The newest price is `age_seconds` old.
    StaleData {
        /// Age of the newest price in seconds.
        age_seconds: u64,
    },
    /// Providers disagree on `asset` by `discrepancy_percent`.
    PriceDiscrepancy {
        /// The asset.
        asset: Asset,
        /// The relative difference in percent.
        discrepancy_percent: f64,
    },
    /// Provider `node_id`'s clock is `offset_ms` ahead of this node's (behind when negative).
    ClockSkew {
        /// The provider.
        node_id: NodeId,
        /// Its clock minus this node's, in milliseconds.
        offset_ms: i64,
    },
}

impl WarningKind {
    /// The code of this kind.
    pub const fn code(&self) -> WarningCode {
        match self {
            Self::NoProviders => WarningCode::NoProviders,
            Self::StaleData { .. } => WarningCode::StaleData,
            Self::PriceDiscrepancy { .. } => WarningCode::PriceDiscrepancy,
            Self::ClockSkew { .. } => WarningCode::ClockSkew,
        }
    }
}

/// A warning for users, as the WebSocket `MeshWarning` message carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "FlatWarning", try_from = "FlatWarning")]
pub struct MeshWarning {
    /// How urgent it is.
    pub severity: Severity,
    /// A sentence for people.
    pub message: String,
    /// What it is about.
    pub kind: WarningKind,
}

impl MeshWarning {
    /// `NO_PROVIDERS`: "No live data sources available".
    pub fn no_providers() -> Self {
        Self {
            severity: Severity::Warning,
            message: "No live data sources available".to_owned(),
            kind: WarningKind::NoProviders,
        }
    }

    /// `STALE_DATA` for a newest price `age` old, past `staleness_threshold`.
    pub fn stale_data(age: Duration, staleness_threshold: Duration) -> Self {
        Self {
            severity: Severity::Warning,
            message: format!("Price data is older than {}", describe_duration(staleness_threshold)),
            kind: WarningKind::StaleData { age_seconds: age.as_secs() },
        }
    }

    /// `PRICE_DISCREPANCY` for `asset`, whose providers differ by `discrepancy_percent`.
    pub fn price_discrepancy(asset: Asset, discrepancy_percent: f64) -> Self {
        Self {
            severity: Severity::Warning,
            message: format!("Price discrepancy detected for {asset}"),
            kind: WarningKind::PriceDiscrepancy { asset, discrepancy_percent },
        }
    }

    /// `CLOCK_SKEW`: provider `node_id`'s clock is `offset_ms` from this node's.
    pub fn clock_skew(node_id: NodeId, offset_ms: i64) -> Self {
        let direction = if offset_ms >= 0 { "ahead" } else { "behind" };
        #[allow(clippy::cast_precision_loss, reason = "a figure for people, to a tenth of a second")]
        let seconds = offset_ms.unsigned_abs() as f64 / 1000.0;
        Self {
            severity: Severity::Warning,
            message: format!(
                "Clock of provider {node_id} is {seconds:.1} s {direction}; its prices' ages are corrected"
            ),
            kind: WarningKind::ClockSkew { node_id, offset_ms },
        }
    }

    /// The warning's code.
    pub const fn code(&self) -> WarningCode {
        self.kind.code()
    }
}

/// "1 hour", "2 hours", "5 minutes", "90 seconds": the largest whole unit.
fn describe_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (count, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    let plural = if count == 1 { "" } else { "s" };
    format!("{count} {unit}{plural}")
}

/// The flat JSON shape the HTTP API serves.
#[derive(Serialize, Deserialize)]
struct FlatWarning {
    severity: Severity,
    message: String,
    code: WarningCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    age_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    asset: Option<Asset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discrepancy_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_id: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset_ms: Option<i64>,
}

impl From<MeshWarning> for FlatWarning {
    fn from(warning: MeshWarning) -> Self {
        let mut flat = Self {
            severity: warning.severity,
            message: warning.message,
            code: warning.kind.code(),
            age_seconds: None,
            asset: None,
            discrepancy_percent: None,
            node_id: None,
            offset_ms: None,
        };
        match warning.kind {
            WarningKind::NoProviders => {}
            WarningKind::StaleData { age_seconds } => flat.age_seconds = Some(age_seconds),
            WarningKind::PriceDiscrepancy { asset, discrepancy_percent } => {
                flat.asset = Some(asset);
                flat.discrepancy_percent = Some(discrepancy_percent);
            }
            WarningKind::ClockSkew { node_id, offset_ms } => {
                flat.node_id = Some(node_id);
                flat.offset_ms = Some(offset_ms);
            }
        }
        flat
    }
}

impl TryFrom<FlatWarning> for MeshWarning {
    type Error = String;

    fn try_from(flat: FlatWarning) -> Result<Self, Self::Error> {
        let kind = match flat.code {
            WarningCode::NoProviders => WarningKind::NoProviders,
            WarningCode::StaleData => WarningKind::StaleData {
                age_seconds: flat.age_seconds.ok_or("STALE_DATA warning lacks age_seconds")?,
            },
            WarningCode::PriceDiscrepancy => WarningKind::PriceDiscrepancy {
                asset: flat.asset.ok_or("PRICE_DISCREPANCY warning lacks asset")?,
                discrepancy_percent: flat
                    .discrepancy_percent
                    .ok_or("PRICE_DISCREPANCY warning lacks discrepancy_percent")?,
            },
            WarningCode::ClockSkew => WarningKind::ClockSkew {
                node_id: flat.node_id.ok_or("CLOCK_SKEW warning lacks node_id")?,
                offset_ms: flat.offset_ms.ok_or("CLOCK_SKEW warning lacks offset_ms")?,
            },
        };
        Ok(Self { severity: flat.severity, message: flat.message, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_produce_the_reference_messages() {
        let hour = Duration::from_secs(3600);
        assert_eq!(MeshWarning::no_providers().message, "No live data sources available");
        let stale = MeshWarning::stale_data(Duration::from_secs(3720), hour);
        assert_eq!(stale.message, "Price data is older than 1 hour");
        assert_eq!(stale.code(), WarningCode::StaleData);
        let sol = Asset::new("SOL").unwrap();
        assert_eq!(MeshWarning::price_discrepancy(sol, 6.5).message, "Price discrepancy detected for SOL");
        assert_eq!(describe_duration(Duration::from_secs(300)), "5 minutes");
        assert_eq!(describe_duration(Duration::from_secs(90)), "90 seconds");
        assert_eq!(describe_duration(Duration::from_secs(7200)), "2 hours");
    }

    #[test]
    fn a_warning_missing_its_details_is_refused() {
        let json = r#"{"severity":"warning","message":"x","code":"STALE_DATA"}"#;
        let err = serde_json::from_str::<MeshWarning>(json).unwrap_err().to_string();
        assert!(err.contains("lacks age_seconds"), "{err}");
        let json = r#"{"severity":"warning","message":"x","code":"NOPE"}"#;
        assert!(serde_json::from_str::<MeshWarning>(json).is_err());
    }
}
