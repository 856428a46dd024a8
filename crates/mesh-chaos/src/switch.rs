//! The userspace switch: the bridge of the test network, for kernels without `netem`. It runs
//! in the bridge namespace on one `AF_PACKET` socket per port (`pnet_datalink`), forwards each
//! Ethernet frame to the port of its destination MAC (broadcast and multicast to every other
//! port), and on the way delays it by the link's latency plus a uniform jitter, drops it with
//! the link's loss probability, and drops everything between hosts on different sides of a
//! partition. Frames of one link keep their order (a later frame never overtakes an earlier
//! one), as on a real path, so TCP sees delay and loss but no reordering storms.
//!
//! Every port's MAC is fixed by the harness, so a port accepts only frames whose source is its
//! own host: frames the switch itself sent out of a port, which the socket sees again, are
//! recognised by their foreign source and ignored.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pnet_datalink::{Channel, DataLinkReceiver, DataLinkSender};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::ChaosError;
use crate::netns::Namespace;

/// What a link does to each frame: a one-way delay of `latency` plus up to `jitter`, and a
/// chance of `loss` (0 to 1) that the frame is dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkShape {
    /// The one-way delay every frame gets.
    pub latency: Duration,
    /// The most a frame's delay exceeds `latency` (uniform).
    pub jitter: Duration,
    /// The probability of losing a frame, from 0 to 1.
    pub loss: f64,
}

impl LinkShape {
    /// A WAN-like path: 20 ms ± 5 ms each way, one frame in a hundred lost.
    pub const WAN: Self =
        Self { latency: Duration::from_millis(20), jitter: Duration::from_millis(5), loss: 0.01 };
}

/// The switch's rules, shared by every port and changeable while it runs.
#[derive(Debug)]
struct Rules {
    shape: LinkShape,
    /// Each host's side of a partition; hosts on different sides are cut off from each other.
    sides: Vec<Option<u8>>,
}

impl Rules {
    fn separated(&self, from: usize, to: usize) -> bool {
        matches!((self.sides.get(from), self.sides.get(to)), (Some(Some(a)), Some(Some(b))) if a != b)
    }
}

/// What the switch has done, for the report.
#[derive(Debug, Default)]
pub struct SwitchStats {
    /// Frames delivered to a port.
    pub forwarded: AtomicU64,
    /// Frames lost to the link's loss.
    pub lost: AtomicU64,
    /// Frames dropped by a partition.
    pub partitioned: AtomicU64,
}

/// A frame waiting for its delivery time on one egress port.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due: Instant,
    sequence: u64,
    frame: Vec<u8>,
}

/// One egress port's queue, ordered by delivery time.
#[derive(Debug, Default)]
struct Egress {
    queue: Mutex<BinaryHeap<Reverse<Pending>>>,
    ready: Condvar,
}

/// A port of the switch: the interface's name in the bridge namespace and the MAC of the host
/// behind it.
#[derive(Debug, Clone)]
pub struct Port {
    /// The interface in the bridge namespace.
    pub interface: String,
    /// The MAC address of the host's end of the link.
    pub host_mac: [u8; 6],
}

/// The running switch; its threads stop when it is dropped.
#[derive(Debug)]
pub struct Switch {
    rules: Arc<RwLock<Rules>>,
    stats: Arc<SwitchStats>,
    stop: Arc<AtomicBool>,
    egress: Vec<Arc<Egress>>,
    threads: Vec<JoinHandle<()>>,
}

impl Switch {
    /// Opens a socket on each port inside `bridge` and starts forwarding with `shape`; every
    /// random choice (loss, jitter) comes from `seed`.
    ///
    /// # Errors
    /// When a port's socket cannot be opened.
    pub async fn start(
        bridge: &Namespace,
        ports: &[Port],
        shape: LinkShape,
        seed: u64,
    ) -> Result<Self, ChaosError> {
        let names: Vec<String> = ports.iter().map(|port| port.interface.clone()).collect();
        let channels = bridge
            .within(move || names.iter().map(|name| open_port(name)).collect::<std::io::Result<Vec<_>>>())
            .await
            .map_err(|err| ChaosError::Switch(err.to_string()))?;
        let rules = Arc::new(RwLock::new(Rules { shape, sides: vec![None; ports.len()] }));
        let stats = Arc::new(SwitchStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let egress: Vec<Arc<Egress>> = ports.iter().map(|_| Arc::new(Egress::default())).collect();
        let macs: Arc<Vec<[u8; 6]>> = Arc::new(ports.iter().map(|port| port.host_mac).collect());
        let mut threads = Vec::new();
        for (index, (sender, receiver)) in channels.into_iter().enumerate() {
            let ingress = Ingress {
                port: index,
                macs: macs.clone(),
                rules: rules.clone(),
                stats: stats.clone(),
                egress: egress.clone(),
                stop: stop.clone(),
                rng: StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                last_due: vec![Instant::now(); ports.len()],
                sequence: 0,
            };
            threads.push(std::thread::spawn(move || ingress.run(receiver)));
            let (queue, stop, stats) = (egress[index].clone(), stop.clone(), stats.clone());
            threads.push(std::thread::spawn(move || deliver(&queue, sender, &stop, &stats)));
        }
        Ok(Self { rules, stats, stop, egress, threads })
    }

    /// Changes every link's shape from now on.
    pub fn set_shape(&self, shape: LinkShape) {
        self.rules.write().unwrap_or_else(std::sync::PoisonError::into_inner).shape = shape;
    }

    /// Cuts the hosts in `side_a` off from those in `side_b` (host indices); frames between
    /// them are dropped until [`Switch::heal`].
    pub fn partition(&self, side_a: &[usize], side_b: &[usize]) {
        let mut rules = self.rules.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (hosts, side) in [(side_a, 1), (side_b, 2)] {
            for &host in hosts {
                if let Some(slot) = rules.sides.get_mut(host) {
                    *slot = Some(side);
                }
            }
        }
    }

    /// Ends every partition.
    pub fn heal(&self) {
        let mut rules = self.rules.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        rules.sides.iter_mut().for_each(|side| *side = None);
    }

    /// What the switch has done so far.
    pub fn stats(&self) -> &SwitchStats {
        &self.stats
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for queue in &self.egress {
            queue.ready.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

type Socket = (Box<dyn DataLinkSender>, Box<dyn DataLinkReceiver>);

/// Opens the raw socket of one port; runs inside the bridge namespace.
fn open_port(name: &str) -> std::io::Result<Socket> {
    let interface = pnet_datalink::interfaces()
        .into_iter()
        .find(|interface| interface.name == name)
        .ok_or_else(|| std::io::Error::other(format!("no interface {name} in the bridge namespace")))?;
    let config = pnet_datalink::Config {
        read_timeout: Some(Duration::from_millis(100)),
        promiscuous: true,
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(&interface, config)? {
        Channel::Ethernet(sender, receiver) => Ok((sender, receiver)),
        _ => Err(std::io::Error::other(format!("{name}: not an Ethernet channel"))),
    }
}

/// One port's receiving side: reads frames from its host and queues them where they go.
struct Ingress {
    port: usize,
    macs: Arc<Vec<[u8; 6]>>,
    rules: Arc<RwLock<Rules>>,
    stats: Arc<SwitchStats>,
    egress: Vec<Arc<Egress>>,
    stop: Arc<AtomicBool>,
    rng: StdRng,
    /// The last delivery time given on each link out of this port, so frames keep their order.
    last_due: Vec<Instant>,
    sequence: u64,
}

impl Ingress {
    fn run(mut self, mut receiver: Box<dyn DataLinkReceiver>) {
        while !self.stop.load(Ordering::Acquire) {
            // Timeouts (and interrupted reads) just go round to check `stop`.
            let Ok(frame) = receiver.next() else { continue };
            if frame.len() < 14 || frame[6..12] != self.macs[self.port] {
                continue;
            }
            let frame = frame.to_vec();
            let destination: [u8; 6] = frame[0..6].try_into().unwrap_or_default();
            let multicast = destination[0] & 1 == 1;
            let targets: Vec<usize> = (0..self.macs.len())
                .filter(|&to| to != self.port && (multicast || self.macs[to] == destination))
                .collect();
            for to in targets {
                self.forward(to, frame.clone());
            }
        }
    }

    fn forward(&mut self, to: usize, frame: Vec<u8>) {
        let (shape, separated) = {
            let rules = self.rules.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            (rules.shape, rules.separated(self.port, to))
        };
        if separated {
            self.stats.partitioned.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if shape.loss > 0.0 && self.rng.random_bool(shape.loss.clamp(0.0, 1.0)) {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let jitter = if shape.jitter.is_zero() {
            Duration::ZERO
        } else {
            shape.jitter.mul_f64(self.rng.random_range(0.0..1.0))
        };
        let due = (Instant::now() + shape.latency + jitter).max(self.last_due[to]);
        self.last_due[to] = due;
        self.sequence += 1;
        let egress = &self.egress[to];
        egress.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Reverse(Pending {
            due,
            sequence: self.sequence,
            frame,
        }));
        egress.ready.notify_one();
    }
}

/// One port's sending side: sends each queued frame at its delivery time.
fn deliver(egress: &Egress, mut sender: Box<dyn DataLinkSender>, stop: &AtomicBool, stats: &SwitchStats) {
    let mut queue = egress.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        let wait = match queue.peek() {
            Some(Reverse(next)) if next.due <= now => {
                let Some(Reverse(next)) = queue.pop() else { continue };
                drop(queue);
                if let Some(Ok(())) = sender.send_to(&next.frame, None) {
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                }
                queue = egress.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            Some(Reverse(next)) => next.due - now,
            None => Duration::from_millis(100),
        };
        queue = egress.ready.wait_timeout(queue, wait).unwrap_or_else(std::sync::PoisonError::into_inner).0;
    }
}
