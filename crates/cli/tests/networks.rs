//! Meetings across real networks, built for each test from network namespaces (see
//! `support/netlab.rs`): a LAN, guests behind NAT, a server behind 1:1 NAT, a guest whose
//! UDP is blocked. Each scenario has a speaker on stage (`onstage bot --media synthetic`) and
//! viewers that must decode its video and audio: `onstage bot`s, and an SDK client running
//! inside a guest's namespace. The server is `onstage serve` in its own host.
//!
//! Addresses: the "internet" is the switch 10.77.0.0/24; the server is 10.77.0.1, serving
//! HTTP on 8080 and media on 40000 (UDP and TCP). Hosts behind routers get 192.168.N.0/24.

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use onstage_client::link::InviteLink;
use onstage_client::{JoinOptions, MediaConfig, Meeting, Sources, StageMedia};
use onstage_proto::UserId;
use serde_json::{json, Value};
use support::netlab::{add_address, Host, Lab};
use support::{await_frames, once_ok_in, Proc};

const HTTP_PORT: u16 = 8080;
const MEDIA_PORT: u16 = 40000;
/// Pictures and audio frames a viewer must decode from the speaker.
const FRAMES: u64 = 10;
/// How long media may take to arrive on a path (ICE over TCP or a relay included).
const MEDIA_WAIT: Duration = Duration::from_secs(25);

/// The lab's internet: a switch, the server host, and whoever is plugged in later.
struct World {
    lab: Lab,
    net: Host,
    next_ip: u8,
    next_subnet: u8,
}

impl World {
    fn new() -> World {
        let mut lab = Lab::new();
        let net = lab.switch("net");
        World {
            lab,
            net,
            next_ip: 10,
            next_subnet: 50,
        }
    }

    /// A host on the switch at 10.77.0.`ip` and fd77::`ip`.
    fn host_at(&mut self, name: &str, ip: u8, default_route: bool) -> Host {
        let mut host = self.lab.host(name);
        let iface = self
            .lab
            .plug(&mut host, &mut self.net, &format!("10.77.0.{ip}/24"));
        add_address(&host, &iface, &format!("fd77::{ip}/64"));
        if default_route {
            // A gateway that does not exist: real hosts have a default route.
            host.default_route(Ipv4Addr::new(10, 77, 0, 254));
        }
        host
    }

    /// A new host on the switch with only an IPv6 address.
    fn v6_only_host(&mut self, name: &str) -> Host {
        self.next_ip += 1;
        let ip = self.next_ip;
        let mut host = self.lab.host(name);
        self.lab
            .plug(&mut host, &mut self.net, &format!("fd77::{ip}/64"));
        host
    }

    /// A cloud VM: a host with only the private 10.88.0.2, behind a router that maps the
    /// public 10.77.0.30 to it both ways (1:1 NAT: DNAT in, SNAT out).
    fn cloud_vm(&mut self) -> Host {
        let mut cloud = self.lab.host("cloud");
        self.lab.plug(&mut cloud, &mut self.net, "10.77.0.30/24");
        let mut vm = self.lab.host("vm");
        self.lab
            .link(&mut cloud, "10.88.0.1/24", &mut vm, "10.88.0.2/24");
        vm.default_route(Ipv4Addr::new(10, 88, 0, 1));
        cloud.forward();
        for rule in [
            "-t nat -A PREROUTING -d 10.77.0.30 -j DNAT --to-destination 10.88.0.2",
            "-t nat -A POSTROUTING -s 10.88.0.2 -j SNAT --to-source 10.77.0.30",
        ] {
            cloud.iptables(&rule.split_whitespace().collect::<Vec<_>>());
        }
        vm
    }

    /// A new host on the switch.
    fn lan_host(&mut self, name: &str, default_route: bool) -> Host {
        self.next_ip += 1;
        let ip = self.next_ip;
        self.host_at(name, ip, default_route)
    }

    /// A host behind its own router (NAT, MASQUERADE); `rules` adds the router's filter
    /// rules, given the router and its outside interface. Returns (guest, router).
    fn behind_nat(&mut self, name: &str, rules: impl Fn(&Host, &str)) -> (Host, Host) {
        self.next_ip += 1;
        let wan_ip = self.next_ip;
        self.next_subnet += 1;
        let subnet = self.next_subnet;
        let mut router = self.lab.host(&format!("{name}-rt"));
        let wan = self
            .lab
            .plug(&mut router, &mut self.net, &format!("10.77.0.{wan_ip}/24"));
        let mut guest = self.lab.host(name);
        self.lab.link(
            &mut router,
            &format!("192.168.{subnet}.1/24"),
            &mut guest,
            &format!("192.168.{subnet}.2/24"),
        );
        guest.default_route(Ipv4Addr::new(192, 168, subnet, 1));
        router.masquerade(&wan);
        rules(&router, &wan);
        (guest, router)
    }
}

/// A firewall (the router of [`World::behind_nat`]) that forwards no UDP at all.
fn drop_all_udp(router: &Host, _wan: &str) {
    router.iptables(&["-A", "FORWARD", "-p", "udp", "-j", "DROP"]);
}

/// A firewall that lets out signaling to the server (TCP 8080) and UDP to the relay
/// (10.77.0.5:3478), nothing else: no media to the SFU, over UDP or TCP.
fn reach_only_signaling_and_the_relay(router: &Host, _wan: &str) {
    for rule in [
        "-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A FORWARD -p tcp -d 10.77.0.1 --dport 8080 -j ACCEPT",
        "-A FORWARD -p udp -d 10.77.0.5 --dport 3478 -j ACCEPT",
        "-P FORWARD DROP",
    ] {
        router.iptables(&rule.split_whitespace().collect::<Vec<_>>());
    }
}

/// `onstage serve` running in a host, and the admin side of one meeting on it.
struct Server {
    _proc: Proc,
    _data: tempfile::TempDir,
    url: String,
    key: String,
    /// The self-signed certificate's fingerprint, when serving https.
    fingerprint: Option<String>,
    /// Where admin commands run from (a host that reaches the server).
    admin: String,
    meeting: String,
}

async fn serve(host: &Host, admin: &Host, url_ip: &str, args: &[&str]) -> Server {
    serve_on(host, admin, url_ip, "0.0.0.0", args).await
}

/// `serve` with its HTTP and media sockets on `bind_ip` (`::` serves IPv6 and IPv4).
async fn serve_on(host: &Host, admin: &Host, url_ip: &str, bind_ip: &str, args: &[&str]) -> Server {
    let data = tempfile::tempdir().expect("temp dir");
    let bind_ip: std::net::IpAddr = bind_ip.parse().expect("bind ip");
    let listen = std::net::SocketAddr::new(bind_ip, HTTP_PORT).to_string();
    let media = std::net::SocketAddr::new(bind_ip, MEDIA_PORT).to_string();
    let mut all = vec![
        "serve",
        "--listen",
        &listen,
        "--data",
        data.path().to_str().expect("utf-8 path"),
        "--media-udp",
        &media,
    ];
    all.extend_from_slice(args);
    // Invite links name the address guests reach the server at.
    let url_ip: std::net::IpAddr = url_ip.parse().expect("url ip");
    let scheme = if args.contains(&"--tls-self-signed") {
        "https"
    } else {
        "http"
    };
    let public = format!(
        "{scheme}://{}",
        std::net::SocketAddr::new(url_ip, HTTP_PORT)
    );
    if !args.contains(&"--public-url") {
        all.extend(["--public-url", &public]);
    }
    let mut proc = Proc::spawn_in(Some(&host.ns), "serve", &all, &[]);
    let ready = proc.next().await.expect("serve prints its ready line");
    assert_eq!(ready["event"], "listening", "{ready}");
    let key = ready["admin_key"].as_str().expect("admin key").to_owned();
    let fingerprint = ready["fingerprint"].as_str().map(str::to_owned);
    let url = public;
    let mut args = vec!["meeting", "create", "--server", &url, "--title", "Lab"];
    if let Some(fp) = &fingerprint {
        args.extend(["--fingerprint", fp]);
    }
    let created = once_ok_in(Some(&admin.ns), &args, &key).await;
    let meeting = created["id"].as_str().expect("meeting id").to_owned();
    Server {
        _proc: proc,
        _data: data,
        url,
        key,
        fingerprint,
        admin: admin.ns.clone(),
        meeting,
    }
}

impl Server {
    /// `participant add`: {user_id, token, link}.
    async fn add_participant(&self, name: &str, preset: &str) -> Value {
        let mut args = vec![
            "participant",
            "add",
            "--server",
            &self.url,
            "--meeting",
            &self.meeting,
            "--name",
            name,
            "--preset",
            preset,
        ];
        if let Some(fp) = &self.fingerprint {
            args.extend(["--fingerprint", fp]);
        }
        once_ok_in(Some(&self.admin), &args, &self.key).await
    }

    /// A synthetic bot in `host`, joined (with the invite link the server made).
    async fn bot(&self, host: &Host, name: &str, preset: &str) -> (Proc, String) {
        self.bot_with(host, name, preset, &["--video", "320x240@15"])
            .await
    }

    /// [`Server::bot`] with more arguments for `onstage bot`.
    async fn bot_with(
        &self,
        host: &Host,
        name: &str,
        preset: &str,
        args: &[&str],
    ) -> (Proc, String) {
        let added = self.add_participant(name, preset).await;
        let user = added["user_id"].as_str().expect("user id").to_owned();
        let link = added["link"].as_str().expect("an invite link");
        let mut bot = bot_with_link(host, name, link, args);
        let joined = bot.next().await.expect("joined line");
        assert_eq!(joined["event"], "joined", "{name}: {joined}");
        (bot, user)
    }

    /// An SDK viewer in `host` (on its own thread inside the namespace) that waits for
    /// `FRAMES` pictures and audio frames from `from`; returns what it decoded.
    async fn sdk_viewer(&self, lab: &Lab, host: &Host, from: &str) -> Result<(u64, u64), String> {
        let added = self.add_participant("SDK viewer", "viewer").await;
        let link: InviteLink = added["link"]
            .as_str()
            .expect("an invite link")
            .parse()
            .expect("the server's link parses");
        let from = UserId::new(from);
        lab.run_async(host, move || async move {
            let meeting = Meeting::join_invite(&link, JoinOptions::default())
                .await
                .map_err(|e| format!("join: {e}"))?;
            let media = StageMedia::start(
                meeting.clone(),
                MediaConfig {
                    sources: Sources::None,
                    ..MediaConfig::default()
                },
            );
            let got = tokio::time::timeout(MEDIA_WAIT, async {
                loop {
                    let stats = media.stats();
                    if let Some(r) = stats.received.get(&from) {
                        if r.video_frames >= FRAMES && r.audio_frames >= FRAMES {
                            return (r.video_frames, r.audio_frames);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await;
            let stats = media.stats();
            media.stop().await;
            let _ = meeting.leave().await;
            let got =
                got.map_err(|_| format!("no media from {from} within {MEDIA_WAIT:?}: {stats:?}"))?;
            // Media came, and no attempt failed on the way (a path that works only on
            // a retry is a path that does not work).
            match stats.last_error {
                Some(e) => Err(format!("media arrived, after an error: {e}")),
                None => Ok(got),
            }
        })
        .await
    }
}

impl Server {
    /// The server's media sessions over UDP and over TCP, read from `/metrics` by `from`
    /// (one snapshot).
    fn transports(&self, from: &Host) -> (u64, u64) {
        let [udp, tcp] = self.metrics(
            from,
            [
                "onstage_sfu_sessions_over_udp",
                "onstage_sfu_sessions_over_tcp",
            ],
        );
        (udp as u64, tcp as u64)
    }

    /// Values of the server's `/metrics`, fetched once by `from` (plain http).
    fn metrics<const N: usize>(&self, from: &Host, names: [&str; N]) -> [f64; N] {
        let addr: std::net::SocketAddr = self
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("an http URL naming an address");
        let text = from.exec(&[
            "bash",
            "-c",
            &format!(
                "exec 3<>/dev/tcp/{}/{}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3",
                addr.ip(),
                addr.port()
            ),
        ]);
        names.map(|name| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in /metrics: {text}"))
        })
    }

    /// Media flows, all of it over UDP (no session fell back to TCP).
    fn assert_all_udp(&self, from: &Host, sessions: u64) {
        let (udp, tcp) = self.transports(from);
        assert!(
            udp >= sessions && tcp == 0,
            "expected {sessions}+ sessions over UDP and none over TCP: udp {udp}, tcp {tcp}"
        );
    }
}

/// `onstage bot --link LINK` with synthetic media, in `host`, with `args` after.
fn bot_with_link(host: &Host, name: &str, link: &str, args: &[&str]) -> Proc {
    let mut all = vec!["bot", "--link", link, "--media", "synthetic"];
    all.extend_from_slice(args);
    Proc::spawn_in(Some(&host.ns), name, &all, &[])
}

/// Goes on stage (the preset may join directly).
async fn join_stage(bot: &mut Proc) {
    let r = bot.ok(json!({"id": 100, "call": "stage.join"})).await;
    assert_eq!(r["status"], "ON_STAGE", "{r}");
}

async fn leave_stage(bot: &mut Proc) {
    bot.ok(json!({"id": 101, "call": "stage.leave"})).await;
}

/// Waits until `viewer` has decoded `FRAMES` pictures and audio frames from `from`.
async fn wait_media(viewer: &mut Proc, from: &str) {
    await_frames(viewer, &[from], &[(0, 0)], FRAMES, MEDIA_WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_guests_on_other_hosts_get_media_from_an_sfu_on_every_interface() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let speaker_host = world.lan_host("g1", true);
    // No default route: webrtc-rs's mDNS socket used to fail the whole connection here.
    let viewer_host = world.lan_host("g2", false);
    let sdk_host = world.lan_host("g3", true);
    let server = serve(&server_host, &speaker_host, "10.77.0.1", &[]).await;

    let (mut speaker, speaker_id) = server.bot(&speaker_host, "Sam", "host").await;
    let (mut viewer, _) = server.bot(&viewer_host, "Vic", "viewer").await;
    join_stage(&mut speaker).await;
    wait_media(&mut viewer, &speaker_id).await;
    // The publication and the two bots' subscriptions (speaker and viewer watch too).
    server.assert_all_udp(&speaker_host, 2);
    let sdk = server.sdk_viewer(&world.lab, &sdk_host, &speaker_id).await;
    let (video, audio) = sdk.expect("the SDK viewer gets media");
    assert!(video >= FRAMES && audio >= FRAMES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_behind_nat_watches_and_speaks() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let lan_host = world.lan_host("g1", true);
    let (natted, _router) = world.behind_nat("home", |_, _| {});
    let server = serve(&server_host, &lan_host, "10.77.0.1", &[]).await;

    let (mut lan, lan_id) = server.bot(&lan_host, "Lan", "host").await;
    let (mut home, home_id) = server.bot(&natted, "Home", "host").await;
    // The guest behind NAT watches...
    join_stage(&mut lan).await;
    wait_media(&mut home, &lan_id).await;
    // ...and speaks.
    leave_stage(&mut lan).await;
    join_stage(&mut home).await;
    wait_media(&mut lan, &home_id).await;
    server.assert_all_udp(&lan_host, 2);
    let sdk = server.sdk_viewer(&world.lab, &natted, &home_id).await;
    sdk.expect("an SDK viewer behind the NAT gets media");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_behind_one_to_one_nat_announces_its_public_address() {
    let mut world = World::new();
    let server_host = world.cloud_vm();
    let speaker_host = world.lan_host("g1", true);
    let viewer_host = world.lan_host("g2", true);
    let server = serve(
        &server_host,
        &speaker_host,
        "10.77.0.30",
        &["--media-ip", "10.77.0.30"],
    )
    .await;

    let (mut speaker, speaker_id) = server.bot(&speaker_host, "Sam", "host").await;
    let (mut viewer, _) = server.bot(&viewer_host, "Vic", "viewer").await;
    join_stage(&mut speaker).await;
    wait_media(&mut viewer, &speaker_id).await;
    server.assert_all_udp(&speaker_host, 2);
    let sdk = server
        .sdk_viewer(&world.lab, &viewer_host, &speaker_id)
        .await;
    sdk.expect("an SDK viewer reaches the server behind 1:1 NAT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_behind_port_forwarding_is_reached_at_its_public_url() {
    let mut world = World::new();
    // A home router forwarding the HTTP port and the media port (UDP and TCP) to a server
    // that knows only its private address; nobody told it the public one but its URL.
    let mut router = world.lab.host("pf");
    let wan = world.lab.plug(&mut router, &mut world.net, "10.77.0.31/24");
    let mut server_host = world.lab.host("box");
    world.lab.link(
        &mut router,
        "10.89.0.1/24",
        &mut server_host,
        "10.89.0.2/24",
    );
    server_host.default_route(Ipv4Addr::new(10, 89, 0, 1));
    router.masquerade(&wan);
    for (proto, port) in [("tcp", "8080"), ("udp", "40000"), ("tcp", "40000")] {
        router.iptables(&[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-i",
            &wan,
            "-p",
            proto,
            "--dport",
            port,
            "-j",
            "DNAT",
            "--to-destination",
            "10.89.0.2",
        ]);
    }
    let speaker_host = world.lan_host("g1", true);
    let viewer_host = world.lan_host("g2", true);
    let server = serve(&server_host, &speaker_host, "10.77.0.31", &[]).await;

    let (mut speaker, speaker_id) = server.bot(&speaker_host, "Sam", "host").await;
    let (mut viewer, _) = server.bot(&viewer_host, "Vic", "viewer").await;
    join_stage(&mut speaker).await;
    wait_media(&mut viewer, &speaker_id).await;
    server.assert_all_udp(&speaker_host, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_whose_udp_is_blocked_gets_media_over_tcp() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let lan_host = world.lan_host("g1", true);
    let (blocked, _router) = world.behind_nat("office", drop_all_udp);
    // The server offers a relay too, which this guest cannot reach (UDP): waiting for it
    // must not cost the TCP path.
    let server = serve(
        &server_host,
        &lan_host,
        "10.77.0.1",
        &["--turn-url", "turn:10.77.0.5:3478", "--turn-secret", "s"],
    )
    .await;

    let (mut lan, lan_id) = server.bot(&lan_host, "Lan", "host").await;
    let (mut office, office_id) = server.bot(&blocked, "Office", "host").await;
    join_stage(&mut lan).await;
    wait_media(&mut office, &lan_id).await;
    leave_stage(&mut lan).await;
    join_stage(&mut office).await;
    wait_media(&mut lan, &office_id).await;
    let sdk = server.sdk_viewer(&world.lab, &blocked, &office_id).await;
    sdk.expect("an SDK viewer without UDP gets media over TCP");
    let (_, over_tcp) = server.transports(&lan_host);
    assert!(over_tcp >= 1, "media went over TCP");
}

/// coturn, stopped when dropped.
struct Coturn(std::process::Child);

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// coturn in `host`, listening at `ip`:3478 with `secret` (TURN REST API credentials).
fn coturn(host: &Host, ip: &str, secret: &str) -> Coturn {
    let child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.ns,
            "turnserver",
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
        ])
        .arg(format!("--listening-ip={ip}"))
        .arg(format!("--relay-ip={ip}"))
        .args([
            "--listening-port=3478",
            "--min-port=49152",
            "--max-port=49300",
        ])
        .args(["--use-auth-secret", "--realm=onstage.lab", "--fingerprint"])
        .arg(format!("--static-auth-secret={secret}"))
        .args(["--simple-log", "--log-file=stdout", "--pidfile="])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("turnserver (coturn) starts");
    let relay = Coturn(child);
    // Ready once its UDP listener is bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listening = host.exec(&["ss", "-Hlun"]);
        if listening.contains(&format!("{ip}:3478")) {
            return relay;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "coturn did not listen on {ip}:3478"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_reaches_only_the_relay_gets_media_through_coturn() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let turn_host = world.host_at("turn", 5, true);
    let lan_host = world.lan_host("g1", true);
    let (relayed, _router) = world.behind_nat("hotel", reach_only_signaling_and_the_relay);
    let _turn = coturn(&turn_host, "10.77.0.5", "lab-secret");
    let server = serve(
        &server_host,
        &lan_host,
        "10.77.0.1",
        &[
            "--turn-url",
            "turn:10.77.0.5:3478",
            "--turn-secret",
            "lab-secret",
        ],
    )
    .await;

    let (mut lan, lan_id) = server.bot(&lan_host, "Lan", "host").await;
    let (mut hotel, hotel_id) = server.bot(&relayed, "Hotel", "host").await;
    join_stage(&mut lan).await;
    wait_media(&mut hotel, &lan_id).await;
    leave_stage(&mut lan).await;
    join_stage(&mut hotel).await;
    wait_media(&mut lan, &hotel_id).await;
    let sdk = server.sdk_viewer(&world.lab, &relayed, &hotel_id).await;
    sdk.expect("an SDK viewer that reaches only the relay gets media");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_guests_get_media_from_an_sfu_on_both_families() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    // Guests without IPv4 at all: whatever reaches them is IPv6.
    let v6_speaker = world.v6_only_host("g1");
    let v6_viewer = world.v6_only_host("g2");
    let v4_viewer = world.lan_host("g3", true);
    // `::` serves both families; guests reach it at fd77::1.
    let server = serve_on(&server_host, &v6_speaker, "fd77::1", "::", &[]).await;

    let (mut speaker, speaker_id) = server.bot(&v6_speaker, "Sam", "host").await;
    let (mut viewer, _) = server.bot(&v6_viewer, "Vic", "viewer").await;
    join_stage(&mut speaker).await;
    wait_media(&mut viewer, &speaker_id).await;
    server.assert_all_udp(&v6_speaker, 2);
    // A guest with both families, reaching the server at its IPv4 address (the SFU's one
    // dual-stack socket serves both).
    let v4 = Server {
        url: format!("http://10.77.0.1:{HTTP_PORT}"),
        admin: v4_viewer.ns.clone(),
        ..server
    };
    let sdk = v4.sdk_viewer(&world.lab, &v4_viewer, &speaker_id).await;
    sdk.expect("a dual-stack SDK viewer gets media from an IPv6 speaker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_guests_pin_the_self_signed_certificate_and_a_wrong_fingerprint_is_refused() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let speaker_host = world.lan_host("g1", true);
    let (natted, _router) = world.behind_nat("home", |_, _| {});
    let server = serve(
        &server_host,
        &speaker_host,
        "10.77.0.1",
        &["--tls-self-signed"],
    )
    .await;
    let fingerprint = server
        .fingerprint
        .clone()
        .expect("a self-signed server prints its fingerprint");
    assert!(server.url.starts_with("https://"), "{}", server.url);

    // Bots and the SDK join with the links the server hands out (https, fingerprint).
    let (mut speaker, speaker_id) = server.bot(&speaker_host, "Sam", "host").await;
    let (mut viewer, _) = server.bot(&natted, "Vic", "viewer").await;
    join_stage(&mut speaker).await;
    wait_media(&mut viewer, &speaker_id).await;
    let sdk = server.sdk_viewer(&world.lab, &natted, &speaker_id).await;
    sdk.expect("an SDK viewer joins over wss with the pinned certificate");

    // The same link with another certificate's fingerprint is refused, saying so.
    let added = server.add_participant("Mallory", "viewer").await;
    let link = added["link"].as_str().expect("link");
    let wrong = format!("sha256%3A{}", "ab".repeat(32));
    let pinned = fingerprint.replace(':', "%3A");
    assert!(link.contains(&pinned), "{link} carries {pinned}");
    let forged = link.replace(&pinned, &wrong);
    let mut refused = bot_with_link(&natted, "Mallory", &forged, &["--video", "320x240@15"]);
    let line = refused
        .next()
        .await
        .expect("the bot says why it did not join");
    assert_eq!(line["ok"], false, "{line}");
    assert_eq!(line["error"]["code"], "untrusted_server", "{line}");
    let message = line["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&"ab".repeat(32)) || message.contains("fingerprint"),
        "{message}"
    );
    assert_ne!(refused.exit_code().await, Some(0));
}

// ---- Benchmarks (ignored by default; BENCHMARKS.md "Paths across networks" has the
// command). They print JSON lines; nothing here asserts a time.

/// Tries per path for the time to the first picture.
const TRIES: usize = 20;

/// `tries` fresh SDK viewers in `host`, one after another, 400 ms apart: for each, the time
/// from starting its media (it subscribes at once: `from` is on stage) to the first decoded
/// picture: offer, answer, ICE, DTLS, the keyframe request and the keyframe, decoded.
async fn first_picture_times(
    server: &Server,
    lab: &Lab,
    host: &Host,
    from: &str,
    tries: usize,
) -> Vec<Duration> {
    let mut links = Vec::new();
    for i in 0..tries {
        let added = server
            .add_participant(&format!("Bench {i}"), "viewer")
            .await;
        let link: InviteLink = added["link"]
            .as_str()
            .expect("link")
            .parse()
            .expect("link parses");
        links.push(link);
    }
    let from = UserId::new(from);
    lab.run_async(host, move || async move {
        let mut times = Vec::new();
        for link in links {
            let meeting = Meeting::join_invite(&link, JoinOptions::default())
                .await
                .expect("join");
            let t0 = std::time::Instant::now();
            let media = StageMedia::start(
                meeting.clone(),
                MediaConfig {
                    sources: Sources::None,
                    ..MediaConfig::default()
                },
            );
            let mut frames = media.video_frames();
            tokio::time::timeout(MEDIA_WAIT, async {
                loop {
                    match frames.recv().await {
                        Ok(v) if v.origin.user_id() == Some(&from) => return,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(e) => panic!("pictures: {e}"),
                    }
                }
            })
            .await
            .expect("a first picture");
            times.push(t0.elapsed());
            media.stop().await;
            let _ = meeting.leave().await;
            // Beyond the SFU's least keyframe-request interval (100 ms) and a keyframe's
            // way, so each try waits for its own keyframe request, not the previous one's.
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        times
    })
    .await
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn report_first_picture(path: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{}",
        json!({
            "bench": "first_picture",
            "path": path,
            "tries": times.len(),
            "p50_ms": (percentile_ms(&times, 0.5) * 10.0).round() / 10.0,
            "p95_ms": (percentile_ms(&times, 0.95) * 10.0).round() / 10.0,
            "max_ms": (percentile_ms(&times, 1.0) * 10.0).round() / 10.0,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand, see BENCHMARKS.md"]
async fn bench_first_picture_on_every_path() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let turn_host = world.host_at("turn", 5, true);
    let lan_host = world.lan_host("g1", true);
    let viewer_lan = world.lan_host("g2", true);
    let (natted, _nat) = world.behind_nat("home", |_, _| {});
    let (no_udp, _fw) = world.behind_nat("office", drop_all_udp);
    let (relay_only, _hotel) = world.behind_nat("hotel", reach_only_signaling_and_the_relay);
    let _turn = coturn(&turn_host, "10.77.0.5", "lab-secret");
    // Round one with a relay configured (which the UDP-blocked guest cannot reach either:
    // its offers wait for it, see GATHER_TIMEOUT in the SDK); round two over TLS, no relay.
    for tls in [false, true] {
        let args: Vec<&str> = if tls {
            vec!["--tls-self-signed"]
        } else {
            vec![
                "--turn-url",
                "turn:10.77.0.5:3478",
                "--turn-secret",
                "lab-secret",
            ]
        };
        let server = serve(&server_host, &lan_host, "10.77.0.1", &args).await;
        let (mut speaker, speaker_id) = server.bot(&lan_host, "Sam", "host").await;
        join_stage(&mut speaker).await;
        let paths: Vec<(&str, &Host)> = if tls {
            vec![
                ("tls_lan", &viewer_lan),
                ("tls_udp_blocked_tcp_no_relay", &no_udp),
            ]
        } else {
            vec![
                ("lan", &viewer_lan),
                ("behind_nat", &natted),
                ("udp_blocked_tcp", &no_udp),
                ("relay_only_turn", &relay_only),
            ]
        };
        for (path, host) in paths {
            let times = first_picture_times(&server, &world.lab, host, &speaker_id, TRIES).await;
            report_first_picture(path, times);
        }
    }
    // Round three: a server behind 1:1 NAT, announcing its public address.
    let vm = world.cloud_vm();
    let server = serve(&vm, &lan_host, "10.77.0.30", &["--media-ip", "10.77.0.30"]).await;
    let (mut speaker, speaker_id) = server.bot(&lan_host, "Sam", "host").await;
    join_stage(&mut speaker).await;
    let times = first_picture_times(&server, &world.lab, &viewer_lan, &speaker_id, TRIES).await;
    report_first_picture("server_behind_1to1_nat", times);
}

/// CPU time of a process so far, user and system (Linux: fields 14 and 15 of
/// /proc/PID/stat, in 10 ms ticks; counted after the command name, which may hold spaces).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process runs");
    let after_name: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        after_name
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by hand, see BENCHMARKS.md"]
async fn bench_sfu_cpu_per_packet_over_tcp_and_udp() {
    const VIEWERS: usize = 8;
    const WINDOW: Duration = Duration::from_secs(10);
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let lan_host = world.lan_host("g1", true);
    let udp_viewers = world.lan_host("g2", true);
    let (tcp_viewers, _fw) = world.behind_nat("office", drop_all_udp);
    for (path, host) in [("udp", &udp_viewers), ("tcp", &tcp_viewers)] {
        let server = serve(&server_host, &lan_host, "10.77.0.1", &[]).await;
        let pid = server._proc.child.id().expect("serve runs");
        // A busier publisher than the tests' bots: more packets to forward.
        let added = server.add_participant("Sam", "host").await;
        let speaker_id = added["user_id"].as_str().expect("user id").to_owned();
        let mut speaker = Proc::spawn_in(
            Some(&lan_host.ns),
            "Sam",
            &[
                "bot",
                "--link",
                added["link"].as_str().expect("link"),
                "--media",
                "synthetic",
                "--video",
                "1280x720@30",
                "--video-bitrate",
                "2000000",
            ],
            &[],
        );
        assert_eq!(speaker.next().await.expect("joined")["event"], "joined");
        join_stage(&mut speaker).await;
        let mut links = Vec::new();
        for i in 0..VIEWERS {
            let added = server.add_participant(&format!("V{i}"), "viewer").await;
            let link: InviteLink = added["link"].as_str().expect("link").parse().expect("link");
            links.push(link);
        }
        let from = UserId::new(&speaker_id);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let viewers = world.lab.run_async(host, move || async move {
            let mut all = Vec::new();
            for link in links {
                let meeting = Meeting::join_invite(&link, JoinOptions::default())
                    .await
                    .expect("join");
                // Receive and count, no decoding: the viewers' CPU is not measured.
                let media = StageMedia::start(
                    meeting.clone(),
                    MediaConfig {
                        sources: Sources::None,
                        decode_video: false,
                        ..MediaConfig::default()
                    },
                );
                all.push((meeting, media));
            }
            for (_, media) in &all {
                while media
                    .stats()
                    .received
                    .get(&from)
                    .is_none_or(|r| r.audio_frames < 10)
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let _ = ready_tx.send(());
            let _ = done_rx.await;
            for (meeting, media) in all {
                media.stop().await;
                let _ = meeting.leave().await;
            }
        });
        tokio::task::spawn_blocking(move || ready_rx.recv_timeout(MEDIA_WAIT))
            .await
            .expect("join")
            .expect("every viewer receives");
        let (udp0, tcp0) = server.transports(&lan_host);
        let [fwd0] = server.metrics(&lan_host, ["onstage_sfu_forwarded_packets_total"]);
        let cpu0 = cpu_time(pid);
        tokio::time::sleep(WINDOW).await;
        let cpu = cpu_time(pid) - cpu0;
        let [fwd1] = server.metrics(&lan_host, ["onstage_sfu_forwarded_packets_total"]);
        let fwd = fwd1 - fwd0;
        let _ = done_tx.send(());
        viewers.await;
        println!(
            "{}",
            json!({
                "bench": "sfu_cpu_per_packet",
                "path": path,
                "viewers": VIEWERS,
                "sessions_over_udp": udp0,
                "sessions_over_tcp": tcp0,
                "forwarded_packets_per_s": (fwd / WINDOW.as_secs_f64()).round(),
                "sfu_cpu_cores": (cpu.as_secs_f64() / WINDOW.as_secs_f64() * 1000.0).round() / 1000.0,
                "us_per_forwarded_packet": (cpu.as_secs_f64() * 1e6 / fwd * 100.0).round() / 100.0,
            })
        );
        drop(speaker);
    }
}

// ---------------------------------------------------------------------------------------
// Simulcast: every viewer gets the best picture its link carries.

/// What a viewer shows of one speaker at one moment (`media.stats`).
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    at: Duration,
    height: u64,
    fps: f64,
    frames: u64,
    freezes: u64,
    freeze_ms_total: u64,
    /// The reception mark (`good`, `fair`, `poor`), once there is one.
    reception: Option<&'static str>,
}

impl Seen {
    async fn of(viewer: &mut Proc, from: &str, t0: tokio::time::Instant) -> Seen {
        let stats = viewer.ok(json!({"id": 901, "call": "media.stats"})).await;
        let r = &stats["received"][from];
        Seen {
            at: t0.elapsed(),
            height: r["height"].as_u64().unwrap_or(0),
            fps: r["fps"].as_f64().unwrap_or(0.0),
            frames: r["video_frames"].as_u64().unwrap_or(0),
            freezes: r["freezes"].as_u64().unwrap_or(0),
            freeze_ms_total: r["freeze_ms_total"].as_u64().unwrap_or(0),
            reception: ["good", "fair", "poor"]
                .into_iter()
                .find(|mark| r["reception"].as_str() == Some(mark)),
        }
    }
}

/// A viewer's timeline of one speaker, sampled every [`SAMPLE`].
struct Timeline {
    name: &'static str,
    samples: Vec<Seen>,
}

const SAMPLE: Duration = Duration::from_millis(250);

impl Timeline {
    fn new(name: &'static str) -> Timeline {
        Timeline {
            name,
            samples: Vec::new(),
        }
    }

    fn last(&self) -> Seen {
        self.samples.last().copied().unwrap_or_default()
    }

    /// Picture height changes among the samples from `since` on.
    fn changes_since(&self, since: Duration) -> usize {
        self.changes_between(since, Duration::MAX)
    }

    /// The longest a single freeze after `since` can have lasted: the frozen time added
    /// between two samples (a bound: it may be several shorter freezes).
    fn longest_freeze_since(&self, since: Duration) -> u64 {
        let from: Vec<&Seen> = self.samples.iter().filter(|s| s.at >= since).collect();
        from.windows(2)
            .map(|w| w[1].freeze_ms_total.saturating_sub(w[0].freeze_ms_total))
            .max()
            .unwrap_or(0)
    }

    /// The first sample from `since` on whose picture satisfies `ok`.
    fn first_since(&self, since: Duration, ok: impl Fn(&Seen) -> bool) -> Option<Duration> {
        self.samples
            .iter()
            .find(|s| s.at >= since && ok(s))
            .map(|s| s.at - since)
    }

    /// From how long after `since` every sample satisfies `ok` (a climb that held, not
    /// one taken and left again).
    fn settled_since(&self, since: Duration, ok: impl Fn(&Seen) -> bool) -> Option<Duration> {
        let from: Vec<&Seen> = self.samples.iter().filter(|s| s.at >= since).collect();
        let bad = from.iter().rposition(|s| !ok(s));
        let first = bad.map_or(0, |i| i + 1);
        from.get(first).map(|s| s.at - since)
    }

    /// Picture height changes among the samples from `since` to `until`.
    fn changes_between(&self, since: Duration, until: Duration) -> usize {
        let from: Vec<&Seen> = self
            .samples
            .iter()
            .filter(|s| s.at >= since && s.at < until)
            .collect();
        from.windows(2)
            .filter(|w| w[0].height != w[1].height && w[1].height != 0)
            .count()
    }

    /// One line per sample, for the benchmark's timeline.
    fn print(&self) {
        for s in &self.samples {
            eprintln!(
                "timeline {} t={:.2}s height={} fps={:.1} frames={} freezes={} frozen_ms={} \
                 reception={}",
                self.name,
                s.at.as_secs_f64(),
                s.height,
                s.fps,
                s.frames,
                s.freezes,
                s.freeze_ms_total,
                s.reception.unwrap_or("-"),
            );
        }
    }
}

/// Samples both viewers every [`SAMPLE`] for `span`, or until `done` holds.
async fn watch(
    viewers: &mut [(&mut Proc, &mut Timeline)],
    from: &str,
    t0: tokio::time::Instant,
    span: Duration,
    done: impl Fn(&[&Timeline]) -> bool,
) {
    let end = tokio::time::Instant::now() + span;
    while tokio::time::Instant::now() < end {
        let tick = tokio::time::Instant::now() + SAMPLE;
        for (viewer, timeline) in viewers.iter_mut() {
            let seen = Seen::of(viewer, from, t0).await;
            timeline.samples.push(seen);
        }
        let timelines: Vec<&Timeline> = viewers.iter().map(|(_, t)| &**t).collect();
        if done(&timelines) {
            return;
        }
        // Paced: `media.stats` is a call, and the fps it reports is per second.
        tokio::time::sleep_until(tick).await;
    }
}

/// Viewer A's link is free, viewer B's is 3 Mbit/s, then 500 kbit/s, then 3 Mbit/s again
/// (a token bucket on the switch's port towards B). The targets: A keeps 720p throughout;
/// B is on 720p at 3 Mbit/s, leaves it within 3 s of the step down with no freeze over
/// 500 ms, and is back on 720p within 15 s of the step up, changing layers at most twice a
/// minute while the rate is steady. Prints both timelines and how each target fared (the
/// figures of BENCHMARKS.md). Every target is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_whose_link_steps_down_and_up_follows_it_and_the_free_viewer_keeps_720p() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let speaker_host = world.host_at("spk", 2, true);
    let a_host = world.host_at("va", 3, true);
    let mut b_host = world.lab.host("vb");
    let (_, b_port) = world
        .lab
        .plug_port(&mut b_host, &mut world.net, "10.77.0.4/24");
    b_host.default_route(Ipv4Addr::new(10, 77, 0, 254));
    world.net.limit_rate(&b_port, "3mbit");
    let server = serve(&server_host, &speaker_host, "10.77.0.1", &[]).await;
    let (mut speaker, speaker_id) = server
        .bot_with(&speaker_host, "Sam", "host", &["--video", "1280x720@30"])
        .await;
    let (mut a, _) = server.bot_with(&a_host, "Ann", "viewer", &[]).await;
    let (mut b, _) = server.bot_with(&b_host, "Bob", "viewer", &[]).await;
    join_stage(&mut speaker).await;
    wait_media(&mut a, &speaker_id).await;
    wait_media(&mut b, &speaker_id).await;

    let t0 = tokio::time::Instant::now();
    let (mut ta, mut tb) = (Timeline::new("A"), Timeline::new("B"));
    // Both climb to 720p: A at once, B within what its 3 Mbit/s lets the estimate show.
    watch(
        &mut [(&mut a, &mut ta), (&mut b, &mut tb)],
        &speaker_id,
        t0,
        Duration::from_secs(30),
        |t| t.iter().all(|t| t.last().height == 720),
    )
    .await;
    let climbed = t0.elapsed();
    // Steady at 3 Mbit/s for a while.
    watch(
        &mut [(&mut a, &mut ta), (&mut b, &mut tb)],
        &speaker_id,
        t0,
        Duration::from_secs(15),
        |_| false,
    )
    .await;
    let steady_changes = tb.changes_since(climbed);
    let on_720_steady = tb.last().height;

    let down = t0.elapsed();
    world.net.limit_rate(&b_port, "500kbit");
    watch(
        &mut [(&mut a, &mut ta), (&mut b, &mut tb)],
        &speaker_id,
        t0,
        Duration::from_secs(10),
        |_| false,
    )
    .await;
    let up = t0.elapsed();
    world.net.limit_rate(&b_port, "3mbit");
    watch(
        &mut [(&mut a, &mut ta), (&mut b, &mut tb)],
        &speaker_id,
        t0,
        Duration::from_secs(20),
        |_| false,
    )
    .await;
    ta.print();
    tb.print();

    let left_720 = tb.first_since(down, |s| s.height > 0 && s.height <= 360);
    let back_720 = tb.settled_since(up, |s| s.height == 720);
    // At 500 kbit/s, once the step down is behind: a climb the link cannot carry, taken
    // and left again, would be two changes.
    let slow_changes = tb.changes_between(down + Duration::from_secs(3), up);
    eprintln!(
        "simulcast: climbed {climbed:?}, steady changes {steady_changes}, left 720p after the \
         step down in {left_720:?}, longest freeze after it {} ms, changes at 500 kbit/s \
         {slow_changes}, back on 720p (for good) after the step up in {back_720:?}",
        tb.longest_freeze_since(down)
    );
    let a_kept_720 = ta
        .samples
        .iter()
        .filter(|s| s.at >= climbed)
        .all(|s| s.height == 720);
    let freeze = tb.longest_freeze_since(down);
    eprintln!(
        "simulcast targets: B on 720p at 3 Mbit/s: {}; A on 720p throughout: {a_kept_720}; \
         changes while steady <= 1 in 15 s: {}; B off 720p within 3 s of the step down: {}; \
         no freeze over 500 ms after it: {}; <= 2 changes in the 7 steady s at 500 kbit/s: {}; \
         B back on 720p within 15 s of the step up: {}",
        on_720_steady == 720,
        steady_changes <= 1,
        left_720.is_some_and(|t| t <= Duration::from_secs(3)),
        freeze <= 500,
        slow_changes <= 2,
        back_720.is_some_and(|t| t <= Duration::from_secs(15)),
    );
    assert_eq!(on_720_steady, 720, "B on 720p at 3 Mbit/s");
    assert!(a_kept_720, "A, on a free link, keeps 720p throughout");
    assert!(
        steady_changes <= 1,
        "B changed layers {steady_changes} times in 15 steady s"
    );
    assert!(
        left_720.is_some_and(|t| t <= Duration::from_secs(3)),
        "B off 720p within 3 s of the step down: {left_720:?}"
    );
    // The first keyframe of the layer cut to can meet a full queue; the SFU sends a
    // second one (then 0-382 ms in every run of BENCHMARKS.md).
    assert!(
        freeze <= 500,
        "B's longest freeze after the step down: {freeze} ms"
    );
    // The target, at most 2 changes a minute at a steady rate: a climb the link turns out
    // not to carry, tried and left, is two (its keyframe was cut before it was shown, in
    // most runs: then none).
    assert!(
        slow_changes <= 2,
        "B changed layers {slow_changes} times in the 7 steady s at 500 kbit/s"
    );
    // Twelve runs in BENCHMARKS.md climbed back in 4.0-13.3 s (two steps, q to h and h
    // to f, in the slow ones).
    assert!(
        back_720.is_some_and(|t| t <= Duration::from_secs(15)),
        "B back on 720p within 15 s of the step up: {back_720:?}"
    );
    // The tile's reception mark follows: B's falls after the step down (its pictures
    // thin out and may freeze), and is good again once the link is; A's is good at the end.
    let b_marked = tb
        .samples
        .iter()
        .filter(|s| s.at >= down && s.at <= down + Duration::from_secs(3))
        .any(|s| matches!(s.reception, Some("fair" | "poor")));
    assert!(b_marked, "B's reception falls after the step down");
    assert_eq!(
        tb.last().reception,
        Some("good"),
        "B's reception at the end"
    );
    assert_eq!(
        ta.last().reception,
        Some("good"),
        "A's reception at the end"
    );
}

/// A viewer that shows the speaker small gets the small layer, bandwidth to spare or not;
/// with nobody taking the larger layers the speaker stops encoding them, and starts again
/// when a larger tile wants one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_tile_gets_the_small_layer_and_a_layer_nobody_takes_is_not_encoded() {
    let mut world = World::new();
    let server_host = world.host_at("srv", 1, true);
    let speaker_host = world.host_at("spk", 2, true);
    let viewer_host = world.host_at("vc", 3, true);
    let server = serve(&server_host, &speaker_host, "10.77.0.1", &[]).await;
    let (mut speaker, speaker_id) = server
        .bot_with(&speaker_host, "Sam", "host", &["--video", "1280x720@30"])
        .await;
    let (mut viewer, _) = server.bot_with(&viewer_host, "Cy", "viewer", &[]).await;
    join_stage(&mut speaker).await;
    wait_media(&mut viewer, &speaker_id).await;
    let tiles = |w: u32, h: u32| {
        json!({"id": 902, "call": "media.tiles",
               "tiles": [{"user_id": speaker_id, "width": w, "height": h}]})
    };
    viewer.ok(tiles(320, 180)).await;
    let t0 = tokio::time::Instant::now();
    let mut tc = Timeline::new("C");
    watch(
        &mut [(&mut viewer, &mut tc)],
        &speaker_id,
        t0,
        Duration::from_secs(10),
        |t| t[0].last().height == 180,
    )
    .await;
    assert_eq!(tc.last().height, 180, "the small tile gets 180p");
    // Nobody takes h or f now: the speaker encodes only q.
    let encoded = |stats: &Value| -> Vec<u64> {
        let layers = stats["layers"].as_array().cloned().unwrap_or_default();
        layers
            .iter()
            .map(|l| l["frames_encoded"].as_u64().unwrap_or(0))
            .collect()
    };
    let before = encoded(&speaker.ok(json!({"id": 903, "call": "media.stats"})).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = encoded(&speaker.ok(json!({"id": 904, "call": "media.stats"})).await);
    assert_eq!(before.len(), 3, "three layers: {before:?}");
    assert!(
        after[0] > before[0] + 20,
        "q is encoded: {before:?} -> {after:?}"
    );
    // The viewer may have been shown f until q's keyframe came, and the SFU names the
    // layers taken once the switch is done: a picture of f may still be on its way then.
    let stopped = |l: usize| after[l] <= before[l] + 1;
    assert!(
        stopped(1) && stopped(2),
        "h and f are not: {before:?} -> {after:?}"
    );
    // A 640x360 tile: h is encoded again, and the viewer is moved up to it (its link, a
    // free one, carries it).
    viewer.ok(tiles(640, 360)).await;
    let larger = t0.elapsed();
    watch(
        &mut [(&mut viewer, &mut tc)],
        &speaker_id,
        t0,
        Duration::from_secs(15),
        |t| t[0].last().height == 360,
    )
    .await;
    let again = encoded(&speaker.ok(json!({"id": 905, "call": "media.stats"})).await);
    assert!(
        again[1] > after[1],
        "h is encoded again: {after:?} -> {again:?}"
    );
    assert_eq!(again[2], after[2], "f still is not: {after:?} -> {again:?}");
    assert_eq!(
        tc.last().height,
        360,
        "the 640x360 tile gets 360p within 15 s: {:?}",
        tc.first_since(larger, |s| s.height == 360)
    );
}
