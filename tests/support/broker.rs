//! A real Mosquitto for the tests: its own config file, a free loopback
//! port, optional TLS and passwords; stopped and restarted on demand. Plus
//! a consumer that records what arrives, and TLS material made with rcgen.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};

/// A free TCP port on 127.0.0.1, taken below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), free when asked, and never the same
/// twice in one test process. A port from `bind(:0)` would come from the
/// ephemeral range, where every outgoing connection of the tests also takes
/// its local port: between choosing it and the broker binding it, a client
/// connecting elsewhere could take it ("Address already in use", seen in CI).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    // 10000 up to the ephemeral range; each process starts at its own place
    // (by its pid) so two test binaries running at once rarely meet.
    let low = 10000u32;
    let span = ephemeral_start.saturating_sub(low).max(1000);
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (low + (start + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {low} and {ephemeral_start}");
}

/// One mosquitto process and its files.
pub struct Broker {
    pub port: u16,
    /// A second, plaintext listener for test consumers when `port` is TLS.
    pub plain_port: u16,
    pub dir: PathBuf,
    conf: PathBuf,
    child: Option<Child>,
}

/// What the broker asks of clients.
#[derive(Default)]
pub struct BrokerOptions {
    /// (user, password) accounts; anonymous clients are refused when set.
    pub users: Vec<(String, String)>,
    /// Serve TLS on `port` with these PEM files (CA, cert, key); client
    /// certificates signed by the CA are required when the flag is set.
    pub tls: Option<(PathBuf, PathBuf, PathBuf, bool)>,
    /// Mosquitto ACL lines for the pole's listener (`port`); every client
    /// may do anything when unset. The consumers' listener has none.
    pub acl: Option<String>,
    /// The broker's `max_packet_size` (bytes), when set: it disconnects a
    /// client that sends a larger packet (and tells MQTT 5 clients).
    pub max_packet_size: Option<u32>,
    /// Keeps no messages across restarts (`persistence false`).
    pub no_persistence: bool,
}

impl Broker {
    /// Starts a plaintext broker allowing anonymous clients.
    pub fn start(dir: &Path) -> Broker {
        Self::start_with(dir, BrokerOptions::default())
    }

    pub fn start_with(dir: &Path, options: BrokerOptions) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let plain_port = free_port();
        // Run as whoever runs the tests (as root, mosquitto would otherwise
        // switch to its own user and lose access to the test's files).
        let user = Command::new("id").arg("-un").output().unwrap();
        let user = String::from_utf8_lossy(&user.stdout).trim().to_string();
        // max_queued_messages: the test consumers read as fast as they can,
        // but a burst of thousands of events can outrun one; past its queue
        // (1000 by default) the broker would drop messages for it, and the
        // test would blame the pole.
        let mut conf = format!(
            "user {user}\nper_listener_settings true\npersistence {}\npersistence_location {}/\nautosave_interval 1\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nmax_queued_messages 100000\n",
            !options.no_persistence,
            dir.display()
        );
        if let Some(max) = options.max_packet_size {
            conf += &format!("max_packet_size {max}\n");
        }
        conf += &format!("\nlistener {port} 127.0.0.1\n");
        if let Some(acl) = &options.acl {
            let path = dir.join("acl");
            std::fs::write(&path, acl).unwrap();
            conf += &format!("acl_file {}\n", path.display());
        }
        if let Some((ca, cert, key, require)) = &options.tls {
            conf += &format!(
                "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require}\n",
                ca.display(),
                cert.display(),
                key.display()
            );
        }
        if options.users.is_empty() {
            conf += "allow_anonymous true\n";
        } else {
            let passwords = dir.join("passwords");
            let _ = std::fs::remove_file(&passwords);
            for (user, password) in &options.users {
                let mut args = vec!["-b"];
                if !passwords.exists() {
                    args.push("-c");
                }
                let status = Command::new("mosquitto_passwd")
                    .args(&args)
                    .arg(&passwords)
                    .args([user, password])
                    .status()
                    .expect("mosquitto_passwd runs (tests/setup installs mosquitto)");
                assert!(status.success());
            }
            conf += &format!(
                "allow_anonymous false\npassword_file {}\n",
                passwords.display()
            );
        }
        conf += &format!("\nlistener {plain_port} 127.0.0.1\nallow_anonymous true\n");
        let path = dir.join("mosquitto.conf");
        std::fs::write(&path, conf).unwrap();
        let mut broker = Broker {
            port,
            plain_port,
            dir: dir.to_owned(),
            conf: path,
            child: None,
        };
        broker.resume();
        broker
    }

    /// Starts (again) on the same ports, and waits until it listens.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("mosquitto runs (tests/setup installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.plain_port)).is_err()
            || TcpStream::connect(("127.0.0.1", self.port)).is_err()
        {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mosquitto exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker the way a service manager does (SIGTERM), so it
    /// saves queued messages of persistent sessions.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Kills the broker without warning (SIGKILL): no goodbye to clients,
    /// nothing saved since the last autosave.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message as a consumer saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub id: u64,
    pub payload: serde_json::Value,
    /// When it arrived.
    pub at: Instant,
}

/// A consumer with a persistent session (QoS 1, clean session off) on the
/// broker's plaintext listener, recording every event in arrival order.
pub struct Consumer {
    pub received: Arc<Mutex<Vec<Received>>>,
    client: Client,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Consumer {
    pub fn start(port: u16, filter: &str) -> Consumer {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("test-consumer-{}-{port}-{n}", std::process::id());
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(options, 100);
        let received = Arc::new(Mutex::new(Vec::new()));
        let (sub, sink, filter) = (client.clone(), Arc::clone(&received), filter.to_string());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        sub.subscribe(&filter, QoS::AtLeastOnce).unwrap();
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let payload: serde_json::Value =
                            serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                        let id = payload["id"].as_u64().unwrap_or(0);
                        luciole::sync::lock(&sink).push(Received {
                            topic: p.topic.clone(),
                            id,
                            payload,
                            at: Instant::now(),
                        });
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the consumer subscribed");
        Consumer {
            received,
            client,
            thread: Some(thread),
        }
    }

    /// Events (messages with an id) received so far.
    pub fn events(&self) -> Vec<Received> {
        luciole::sync::lock(&self.received)
            .iter()
            .filter(|r| r.id > 0)
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for what was received, or panics.
    pub fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(&[Received]) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.events()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; received {} event(s)",
                self.events().len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks the delivery promises over what a consumer received: every id in
/// `expected` arrived, first arrivals are in increasing id order on each
/// topic, and a duplicate is byte-for-byte the same event.
pub fn check_delivery(received: &[Received], expected: impl IntoIterator<Item = u64>) {
    let mut first: BTreeMap<u64, &Received> = BTreeMap::new();
    let mut last_per_topic: BTreeMap<&str, u64> = BTreeMap::new();
    for r in received {
        if let Some(earlier) = first.get(&r.id) {
            assert_eq!(earlier.payload, r.payload, "duplicate id {} differs", r.id);
            assert_eq!(earlier.topic, r.topic);
            continue;
        }
        let last = last_per_topic.entry(&r.topic).or_insert(0);
        assert!(
            r.id > *last,
            "out of order on {}: {} after {}",
            r.topic,
            r.id,
            last
        );
        *last = r.id;
        first.insert(r.id, r);
    }
    let missing: Vec<u64> = expected
        .into_iter()
        .filter(|id| !first.contains_key(id))
        .collect();
    assert!(missing.is_empty(), "missing ids: {missing:?}");
}

/// PEM files for TLS: a CA, a server certificate for 127.0.0.1 signed by
/// it, and a client certificate signed by it.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub fn make_pki(dir: &Path, name: &str) -> Pki {
    make_pki_naming(dir, name, &["localhost", "127.0.0.1"])
}

/// [`make_pki`] with a server certificate naming only `names` (DNS names,
/// or IP addresses).
pub fn make_pki_naming(dir: &Path, name: &str, names: &[&str]) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    for name in names {
        server_params.subject_alt_names.push(match name.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*name).try_into().unwrap()),
        });
    }
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pole-1");
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let write = |file: &str, text: String| {
        let path = dir.join(format!("{name}-{file}"));
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
    }
}

/// The broker-side sockets of a [`Proxy`], each with its "severed" flag.
type Upstream = Arc<Mutex<Vec<(TcpStream, Arc<std::sync::atomic::AtomicBool>)>>>;

/// A loopback TCP proxy between the publisher and the broker, to break the
/// network without touching either: it can stop forwarding in both
/// directions while keeping every socket open (a partition: neither end
/// hears anything, nor is told), resume, or close its broker side only
/// (a half-open connection: the broker sees the pole leave, the pole sees
/// nothing).
pub struct Proxy {
    pub port: u16,
    forwarding: Arc<std::sync::atomic::AtomicBool>,
    /// Broker-side sockets of the connections made so far, each with its
    /// "severed" flag.
    upstream: Upstream,
    stop: Arc<std::sync::atomic::AtomicBool>,
    accepting: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Forwards 127.0.0.1:`port` (a free port) to 127.0.0.1:`target`.
    pub fn start(target: u16) -> Proxy {
        use std::sync::atomic::AtomicBool;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let forwarding = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = Arc::new(Mutex::new(Vec::new()));
        let accepting = {
            let (forwarding, stop, upstream) = (forwarding.clone(), stop.clone(), upstream.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    let severed = Arc::new(AtomicBool::new(false));
                    luciole::sync::lock(&upstream)
                        .push((server.try_clone().unwrap(), severed.clone()));
                    for (from, to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let (forwarding, stop, severed) =
                            (forwarding.clone(), stop.clone(), severed.clone());
                        std::thread::spawn(move || {
                            let mut to = to;
                            pump(from, &mut to, &forwarding, &stop);
                            let to_close = to;
                            // A severed connection stays half-open: the
                            // pole's socket is held open, silent, until
                            // the proxy stops.
                            while severed.load(std::sync::atomic::Ordering::SeqCst)
                                && !stop.load(std::sync::atomic::Ordering::SeqCst)
                            {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            let _ = to_close.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            })
        };
        Proxy {
            port,
            forwarding,
            upstream,
            stop,
            accepting: Some(accepting),
        }
    }

    /// Stops forwarding, both ways, on every connection (new ones too);
    /// nothing is closed and nothing is lost: bytes wait in the sockets.
    pub fn pause(&self) {
        self.forwarding
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.forwarding
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes the broker side of every connection made so far and leaves
    /// the pole's side open and silent.
    pub fn sever_broker_side(&self) {
        for (server, severed) in luciole::sync::lock(&self.upstream).drain(..) {
            severed.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = server.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` while forwarding; while paused, reads nothing.
/// Returns when `from` closes or fails, `to` fails, or the proxy stops.
fn pump(
    mut from: TcpStream,
    to: &mut TcpStream,
    forwarding: &std::sync::atomic::AtomicBool,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buffer = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if !forwarding.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.accepting.take() {
            let _ = thread.join();
        }
    }
}
