//! The test network: N hosts, each a namespace with one interface (`eth0`, a fixed MAC and an
//! address in 198.18.0.0/24, the range set aside for benchmarking networks), wired by veth
//! pairs into a bridge that lives in a namespace of its own. The addresses exist only inside
//! these namespaces. Links are shaped by the kernel's `netem` where the kernel has it, and by
//! the userspace [`Switch`] otherwise; partitions are made by the switch, or, on a kernel
//! bridge, by pinning the other side's addresses to a MAC nobody has (`ip neigh … nud
//! permanent`), so no firewall is needed.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::ChaosError;
use crate::netns::{Namespace, ip};
use crate::switch::{LinkShape, Port, Switch};

/// How links are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shaper {
    /// `netem` on each host's interface (half the delay each way), a kernel bridge between.
    Netem,
    /// The userspace [`Switch`] on `AF_PACKET` sockets.
    Userspace,
}

impl std::fmt::Display for Shaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Netem => "netem (kernel)",
            Self::Userspace => "userspace switch (AF_PACKET; this kernel has no netem)",
        })
    }
}

/// A host of the test network.
#[derive(Debug)]
pub struct Host {
    /// Its namespace.
    pub namespace: Namespace,
    /// Its address on the test network.
    pub ip: Ipv4Addr,
    mac: [u8; 6],
}

/// The whole network; torn down when dropped (hosts first, then the bridge).
#[derive(Debug)]
pub struct Testbed {
    /// The hosts, in order: host `i` has address 198.18.0.(i + 1).
    pub hosts: Vec<Host>,
    switch: Option<Switch>,
    shaper: Shaper,
    shape: LinkShape,
    // Dropped last: deleting it removes the bridge ends of every link.
    _bridge: Namespace,
}

/// The MAC no host has, to which a partition pins the other side's addresses.
const NOWHERE: &str = "02:00:00:00:00:fe";

impl Testbed {
    /// Builds `hosts` hosts named `{prefix}h{i}` and a bridge `{prefix}br`, with every link
    /// shaped as `shape`, using `netem` when the kernel has it unless `force_userspace`.
    ///
    /// # Errors
    /// When a namespace, link or the switch cannot be set up.
    pub async fn build(
        prefix: &str,
        hosts: usize,
        shape: LinkShape,
        force_userspace: bool,
        seed: u64,
    ) -> Result<Self, ChaosError> {
        let bridge = Namespace::create(&format!("{prefix}br"))?;
        let mut built = Vec::with_capacity(hosts);
        for index in 0..hosts {
            let number =
                u8::try_from(index + 1).map_err(|_| ChaosError::Setup("at most 250 hosts".into()))?;
            let namespace = Namespace::create(&format!("{prefix}h{index}"))?;
            let mac = [0x02, 0, 0, 0, 0, number];
            let mac_text = mac.map(|byte| format!("{byte:02x}")).join(":");
            let port = format!("p{index}");
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                namespace.name(),
                "address",
                &mac_text,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                bridge.name(),
            ])?;
            let ip = Ipv4Addr::new(198, 18, 0, number);
            namespace.run("ip", &["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            namespace.run("ip", &["link", "set", "eth0", "up"])?;
            bridge.run("ip", &["link", "set", &port, "up"])?;
            built.push(Host { namespace, ip, mac });
        }
        let netem = !force_userspace && netem_available(&built[0]);
        let mut testbed = Self {
            hosts: built,
            switch: None,
            shaper: if netem { Shaper::Netem } else { Shaper::Userspace },
            shape,
            _bridge: bridge,
        };
        match testbed.shaper {
            Shaper::Netem => testbed.build_kernel_bridge()?,
            Shaper::Userspace => testbed.build_userspace_switch(seed).await?,
        }
        testbed.set_shape(shape)?;
        Ok(testbed)
    }

    fn build_kernel_bridge(&self) -> Result<(), ChaosError> {
        let bridge = &self._bridge;
        bridge.run("ip", &["link", "add", "br0", "type", "bridge"])?;
        bridge.run("ip", &["link", "set", "br0", "up"])?;
        for index in 0..self.hosts.len() {
            bridge.run("ip", &["link", "set", &format!("p{index}"), "master", "br0"])?;
        }
        Ok(())
    }

    async fn build_userspace_switch(&mut self, seed: u64) -> Result<(), ChaosError> {
        // Frames cross the switch as they are on the wire: no segmentation or checksum left
        // for a later stage, which a raw socket would pass on half-made.
        let offloads = ["rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off", "sg", "off"];
        for (index, host) in self.hosts.iter().enumerate() {
            host.namespace.run("ethtool", &[&["-K", "eth0"][..], &offloads[..]].concat())?;
            self._bridge.run("ethtool", &[&["-K", &format!("p{index}")][..], &offloads[..]].concat())?;
        }
        let ports: Vec<Port> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(index, host)| Port { interface: format!("p{index}"), host_mac: host.mac })
            .collect();
        self.switch = Some(Switch::start(&self._bridge, &ports, self.shape, seed).await?);
        Ok(())
    }

    /// Which shaper runs.
    pub fn shaper(&self) -> Shaper {
        self.shaper
    }

    /// The shape every link has now.
    pub fn shape(&self) -> LinkShape {
        self.shape
    }

    /// Shapes every link as `shape` from now on.
    ///
    /// # Errors
    /// When `tc` refuses the `netem` settings.
    pub fn set_shape(&mut self, shape: LinkShape) -> Result<(), ChaosError> {
        self.shape = shape;
        match &self.switch {
            Some(switch) => switch.set_shape(shape),
            None => {
                // Each direction of a path crosses two hosts' egress: half the figures each.
                let half = |duration: Duration| format!("{}us", duration.as_micros() / 2);
                let loss = format!("{}%", 100.0 * (1.0 - (1.0 - shape.loss).sqrt()));
                for host in &self.hosts {
                    let (delay, jitter) = (half(shape.latency), half(shape.jitter));
                    host.namespace.run(
                        "tc",
                        &[
                            "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &delay, &jitter,
                            "loss", &loss,
                        ],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Cuts the hosts in `side_a` off from those in `side_b` until [`Testbed::heal`].
    ///
    /// # Errors
    /// When a neighbour entry cannot be pinned (kernel bridge only).
    pub fn partition(&self, side_a: &[usize], side_b: &[usize]) -> Result<(), ChaosError> {
        match &self.switch {
            Some(switch) => switch.partition(side_a, side_b),
            None => {
                for (from, to) in pairs(side_a, side_b) {
                    let other = self.hosts[to].ip.to_string();
                    self.hosts[from].namespace.run(
                        "ip",
                        &["neigh", "replace", &other, "lladdr", NOWHERE, "nud", "permanent", "dev", "eth0"],
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Ends every partition.
    ///
    /// # Errors
    /// When the pinned neighbour entries cannot be flushed (kernel bridge only).
    pub fn heal(&self) -> Result<(), ChaosError> {
        match &self.switch {
            Some(switch) => switch.heal(),
            None => {
                for host in &self.hosts {
                    host.namespace.run("ip", &["neigh", "flush", "dev", "eth0", "nud", "permanent"])?;
                }
            }
        }
        Ok(())
    }

    /// The frames the userspace switch forwarded, lost and partitioned, if it runs.
    pub fn switch_counts(&self) -> Option<(u64, u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        self.switch.as_ref().map(|switch| {
            let stats = switch.stats();
            (stats.forwarded.load(Relaxed), stats.lost.load(Relaxed), stats.partitioned.load(Relaxed))
        })
    }

    /// A round trip between the first two hosts, measured as the median time a TCP connection
    /// takes to open (one round trip) over `samples` tries.
    ///
    /// # Errors
    /// When no connection opens.
    pub async fn round_trip(&self, samples: usize) -> Result<Duration, ChaosError> {
        let addr = SocketAddr::from((self.hosts[1].ip, 9));
        let listener =
            self.hosts[1].namespace.listen(addr).await.map_err(|err| ChaosError::Setup(err.to_string()))?;
        let accept = tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        let mut times = Vec::new();
        for _ in 0..samples {
            let started = Instant::now();
            if self.hosts[0].namespace.connect(addr, Duration::from_secs(3)).await.is_ok() {
                times.push(started.elapsed());
            }
        }
        accept.abort();
        times.sort();
        times
            .get(times.len() / 2)
            .copied()
            .ok_or_else(|| ChaosError::Setup("no connection between hosts".into()))
    }
}

/// Every (from, to) pair across two sides, both ways.
fn pairs<'a>(side_a: &'a [usize], side_b: &'a [usize]) -> impl Iterator<Item = (usize, usize)> + 'a {
    side_a.iter().flat_map(move |&a| side_b.iter().flat_map(move |&b| [(a, b), (b, a)]))
}

/// Whether the kernel can add a `netem` qdisc (tried on a host's interface, then removed).
fn netem_available(host: &Host) -> bool {
    let added =
        host.namespace.run("tc", &["qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms"]).is_ok();
    if added {
        let _ = host.namespace.run("tc", &["qdisc", "del", "dev", "eth0", "root"]);
    }
    added
}
