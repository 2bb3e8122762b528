//! `luciole fleet`: the integrator's end of remote operations.
//!
//! - `keygen` makes an Ed25519 key pair: `NAME.key` (the private key, mode
//!   0600, never to leave the integrator's machine) and `NAME.pub`, and
//!   prints the `[[remote.keys]]` entry a pole needs.
//! - `send` signs a command and publishes it to one pole, a list, or a
//!   whole site (`--all`: one site-wide order, answered by every pole the
//!   retained presence says is online), then prints one JSON line per pole
//!   as answers come (`ok`, and `error` when refused), with a timeout.
//! - `status` shows the fleet: the retained presence of every pole of a
//!   site and, with `--key`, each online pole's answer to `status`.
//!
//! It speaks MQTT 5: the response topic and correlation data go in the
//! publish's properties, and the same in the envelope for poles connected
//! with MQTT 3.1.1.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{Client, Event, MqttOptions};
use serde_json::json;

use luciole::remote::{self, Envelope, Order, Response, ORDER_VERSION};

#[derive(Debug, Subcommand)]
pub enum Fleet {
    /// Make a key pair: NAME.key (private, 0600) and NAME.pub in --out, and
    /// print the pole's [[remote.keys]] entry for it.
    Keygen {
        /// The key's name, as poles list it.
        #[arg(long)]
        name: String,
        /// The role poles should give it: operator or integrator.
        #[arg(long, default_value = "integrator")]
        role: String,
        /// Folder to write the two files into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Sign and send a command; one JSON line per pole's answer.
    Send {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        signer: SignerArgs,
        /// The poles' site.
        #[arg(long)]
        site: String,
        /// A pole to address (repeat for a list).
        #[arg(long = "device", required_unless_present = "all")]
        devices: Vec<String>,
        /// Every pole of the site (the ones online answer).
        #[arg(long, conflicts_with = "devices")]
        all: bool,
        /// Seconds to wait for the answers.
        #[arg(long, default_value_t = 10.0)]
        timeout: f64,
        /// Seconds the order stays valid (poles refuse it after).
        #[arg(long, default_value_t = 300)]
        ttl: u64,
        /// An argument KEY=VALUE (VALUE read as JSON when it is, else as
        /// text); repeat for more.
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
        /// An argument whose value is a file's text, KEY=FILE (e.g.
        /// config=pole.toml for config.apply).
        #[arg(long = "arg-file", value_name = "KEY=FILE")]
        arg_files: Vec<String>,
        /// Folder where the pictures a `snapshot` command publishes are
        /// saved (`<device>-<time>.jpg`, 0600); without it they are not
        /// received.
        #[arg(long, value_name = "DIR")]
        save: Option<PathBuf>,
        /// status, config.get, config.apply, light.override, update.install,
        /// restart or snapshot.
        command: String,
    },
    /// A table of the site's poles: presence, and with --key each online
    /// pole's version, slot, frame rate, outbox depth and last event.
    Status {
        #[command(flatten)]
        broker: BrokerArgs,
        /// Sign a `status` command with this key to ask the online poles.
        #[arg(long)]
        key: Option<PathBuf>,
        /// The key's name (default: the key file's name without .key).
        #[arg(long)]
        key_name: Option<String>,
        #[arg(long)]
        site: String,
        /// Seconds to listen.
        #[arg(long, default_value_t = 3.0)]
        wait: f64,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// mqtt://HOST:PORT, or mqtts://HOST:PORT with --ca.
    #[arg(long)]
    broker: String,
    /// PEM file of the CA that signed the broker's certificate.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long)]
    username: Option<String>,
    /// File whose first line is the password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The poles' `mqtt.topic_prefix`.
    #[arg(long, default_value = "luciole")]
    prefix: String,
}

#[derive(Debug, Args)]
pub struct SignerArgs {
    /// The private key file `fleet keygen` wrote.
    #[arg(long)]
    key: PathBuf,
    /// The key's name (default: the key file's name without .key).
    #[arg(long)]
    key_name: Option<String>,
}

pub fn run(fleet: Fleet) -> anyhow::Result<ExitCode> {
    match fleet {
        Fleet::Keygen { name, role, out } => keygen(&name, &role, &out),
        Fleet::Send {
            broker,
            signer,
            site,
            devices,
            all,
            timeout,
            ttl,
            args,
            arg_files,
            save,
            command,
        } => {
            let args = arguments(&args, &arg_files)?;
            let signer = Signer::read(&signer.key, signer.key_name.as_deref())?;
            let targets = if all { None } else { Some(devices) };
            let mut link = Link::connect(&broker)?;
            let answers = send(
                &mut link,
                &signer,
                &site,
                targets,
                &command,
                args,
                Duration::from_secs_f64(timeout),
                ttl,
                true,
                save.as_deref(),
            )?;
            let all_ok = answers.iter().all(|a| a["ok"] == true);
            Ok(if all_ok && !answers.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Fleet::Status {
            broker,
            key,
            key_name,
            site,
            wait,
            json,
        } => status(
            &broker,
            key.as_deref(),
            key_name.as_deref(),
            &site,
            wait,
            json,
        ),
    }
}

fn keygen(name: &str, role: &str, out: &Path) -> anyhow::Result<ExitCode> {
    if !matches!(role, "operator" | "integrator") {
        anyhow::bail!("--role {role:?}: must be operator or integrator");
    }
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        anyhow::bail!("--name {name:?}: 1 to 64 letters, digits, '-', '_' or '.'");
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let key = remote::generate_key()?;
    let private = out.join(format!("{name}.key"));
    let public = out.join(format!("{name}.pub"));
    // Created 0600 and never overwritten: a key in use is not replaced by
    // mistake.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private)
        .with_context(|| format!("{}: cannot create (it must not exist)", private.display()))?;
    writeln!(file, "{}", remote::private_key_text(&key))
        .and_then(|_| file.sync_all())
        .with_context(|| format!("{}: cannot write", private.display()))?;
    let public_text = remote::public_key_text(&key.verifying_key());
    std::fs::write(&public, format!("{public_text}\n"))
        .with_context(|| format!("{}: cannot write", public.display()))?;
    eprintln!(
        "wrote {} (private: keep it on this machine) and {}",
        private.display(),
        public.display()
    );
    println!(
        "[[remote.keys]]\nname = \"{name}\"\nrole = \"{role}\"\npublic_key = \"{public_text}\""
    );
    Ok(ExitCode::SUCCESS)
}

/// A private key and the name poles know it by.
struct Signer {
    name: String,
    key: ed25519_dalek::SigningKey,
}

impl Signer {
    fn read(path: &Path, name: Option<&str>) -> anyhow::Result<Signer> {
        use std::os::unix::fs::PermissionsExt;
        let meta =
            std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            anyhow::bail!(
                "{}: a private key must be readable by its owner only (chmod 600)",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let key =
            remote::private_key(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let name = match name {
            Some(name) => name.to_string(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .ok_or_else(|| anyhow::anyhow!("{}: give --key-name", path.display()))?,
        };
        Ok(Signer { name, key })
    }
}

/// The command's arguments from `--arg` and `--arg-file`.
fn arguments(args: &[String], files: &[String]) -> anyhow::Result<serde_json::Value> {
    let mut object = serde_json::Map::new();
    for arg in args {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--arg {arg:?}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
        object.insert(key.to_string(), value);
    }
    for arg in files {
        let (key, file) = arg
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--arg-file {arg:?}: expected KEY=FILE"))?;
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("--arg-file {file}: cannot read"))?;
        object.insert(key.to_string(), json!(text));
    }
    Ok(serde_json::Value::Object(object))
}

/// A connection to the broker, its incoming publishes on a channel.
struct Link {
    client: Client,
    incoming: crossbeam_channel::Receiver<rumqttc::v5::mqttbytes::v5::Publish>,
    subscribed: crossbeam_channel::Receiver<()>,
    prefix: String,
    /// A random name for this run: answers come on
    /// `<prefix>/<site>/fleet/<tag>/reply`.
    tag: String,
}

impl Link {
    fn connect(args: &BrokerArgs) -> anyhow::Result<Link> {
        let (tls, rest) = match args.broker.split_once("://") {
            Some(("mqtt", rest)) => (false, rest),
            Some(("mqtts", rest)) => (true, rest),
            _ => anyhow::bail!(
                "--broker {:?}: expected mqtt://HOST:PORT or mqtts://HOST:PORT",
                args.broker
            ),
        };
        let (host, port) = rest
            .trim_end_matches('/')
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("--broker {:?}: expected HOST:PORT", args.broker))?;
        let tag = remote::new_nonce()?;
        let mut options = MqttOptions::new(format!("luciole-fleet-{}", &tag[..12]), host, port);
        options
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_connection_timeout(5)
            // Snapshots are pictures of some 100 KB.
            .set_max_packet_size(Some(4 << 20));
        if tls {
            let ca = args
                .ca
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("mqtts:// needs --ca"))?;
            let ca =
                std::fs::read(ca).with_context(|| format!("--ca {}: cannot read", ca.display()))?;
            options.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca,
                alpn: None,
                client_auth: None,
            }));
        }
        if let Some(user) = &args.username {
            let password = match &args.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .with_context(|| format!("--password-file {}: cannot read", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
                None => String::new(),
            };
            options.set_credentials(user, password);
        }
        let (client, mut connection) = Client::new(options, 256);
        let (tx, incoming) = crossbeam_channel::unbounded();
        let (ready_tx, ready) = crossbeam_channel::bounded(1);
        let (sub_tx, subscribed) = crossbeam_channel::unbounded();
        let broker = args.broker.clone();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        let _ = ready_tx.try_send(Ok(()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(publish))) => {
                        if tx.send(publish).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let _ = ready_tx.try_send(Err(format!("{broker}: {err}")));
                        return;
                    }
                }
            }
        });
        match ready.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => anyhow::bail!("cannot connect: {err}"),
            Err(_) => anyhow::bail!("{}: no answer to the connection", args.broker),
        }
        Ok(Link {
            client,
            incoming,
            subscribed,
            prefix: args.prefix.clone(),
            tag: tag[..16].to_string(),
        })
    }

    /// Subscribes and waits for the broker's acknowledgement.
    fn subscribe(&mut self, filter: &str) -> anyhow::Result<()> {
        self.client.subscribe(filter, QoS::AtLeastOnce)?;
        self.subscribed
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| {
                anyhow::anyhow!("{filter}: the broker did not acknowledge the subscription")
            })
    }

    /// The poles of `site` by their retained presence: device → online.
    fn presence(&mut self, site: &str, wait: Duration) -> anyhow::Result<BTreeMap<String, bool>> {
        self.subscribe(&format!("{}/{site}/+/status", self.prefix))?;
        let mut poles = BTreeMap::new();
        let end = Instant::now() + wait;
        // Retained messages come right after the acknowledgement; stop when
        // they have stopped for a moment.
        while let Ok(publish) = self.incoming.recv_timeout(
            Duration::from_millis(300).min(end.saturating_duration_since(Instant::now())),
        ) {
            let topic = String::from_utf8_lossy(&publish.topic).into_owned();
            let Some(device) = topic.split('/').rev().nth(1) else {
                continue;
            };
            let state: serde_json::Value =
                serde_json::from_slice(&publish.payload).unwrap_or_default();
            poles.insert(device.to_string(), state["state"] == "online");
        }
        Ok(poles)
    }
}

/// Sends `command` to `targets` (None: the whole site) and collects the
/// answers, printing each as a JSON line when `print` is set.
#[allow(clippy::too_many_arguments)]
fn send(
    link: &mut Link,
    signer: &Signer,
    site: &str,
    targets: Option<Vec<String>>,
    command: &str,
    args: serde_json::Value,
    timeout: Duration,
    ttl: u64,
    print: bool,
    save: Option<&Path>,
) -> anyhow::Result<Vec<serde_json::Value>> {
    // Poles answer only under their site's `fleet/<id>/reply`.
    let reply_topic = format!("{}/{site}/fleet/{}/reply", link.prefix, link.tag);
    link.subscribe(&reply_topic)?;
    // A pole publishes its snapshot just before it answers.
    if let Some(dir) = save {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--save {}: cannot create", dir.display()))?;
        link.subscribe(&format!("{}/{site}/+/snapshot", link.prefix))?;
    }
    let mut pictures: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let (expected, orders): (BTreeSet<String>, Vec<(String, Order)>) = match targets {
        Some(devices) => (
            devices.iter().cloned().collect(),
            devices
                .iter()
                .map(|device| {
                    Ok((
                        format!("{}/{site}/{device}/cmd/{command}", link.prefix),
                        order(signer, site, device, command, &args, ttl)?,
                    ))
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        None => {
            let online: BTreeSet<String> = link
                .presence(site, Duration::from_secs(2))?
                .into_iter()
                .filter_map(|(device, online)| online.then_some(device))
                .collect();
            (
                online,
                vec![(
                    format!("{}/{site}/cmd/{command}", link.prefix),
                    order(signer, site, remote::EVERY_DEVICE, command, &args, ttl)?,
                )],
            )
        }
    };
    if expected.is_empty() {
        if print {
            eprintln!("no pole of site {site} is online (by its retained presence): nothing sent");
        }
        return Ok(Vec::new());
    }
    let correlation = remote::new_nonce()?;
    let started = Instant::now();
    for (topic, order) in &orders {
        let mut envelope: Envelope = remote::sign(order, &signer.key);
        envelope.reply_to = Some(reply_topic.clone());
        envelope.correlation = Some(correlation.clone());
        let properties = PublishProperties {
            response_topic: Some(reply_topic.clone()),
            correlation_data: Some(correlation.clone().into_bytes().into()),
            ..Default::default()
        };
        link.client.publish_with_properties(
            topic.clone(),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&envelope)?,
            properties,
        )?;
    }
    let mut answers: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let deadline = started + timeout;
    while answers.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(publish) = link.incoming.recv_timeout(left) else {
            break;
        };
        if publish.topic.ends_with(b"/snapshot") {
            let topic = String::from_utf8_lossy(&publish.topic).into_owned();
            if let Some(device) = topic.split('/').rev().nth(1) {
                pictures.insert(device.to_string(), publish.payload.to_vec());
            }
            continue;
        }
        if publish.topic != reply_topic.as_bytes() {
            continue;
        }
        let Ok(response) = serde_json::from_slice::<Response>(&publish.payload) else {
            continue;
        };
        if response.correlation.as_deref() != Some(correlation.as_str())
            || response.site != site
            || !expected.contains(&response.device)
            || answers.contains_key(&response.device)
        {
            continue;
        }
        let mut line = serde_json::to_value(&response)?;
        line["latency_ms"] = json!(started.elapsed().as_millis() as u64);
        if let Some(object) = line.as_object_mut() {
            object.remove("correlation");
        }
        if let (Some(dir), Some(sha256)) = (
            save,
            response.result.as_ref().and_then(|r| r["sha256"].as_str()),
        ) {
            line["saved"] = match save_picture(
                dir,
                &response.device,
                sha256,
                pictures.remove(&response.device),
            ) {
                Ok(path) => json!(path),
                Err(err) => json!({"error": err}),
            };
        }
        if print {
            println!("{line}");
            eprint!("\r{}/{} answered", answers.len() + 1, expected.len());
        }
        answers.insert(response.device.clone(), line);
    }
    if print {
        eprintln!();
    }
    for device in expected.difference(&answers.keys().cloned().collect()) {
        let line = json!({
            "site": site,
            "device": device,
            "command": command,
            "ok": false,
            "error": {"code": "timeout", "message": format!("no answer within {} s", timeout.as_secs_f64())},
        });
        if print {
            println!("{line}");
        }
        answers.insert(device.clone(), line);
    }
    Ok(answers.into_values().collect())
}

/// Writes a pole's snapshot into `dir` (0600) when its hash is the one the
/// pole's answer gives; its path, or why not.
fn save_picture(
    dir: &Path,
    device: &str,
    sha256: &str,
    picture: Option<Vec<u8>>,
) -> Result<PathBuf, String> {
    let picture = picture.ok_or("the picture did not arrive (published once, at QoS 0)")?;
    let got = luciole::detect::manifest::sha256_hex(&picture);
    if got != sha256 {
        return Err(format!(
            "the picture's sha256 is {got}, the answer says {sha256}"
        ));
    }
    let time = super::file_stamp(luciole::events::now_ms());
    let path = dir.join(format!("{device}-{time}.jpg"));
    super::private_file(&path)
        .and_then(|mut f| f.write_all(&picture))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}

fn order(
    signer: &Signer,
    site: &str,
    device: &str,
    command: &str,
    args: &serde_json::Value,
    ttl: u64,
) -> anyhow::Result<Order> {
    let now = luciole::events::now_ms() as i64;
    Ok(Order {
        v: ORDER_VERSION,
        command: command.to_string(),
        args: args.clone(),
        site: site.to_string(),
        device: device.to_string(),
        nonce: remote::new_nonce()?,
        issued_ms: now,
        expires_ms: now + (ttl * 1000) as i64,
        key: signer.name.clone(),
    })
}

fn status(
    broker: &BrokerArgs,
    key: Option<&Path>,
    key_name: Option<&str>,
    site: &str,
    wait: f64,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let mut link = Link::connect(broker)?;
    let wait = Duration::from_secs_f64(wait);
    let presence = link.presence(site, wait.min(Duration::from_secs(2)))?;
    let mut answers = BTreeMap::new();
    if let Some(key) = key {
        let signer = Signer::read(key, key_name)?;
        let online: Vec<String> = presence
            .iter()
            .filter(|(_, online)| **online)
            .map(|(d, _)| d.clone())
            .collect();
        if !online.is_empty() {
            for answer in send(
                &mut link,
                &signer,
                site,
                Some(online),
                "status",
                json!({}),
                wait,
                60,
                false,
                None,
            )? {
                if let Some(device) = answer["device"].as_str() {
                    answers.insert(device.to_string(), answer);
                }
            }
        }
    }
    let rows: Vec<serde_json::Value> = presence
        .iter()
        .map(|(device, online)| {
            let answer = answers.get(device);
            let result = answer.map(|a| &a["result"]);
            let pick = |path: &[&str]| {
                let mut value = result?;
                for key in path {
                    value = value.get(key)?;
                }
                (!value.is_null()).then(|| value.clone())
            };
            json!({
                "device": device,
                "online": online,
                "answered": answer.is_some_and(|a| a["ok"] == true),
                "version": pick(&["version"]),
                "slot": pick(&["slot"]),
                "fps": pick(&["health", "fps"]),
                "outbox_depth": pick(&["health", "outbox_depth"]),
                "last_event": pick(&["last_event"]),
            })
        })
        .collect();
    if as_json {
        println!("{}", json!({"site": site, "poles": rows}));
    } else {
        println!(
            "{:<20} {:<8} {:<10} {:<6} {:>6} {:>8}  last event",
            "device", "online", "version", "slot", "fps", "outbox"
        );
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::Null => "-".to_string(),
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        for row in &rows {
            let last = &row["last_event"];
            let last = if last.is_null() {
                "-".to_string()
            } else {
                format!("{} {}", text(&last["kind"]), text(&last["time"]))
            };
            println!(
                "{:<20} {:<8} {:<10} {:<6} {:>6} {:>8}  {}",
                text(&row["device"]),
                if row["online"] == true { "yes" } else { "no" },
                text(&row["version"]),
                text(&row["slot"]),
                text(&row["fps"]),
                text(&row["outbox_depth"]),
                last
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
