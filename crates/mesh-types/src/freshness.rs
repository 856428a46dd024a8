//! [`DataFreshness`]: how old a node's newest price is, in the four buckets the API shows
//! users.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// How fresh data is. Ordered from freshest to stalest, so `a <= b` means `a` is at least as
/// fresh as `b`.
///
/// JSON: `"JustNow"`, `{"MinutesAgo": n}`, `{"HoursAgo": n}`, `"Stale"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DataFreshness {
    /// Less than a minute old.
    JustNow,
    /// `n` whole minutes old, 1–59.
    MinutesAgo(u64),
    /// `n` whole hours old, at least 1, and not yet past the staleness threshold.
    HoursAgo(u64),
    /// Older than the staleness threshold (`MESH_STALENESS_THRESHOLD_SECS`, default 1 hour).
    Stale,
}

impl DataFreshness {
    /// Data younger than this is [`DataFreshness::JustNow`].
    pub const JUST_NOW: Duration = Duration::from_secs(60);
    /// Data at least this old is counted in hours.
    pub const ONE_HOUR: Duration = Duration::from_secs(3600);
    /// The default staleness threshold: one hour.
    pub const DEFAULT_STALENESS_THRESHOLD: Duration = Duration::from_secs(3600);

    /// The bucket for data `age` old, with data older than `staleness_threshold` being stale.
    pub fn from_age(age: Duration, staleness_threshold: Duration) -> Self {
        if age > staleness_threshold {
            Self::Stale
        } else if age < Self::JUST_NOW {
            Self::JustNow
        } else if age < Self::ONE_HOUR {
            Self::MinutesAgo(age.as_secs() / 60)
        } else {
            Self::HoursAgo(age.as_secs() / 3600)
        }
    }

    /// The bucket for data published at `timestamp`, judged at `now`. A timestamp ahead of
    /// `now` (clock skew) counts as age zero.
    pub fn of(timestamp: Timestamp, now: Timestamp, staleness_threshold: Duration) -> Self {
        let age = now.signed_duration_since(timestamp).to_std().unwrap_or(Duration::ZERO);
        Self::from_age(age, staleness_threshold)
    }

    /// Whether the data is past the staleness threshold.
    pub const fn is_stale(&self) -> bool {
        matches!(self, Self::Stale)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HOUR: Duration = DataFreshness::DEFAULT_STALENESS_THRESHOLD;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn ages_fall_into_just_now_minutes_hours_or_stale() {
        assert_eq!(DataFreshness::from_age(secs(0), HOUR), DataFreshness::JustNow);
        assert_eq!(DataFreshness::from_age(secs(59), HOUR), DataFreshness::JustNow);
        assert_eq!(DataFreshness::from_age(secs(60), HOUR), DataFreshness::MinutesAgo(1));
        assert_eq!(DataFreshness::from_age(secs(3599), HOUR), DataFreshness::MinutesAgo(59));
        assert_eq!(DataFreshness::from_age(secs(3600), HOUR), DataFreshness::HoursAgo(1));
        assert_eq!(DataFreshness::from_age(secs(3601), HOUR), DataFreshness::Stale);
        assert_eq!(DataFreshness::from_age(secs(7300), secs(86_400)), DataFreshness::HoursAgo(2));
        assert_eq!(DataFreshness::from_age(secs(301), secs(300)), DataFreshness::Stale);
    }

    #[test]
    fn future_timestamps_count_as_just_now() {
        let now = chrono::Utc::now();
        let ahead = now + chrono::Duration::seconds(5);
        assert_eq!(DataFreshness::of(ahead, now, HOUR), DataFreshness::JustNow);
    }

    #[test]
    fn json_is_a_bare_name_or_a_name_with_its_count() {
        let json = |f: DataFreshness| serde_json::to_string(&f).unwrap();
        assert_eq!(json(DataFreshness::JustNow), r#""JustNow""#);
        assert_eq!(json(DataFreshness::MinutesAgo(5)), r#"{"MinutesAgo":5}"#);
        assert_eq!(json(DataFreshness::HoursAgo(2)), r#"{"HoursAgo":2}"#);
        assert_eq!(json(DataFreshness::Stale), r#""Stale""#);
        let parsed: DataFreshness = serde_json::from_str(r#"{"MinutesAgo":5}"#).unwrap();
        assert_eq!(parsed, DataFreshness::MinutesAgo(5));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn freshness_is_monotonic_in_age(a in 0u64..400_000, b in 0u64..400_000, threshold in 0u64..400_000) {
            let (young, old) = (a.min(b), a.max(b));
            let threshold = secs(threshold);
            prop_assert!(DataFreshness::from_age(secs(young), threshold) <= DataFreshness::from_age(secs(old), threshold));
        }

        #[test]
        fn stale_exactly_when_older_than_the_threshold(age in 0u64..400_000, threshold in 0u64..400_000) {
            let freshness = DataFreshness::from_age(secs(age), secs(threshold));
            prop_assert_eq!(freshness.is_stale(), age > threshold);
        }
    }
}
