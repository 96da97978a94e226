//! A network lab on one machine: hosts are network namespaces, joined by veth pairs and
//! bridges, with routers that forward, NAT (`iptables` MASQUERADE, DNAT/SNAT) and filter.
//! Processes run inside a host with `ip netns exec`; SDK clients run on a thread that has
//! entered the host's namespace ([`Lab::run_in`]), so every socket they open is the host's.
//!
//! Everything a lab makes is named after the test process (`ol<pid>x<n>-<name>`) and removed
//! when the [`Lab`] is dropped, also when the test fails. Namespaces left by a test process
//! that was killed are removed by the next lab that starts. Needs root: without it
//! [`Lab::new`] panics with the reason, so the test fails instead of passing silently.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static LABS: AtomicUsize = AtomicUsize::new(0);

/// One host (or router, or switch) of the lab: a network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub ns: String,
    /// Interfaces made so far, to name the next one.
    links: usize,
}

pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    links: usize,
}

impl Lab {
    /// A new, empty lab. Panics (failing the test) if namespaces cannot be made.
    pub fn new() -> Lab {
        let n = LABS.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("ol{}x{n}", std::process::id());
        onstage_netns::remove_stale("ol");
        let probe = format!("{prefix}-probe");
        let made = Command::new("ip").args(["netns", "add", &probe]).output();
        match made {
            Ok(out) if out.status.success() => {
                let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            }
            Ok(out) => panic!(
                "the network lab cannot make namespaces (it needs root and iproute2): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("the network lab needs `ip` (iproute2): {e}"),
        }
        Lab {
            prefix,
            namespaces: Vec::new(),
            links: 0,
        }
    }

    /// A new host with loopback up.
    pub fn host(&mut self, name: &str) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        Host { ns, links: 0 }
    }

    /// A switch: a host with a bridge `br0`; [`Lab::plug`] hosts into it.
    pub fn switch(&mut self, name: &str) -> Host {
        let sw = self.host(name);
        sh(&["ip", "-n", &sw.ns, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &sw.ns, "link", "set", "br0", "up"]);
        sw
    }

    /// Plugs `host` into `switch` with address `cidr` (e.g. "10.77.0.2/24"). Returns the
    /// host's interface name.
    pub fn plug(&mut self, host: &mut Host, switch: &mut Host, cidr: &str) -> String {
        self.plug_port(host, switch, cidr).0
    }

    /// [`Lab::plug`], returning the switch's port too (where traffic *to* the host
    /// leaves the switch: the place to shape what the host receives).
    pub fn plug_port(
        &mut self,
        host: &mut Host,
        switch: &mut Host,
        cidr: &str,
    ) -> (String, String) {
        let (h, s) = self.veth(host, switch);
        sh(&["ip", "-n", &switch.ns, "link", "set", &s, "master", "br0"]);
        sh(&["ip", "-n", &switch.ns, "link", "set", &s, "up"]);
        address(host, &h, cidr);
        (h, s)
    }

    /// A direct link between two hosts, `a_cidr` on `a`'s end and `b_cidr` on `b`'s.
    /// Returns both interface names.
    pub fn link(
        &mut self,
        a: &mut Host,
        a_cidr: &str,
        b: &mut Host,
        b_cidr: &str,
    ) -> (String, String) {
        let (ia, ib) = self.veth(a, b);
        address(a, &ia, a_cidr);
        address(b, &ib, b_cidr);
        (ia, ib)
    }

    /// A veth pair made inside the namespaces themselves, so names never collide with
    /// anything outside the lab.
    fn veth(&mut self, a: &mut Host, b: &mut Host) -> (String, String) {
        self.links += 1;
        let ia = format!("e{}", a.links);
        a.links += 1;
        let ib = format!("e{}", b.links);
        b.links += 1;
        sh(&[
            "ip", "-n", &a.ns, "link", "add", &ia, "type", "veth", "peer", "name", &ib, "netns",
            &b.ns,
        ]);
        (ia, ib)
    }

    /// Runs `f` on a new thread inside `host`'s namespace, with its own tokio runtime, and
    /// returns what it returns (a panic inside fails the test with its message).
    pub fn run_in<T: Send + 'static>(
        &self,
        host: &Host,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", host.ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("the namespace exists");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("enter the namespace");
            f()
        })
    }
}

impl Lab {
    /// Runs the future `f` makes inside `host`'s namespace, on a thread and runtime of its
    /// own (every socket the SDK opens is then the host's); it starts at once, and what is
    /// returned resolves to its output.
    pub fn run_async<T, F, Fut>(
        &self,
        host: &Host,
        f: F,
    ) -> impl std::future::Future<Output = T> + Send + 'static
    where
        T: Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = T>,
    {
        let thread = self.run_in(host, move || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime in the namespace")
                .block_on(f())
        });
        async move {
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(out)) => out,
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the namespace thread: {e}"),
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in self.namespaces.iter().rev() {
            onstage_netns::delete(ns);
        }
    }
}

fn address(host: &Host, iface: &str, cidr: &str) {
    add_address(host, iface, cidr);
    sh(&["ip", "-n", &host.ns, "link", "set", iface, "up"]);
}

/// One more address on an interface. IPv6 addresses skip duplicate detection, which would
/// keep them unusable ("tentative") for a second or two.
pub fn add_address(host: &Host, iface: &str, cidr: &str) {
    let mut args = vec!["ip", "-n", &host.ns, "addr", "add", cidr, "dev", iface];
    if cidr.contains(':') {
        args.push("nodad");
    }
    sh(&args);
}

impl Host {
    /// Runs a command inside this host; panics with its output if it fails.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.ns];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// The default route. Real hosts have one; webrtc-rs gathers candidates by interface
    /// and some stacks need a route to pick a source address.
    pub fn default_route(&self, via: Ipv4Addr) {
        self.route("default", via);
    }

    pub fn route(&self, net: &str, via: Ipv4Addr) {
        sh(&[
            "ip",
            "-n",
            &self.ns,
            "route",
            "add",
            net,
            "via",
            &via.to_string(),
        ]);
    }

    /// Turns the host into a router.
    pub fn forward(&self) {
        self.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
    }

    /// `iptables` inside this host, e.g. `["-t", "nat", "-A", "POSTROUTING", ...]`.
    /// Limits what leaves `iface` to `rate` (tc's units, e.g. `3mbit`, `500kbit`) with a
    /// token bucket: a link of that capacity with a queue of about 200 ms (a home
    /// router's). Again on the same interface changes the rate in place.
    pub fn limit_rate(&self, iface: &str, rate: &str) {
        sh(&[
            "tc", "-n", &self.ns, "qdisc", "replace", "dev", iface, "root", "tbf", "rate", rate,
            "burst", "32kb", "latency", "200ms",
        ]);
    }

    pub fn iptables(&self, rule: &[&str]) {
        let mut args = vec!["iptables", "-w"];
        args.extend_from_slice(rule);
        self.exec(&args);
    }

    /// Source NAT for everything leaving through `out_iface` (a home router).
    pub fn masquerade(&self, out_iface: &str) {
        self.forward();
        self.iptables(&[
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            out_iface,
            "-j",
            "MASQUERADE",
        ]);
    }
}

/// Runs a command; panics with its stderr if it fails. Returns its stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (is it installed?)", args.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
