//! The provider loop on tokio's paused clock: publishing signed updates, enable/disable,
//! coordination, failures, backpressure and shutdown.

use std::sync::atomic::AtomicUsize;

use async_trait::async_trait;
use mesh_coordination::MemoryCoordinator;
use mesh_types::{PriceData, SignedMessage, ValidationPolicy};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::{sleep, timeout};

use super::*;
use crate::{MockPriceSource, SimulatedSource};

const INTERVAL: u64 = 10;
const WINDOW: u64 = 5;
const TTL: u8 = 7;

fn config(interval: u64, window: u64) -> ProviderConfig {
    ProviderConfig {
        enabled: true,
        fetch_interval_secs: interval,
        coordination_window_secs: window,
        message_ttl: TTL,
        ..ProviderConfig::default()
    }
}

fn assets() -> Vec<Asset> {
    ["SOL", "BTC", "ETH"].into_iter().map(|symbol| Asset::new(symbol).unwrap()).collect()
}

fn identity(seed: u8) -> Arc<NodeIdentity> {
    Arc::new(NodeIdentity::from_secret_bytes(&[seed; 32]))
}

fn provider_with(
    coordinator: Arc<dyn FetchCoordinator>,
    seed: u8,
    capacity: usize,
) -> (ProviderNode, mpsc::Receiver<PriceUpdate>) {
    let (updates, received) = mpsc::channel(capacity);
    let node =
        ProviderNode::new(config(INTERVAL, WINDOW), identity(seed), coordinator, assets(), updates).unwrap();
    (node, received)
}

fn provider() -> (ProviderNode, mpsc::Receiver<PriceUpdate>) {
    provider_with(Arc::new(MemoryCoordinator::new()), 1, 16)
}

fn price(symbol: &str) -> PriceData {
    PriceData {
        asset: Asset::new(symbol).unwrap(),
        price: mesh_types::rust_decimal::Decimal::new(15_025, 2),
        blockchain: "Solana".into(),
        change_24h: None,
    }
}

/// A mock source whose `validate` succeeds and whose `name` is `"mock"`.
fn mock_source() -> MockPriceSource {
    let mut source = MockPriceSource::new();
    source.expect_name().return_const("mock");
    source.expect_validate().returning(|| Ok(()));
    source
}

/// The next update, waiting at most `secs` of (paused, auto-advanced) time.
async fn next_update(received: &mut mpsc::Receiver<PriceUpdate>, secs: u64) -> Option<PriceUpdate> {
    timeout(Duration::from_secs(secs), received.recv()).await.ok().flatten()
}

/// Refuses every fetch, counting the requests.
#[derive(Debug, Default)]
struct DenyingCoordinator {
    asked: AtomicUsize,
}

#[async_trait]
impl FetchCoordinator for DenyingCoordinator {
    async fn try_acquire(&self, _node: NodeId, _window: Duration) -> mesh_coordination::Result<bool> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        Ok(false)
    }

    async fn last_fetch_time(&self) -> mesh_coordination::Result<Option<Timestamp>> {
        Ok(None)
    }

    async fn cleanup_stale_records(&self, _max_age: Duration) -> mesh_coordination::Result<usize> {
        Ok(0)
    }
}

/// Simulated prices, logging when each fetch happened (shared between providers).
#[derive(Debug)]
struct RecordingSource {
    inner: SimulatedSource,
    log: Arc<Mutex<Vec<Instant>>>,
}

#[async_trait]
impl PriceSource for RecordingSource {
    async fn fetch(&self, assets: &[Asset]) -> crate::Result<Vec<PriceData>> {
        self.log.lock().unwrap().push(Instant::now());
        self.inner.fetch(assets).await
    }

    async fn validate(&self) -> crate::Result<()> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "recording"
    }
}

#[tokio::test(start_paused = true)]
async fn publishes_signed_valid_updates_with_the_configured_ttl_every_interval() {
    let (provider, mut received) = provider();
    let task = provider.start();
    provider.enable(Arc::new(SimulatedSource::new(11))).await.unwrap();

    let first = next_update(&mut received, WINDOW + 1)
        .await
        .expect("the first fetch comes within the coordination window");
    let after_first = Instant::now();
    let second = next_update(&mut received, 20).await.expect("a second fetch one interval later");
    let gap = after_first.elapsed();

    assert!((9.0..=11.0).contains(&gap.as_secs_f64()), "interval with ±10 % jitter, was {gap:?}");
    for update in [&first, &second] {
        assert_eq!(update.verify_signature(&mesh_types::NetworkId::mainnet()), Ok(()));
        assert_eq!(update.validate_and_verify(&ValidationPolicy::default(), Utc::now()), Ok(()));
        assert_eq!((update.ttl, update.hop_count), (TTL, 0));
        assert_eq!(update.source_node_id, provider.node_id());
        assert_eq!(update.prices.keys().copied().collect::<Vec<_>>(), {
            let mut sorted = assets();
            sorted.sort();
            sorted
        });
    }
    assert_ne!(first.message_id, second.message_id);
    assert_ne!(first.prices, second.prices, "the simulated prices moved");

    let status = provider.status();
    assert!(status.enabled);
    assert_eq!(status.node_id, provider.node_id());
    assert_eq!(status.fetch_count, 2);
    assert!(status.last_fetch_time.is_some());
    let counters = provider.counters();
    assert_eq!((counters.attempts, counters.successes, counters.failures, counters.published), (2, 2, 0, 2));
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_source_that_fails_validation_is_not_enabled() {
    let (provider, mut received) = provider();
    let task = provider.start();
    let mut refused = MockPriceSource::new();
    refused.expect_name().return_const("mock");
    refused.expect_validate().times(1).returning(|| Err(SourceError::InvalidApiKey));
    refused.expect_fetch().never();

    let error = provider.enable(Arc::new(refused)).await.unwrap_err();

    assert_eq!(error, SourceError::InvalidApiKey);
    assert!(!provider.is_enabled());
    assert!(!provider.state().enabled);
    sleep(Duration::from_secs(60)).await;
    assert_eq!(received.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(provider.counters(), ProviderCounters::default());
    assert_eq!(provider.status().fetch_count, 0);

    // A failed enable leaves a working provider working.
    provider.enable(Arc::new(SimulatedSource::new(1))).await.unwrap();
    let mut refused = MockPriceSource::new();
    refused.expect_name().return_const("mock");
    refused.expect_validate().returning(|| Err(SourceError::Unavailable { detail: "down".into() }));
    assert!(provider.enable(Arc::new(refused)).await.is_err());
    assert!(provider.is_enabled());
    assert!(next_update(&mut received, 11).await.is_some());
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn disable_stops_publishing_and_enable_resumes_within_the_window() {
    let (provider, mut received) = provider();
    let task = provider.start();
    provider.enable(Arc::new(SimulatedSource::new(2))).await.unwrap();
    assert!(next_update(&mut received, WINDOW + 1).await.is_some());

    provider.disable().await;
    let attempts = provider.counters().attempts;

    assert!(!provider.status().enabled);
    assert!(next_update(&mut received, 120).await.is_none(), "nothing published while disabled");
    assert_eq!(provider.counters().attempts, attempts, "no fetch while disabled");

    // The loop is waiting for its next tick; enabling wakes it instead of waiting for the
    // interval: it fetches within the coordination window.
    let enabled_at = Instant::now();
    provider.enable(Arc::new(SimulatedSource::new(2))).await.unwrap();
    assert!(next_update(&mut received, 20).await.is_some());
    assert!(
        enabled_at.elapsed() < Duration::from_secs(WINDOW),
        "fetched {:?} after enabling",
        enabled_at.elapsed()
    );
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_coordinator_denial_means_no_fetch() {
    let coordinator = Arc::new(DenyingCoordinator::default());
    let (provider, mut received) =
        provider_with(Arc::clone(&coordinator) as Arc<dyn FetchCoordinator>, 1, 16);
    let mut source = mock_source();
    source.expect_fetch().never();
    let task = provider.start();
    provider.enable(Arc::new(source)).await.unwrap();

    sleep(Duration::from_secs(60)).await;

    let asked = coordinator.asked.load(Ordering::Relaxed);
    assert!((5..=8).contains(&asked), "asked about every {INTERVAL} s: {asked} times");
    let counters = provider.counters();
    assert_eq!(counters.attempts, 0);
    assert_eq!(counters.coordination_skips, asked as u64);
    assert_eq!(received.try_recv().unwrap_err(), TryRecvError::Empty);
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn providers_sharing_a_coordinator_fetch_at_most_once_per_window_in_total() {
    let coordinator: Arc<dyn FetchCoordinator> = Arc::new(MemoryCoordinator::new());
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut providers = Vec::new();
    for seed in 1..=3 {
        let (updates, received) = mpsc::channel(1024);
        // A window just under the interval: the jitter lets providers take turns.
        let config = config(6, 5);
        let provider =
            ProviderNode::new(config, identity(seed), Arc::clone(&coordinator), assets(), updates).unwrap();
        let task = provider.start();
        let source = RecordingSource { inner: SimulatedSource::new(u64::from(seed)), log: Arc::clone(&log) };
        provider.enable(Arc::new(source)).await.unwrap();
        providers.push((provider, task, received));
    }

    sleep(Duration::from_secs(600)).await;

    let mut fetches = log.lock().unwrap().clone();
    fetches.sort();
    assert!(fetches.len() >= 80, "fetches continue: {}", fetches.len());
    for pair in fetches.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_secs(5), "two fetches {gap:?} apart");
    }
    let total_attempts: u64 = providers.iter().map(|(provider, ..)| provider.counters().attempts).sum();
    assert_eq!(total_attempts, fetches.len() as u64);
    let skips: u64 = providers.iter().map(|(provider, ..)| provider.counters().coordination_skips).sum();
    assert!(skips > 0, "the others were told to skip");
    let mut published = 0;
    for (_, task, mut received) in providers {
        while let Ok(update) = received.try_recv() {
            assert_eq!(update.verify_signature(&mesh_types::NetworkId::mainnet()), Ok(()));
            published += 1;
        }
        task.shutdown().await;
    }
    assert_eq!(published, fetches.len(), "every fetch was published, by whichever provider made it");
}

#[tokio::test(start_paused = true)]
async fn fetch_failures_are_counted_and_the_loop_goes_on() {
    let (provider, mut received) = provider();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut source = mock_source();
    let counted = Arc::clone(&calls);
    source.expect_fetch().returning(move |_| match counted.fetch_add(1, Ordering::Relaxed) {
        0 => Err(SourceError::Unavailable { detail: "HTTP 503".into() }),
        1 => Err(SourceError::Malformed { detail: "success: false".into() }),
        _ => Ok(vec![price("SOL")]),
    });
    let task = provider.start();
    provider.enable(Arc::new(source)).await.unwrap();

    let update = next_update(&mut received, 40).await.expect("the third fetch succeeds");

    assert_eq!(update.prices.len(), 1);
    let counters = provider.counters();
    assert_eq!((counters.attempts, counters.failures, counters.successes, counters.published), (3, 2, 1, 1));
    assert_eq!(provider.status().fetch_count, 1, "only successful fetches count");
    assert!(provider.is_enabled(), "transient failures keep provider mode on");
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_rate_limit_is_counted_and_its_retry_after_honoured() {
    let (provider, mut received) = provider();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut source = mock_source();
    let log = Arc::clone(&calls);
    source.expect_fetch().returning(move |_| {
        let mut log = log.lock().unwrap();
        log.push(Instant::now());
        if log.len() == 1 {
            Err(SourceError::RateLimited { retry_after: Some(Duration::from_secs(45)) })
        } else {
            Ok(vec![price("SOL")])
        }
    });
    let task = provider.start();
    provider.enable(Arc::new(source)).await.unwrap();

    assert!(next_update(&mut received, 120).await.is_some());

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 2);
    let waited = calls[1] - calls[0];
    assert!(waited >= Duration::from_secs(45), "no fetch before Retry-After: {waited:?}");
    assert!(waited <= Duration::from_secs(45 + 11), "the next tick after it: {waited:?}");
    let counters = provider.counters();
    assert_eq!((counters.failures, counters.rate_limited, counters.successes), (1, 1, 1));
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_source_asking_to_wait_for_ever_is_capped_instead_of_overflowing_the_clock() {
    let (provider, mut received) = provider();
    let calls = Arc::new(Mutex::new(0));
    let mut source = mock_source();
    let count = Arc::clone(&calls);
    source.expect_fetch().returning(move |_| {
        let mut count = count.lock().unwrap();
        *count += 1;
        if *count == 1 {
            Err(SourceError::RateLimited { retry_after: Some(Duration::MAX) })
        } else {
            Ok(vec![price("SOL")])
        }
    });
    let task = provider.start();
    provider.enable(Arc::new(source)).await.unwrap();
    let secs = crate::MAX_RETRY_AFTER.as_secs() + 120;
    assert!(next_update(&mut received, secs).await.is_some(), "fetching resumes after the cap");
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_key_refused_during_a_fetch_turns_provider_mode_off() {
    let (provider, mut received) = provider();
    let mut source = mock_source();
    source.expect_fetch().times(1).returning(|_| Err(SourceError::InvalidApiKey));
    let task = provider.start();
    provider.enable(Arc::new(source)).await.unwrap();

    assert!(next_update(&mut received, 60).await.is_none());

    assert!(!provider.is_enabled());
    assert_eq!((provider.counters().attempts, provider.counters().failures), (1, 1));
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_update_is_dropped_not_queued_when_the_channel_is_full() {
    let (provider, mut received) = provider_with(Arc::new(MemoryCoordinator::new()), 1, 1);
    let task = provider.start();
    provider.enable(Arc::new(SimulatedSource::new(5))).await.unwrap();

    sleep(Duration::from_secs(35)).await;

    let counters = provider.counters();
    assert!(counters.attempts >= 3, "the schedule goes on: {counters:?}");
    assert_eq!(counters.published, 1, "one fits in the channel");
    let first = received.try_recv().unwrap();
    assert_eq!(first.verify_signature(&mesh_types::NetworkId::mainnet()), Ok(()));
    assert_eq!(received.try_recv().unwrap_err(), TryRecvError::Empty);
    assert!(!task.is_finished());
    task.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_loop_ends_on_shutdown_drop_or_a_closed_channel_and_runs_once() {
    let (provider, mut received) = provider();
    let first = provider.start();
    let second = provider.start();
    sleep(Duration::from_millis(10)).await;
    assert!(second.is_finished(), "a second loop does not start");
    assert!(!first.is_finished());

    drop(first);
    sleep(Duration::from_millis(10)).await;
    provider.enable(Arc::new(SimulatedSource::new(3))).await.unwrap();
    assert!(next_update(&mut received, 60).await.is_none(), "a dropped handle stops the loop");

    let third = provider.start();
    assert!(
        next_update(&mut received, WINDOW + 1).await.is_some(),
        "a new loop may start after the old one ended"
    );
    third.shutdown().await;
    assert!(next_update(&mut received, 60).await.is_none());

    let closed = provider.start();
    drop(received);
    sleep(Duration::from_secs(30)).await;
    assert!(closed.is_finished(), "nobody receives updates, so the loop ends");
    second.shutdown().await;
}

#[test]
fn an_inconsistent_config_is_refused() {
    let (updates, _received) = mpsc::channel(1);
    let result =
        ProviderNode::new(config(5, 10), identity(1), Arc::new(MemoryCoordinator::new()), assets(), updates);
    assert!(matches!(result, Err(ProviderConfigError::WindowExceedsInterval { .. })));
}

#[test]
fn debug_names_the_node_and_state_without_secrets() {
    let (provider, _received) = provider();
    let shown = format!("{provider:?}");
    assert!(shown.contains(&provider.node_id().to_string()), "{shown}");
    assert!(shown.contains("enabled: false"), "{shown}");
}

#[test]
fn an_interval_near_u64_max_seconds_jitters_without_panicking() {
    let interval = Duration::from_secs(u64::MAX);
    assert!(jittered(interval) >= interval.mul_f64(0.85));
    assert!(start_delay(interval) <= interval);
}
