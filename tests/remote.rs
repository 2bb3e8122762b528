//! Remote operations against a real Mosquitto: the real `luciole run`
//! daemons (replaying real footage) take signed commands sent by the real
//! `luciole fleet` tool, or crafted here to be wrong in every way a command
//! can be; their answers and `audit` events are read off the broker.

#[path = "support/broker.rs"]
mod broker;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::{Broker, Consumer};
use luciole::remote::{self, Envelope, Order, ORDER_VERSION};
use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
use sha2::{Digest, Sha256};
use support::{footage, luciole, scratch, stderr, stdout};

const SITE: &str = "lyon";

/// A few real frames as a JPEG folder (cheap to replay in a loop).
fn frames(dir: &Path) -> PathBuf {
    let out = dir.join("frames");
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(footage().join("vtest.avi"))
        .args(["-frames:v", "6", "-vf", "scale=320:-2", "-q:v", "5"])
        .arg(out.join("f%02d.jpg"))
        .status()
        .expect("ffmpeg runs");
    assert!(status.success());
    out
}

/// Key pairs made by `luciole fleet keygen`: `ops` (operator) and
/// `installer` (integrator), and the `[[remote.keys]]` lines for them.
struct Keys {
    dir: PathBuf,
    entries: String,
}

impl Keys {
    fn make(dir: &Path) -> Keys {
        let dir = dir.join("keys");
        let mut entries = String::new();
        for (name, role) in [("ops", "operator"), ("installer", "integrator")] {
            let out = luciole()
                .args(["fleet", "keygen", "--name", name, "--role", role, "--out"])
                .arg(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", stderr(&out));
            entries += &stdout(&out);
            entries += "\n";
        }
        Keys { dir, entries }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn signing(&self, name: &str) -> ed25519_dalek::SigningKey {
        remote::private_key(&std::fs::read_to_string(self.path(name)).unwrap()).unwrap()
    }
}

/// One pole: its configuration and its daemon.
struct Pole {
    dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
}

/// A pole's configuration: replayed frames in a loop, a simulated lamp
/// (with `lamp`), and the keys.
fn config_text(
    device: &str,
    dir: &Path,
    frames: &Path,
    port: u16,
    keys: &Keys,
    extra: &str,
) -> String {
    format!(
        r#"[device]
site = "{SITE}"
id = "{device}"

[camera]
source = "replay"
fps = 4
[camera.replay]
path = "{frames}"
pace = "realtime"
loop = true

[events]
health_interval_ms = 1000

[outbox]
path = "{dir}/outbox"

[mqtt]
host = "127.0.0.1"
port = {port}
tls = false
{extra}
[remote]
state_dir = "{dir}/remote"
apply_timeout_s = 10

{keys}"#,
        frames = frames.display(),
        dir = dir.display(),
        keys = keys.entries,
    )
}

const LAMP: &str = r#"
[lighting]
schedule = { on = "00:00", off = "24:00", timezone = "UTC" }
night_pct = 30.0
ramp_up_ms = 0
fade_s = 0

[lighting.relay]
backend = "simulated"

[lighting.dimmer]
backend = "simulated"
state_file = "DIMMER"
"#;

impl Pole {
    fn start(device: &str, root: &Path, text: impl Fn(&Path) -> String) -> Pole {
        let dir = root.join(device);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("pole.toml");
        std::fs::write(&config, text(&dir)).unwrap();
        let child = luciole()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .spawn()
            .unwrap();
        Pole {
            dir,
            config,
            child: Some(child),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Waits for the daemon to exit on its own; its exit status.
    fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Pole {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

/// Waits until the consumer saw `device` online (its presence is retained).
fn wait_online(port: u16, devices: &[&str]) {
    let presence = Consumer::start(port, &format!("luciole/{SITE}/+/status"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = luciole::sync::lock(&presence.received).clone();
        let online = |d: &&str| {
            seen.iter()
                .rev()
                .find(|r| r.topic == format!("luciole/{SITE}/{d}/status"))
                .is_some_and(|r| r.payload["state"] == "online")
        };
        if devices.iter().all(online) {
            return;
        }
        assert!(Instant::now() < deadline, "not all online: {seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `luciole fleet ARGS` against the broker; the JSON lines it printed
/// and its exit status.
fn fleet(port: u16, args: &[&str]) -> (Vec<serde_json::Value>, bool, String) {
    let out = luciole()
        .arg("fleet")
        .arg(args[0])
        .args(["--broker", &format!("mqtt://127.0.0.1:{port}")])
        .args(&args[1..])
        .output()
        .unwrap();
    let lines = stdout(&out)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, out.status.success(), stdout(&out) + &stderr(&out))
}

fn send(
    port: u16,
    keys: &Keys,
    key: &str,
    device: &str,
    command: &str,
    extra: &[&str],
) -> serde_json::Value {
    let key = keys.path(key);
    let mut args = vec![
        "send",
        "--key",
        key.to_str().unwrap(),
        "--site",
        SITE,
        "--device",
        device,
    ];
    if !extra.contains(&"--timeout") {
        args.extend_from_slice(&["--timeout", "15"]);
    }
    args.extend_from_slice(extra);
    args.push(command);
    let (lines, _, text) = fleet(port, &args);
    assert_eq!(lines.len(), 1, "{text}");
    lines.into_iter().next().unwrap()
}

/// Audit events the consumer received, as (command, outcome, code).
fn audits(consumer: &Consumer) -> Vec<(String, String, String)> {
    consumer
        .events()
        .iter()
        .filter(|r| r.payload["kind"] == "audit")
        .map(|r| {
            let d = &r.payload["data"];
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
            (text(&d["command"]), text(&d["outcome"]), text(&d["code"]))
        })
        .collect()
}

fn sha256(path: &Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The simulated dimmer's level, once it equals `level`.
fn wait_dimmer(file: &Path, level: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state: serde_json::Value = std::fs::read_to_string(file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if state["level"].as_f64() == Some(level) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "dimmer at {state}, expected {level}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_command_works_through_a_real_broker_over_mqtt_5() {
    let root = scratch("remote-commands");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let consumer = Consumer::start(
        broker.plain_port,
        &format!("luciole/{SITE}/pole-1/events/#"),
    );
    let mut pole = Pole::start("pole-1", &root, |dir| {
        config_text(
            "pole-1",
            dir,
            &frames,
            broker.port,
            &keys,
            &format!(
                "protocol = \"5\"\n{}",
                LAMP.replace("DIMMER", &dir.join("dimmer.json").display().to_string())
            ),
        )
    });
    wait_online(broker.plain_port, &["pole-1"]);
    let dimmer = pole.dir.join("dimmer.json");

    // status: version and the configuration's hash.
    let status = send(broker.plain_port, &keys, "ops", "pole-1", "status", &[]);
    assert_eq!(status["ok"], true, "{status}");
    assert_eq!(status["result"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["result"]["config_sha256"], sha256(&pole.config));
    assert_eq!(status["result"]["lamp"], true);
    let mut round_trips: Vec<u64> = (0..10)
        .map(|_| {
            send(broker.plain_port, &keys, "ops", "pole-1", "status", &[])["latency_ms"]
                .as_u64()
                .unwrap()
        })
        .collect();
    round_trips.sort();
    eprintln!(
        "status round trip over MQTT 5 (10 runs): min {} ms, median {} ms, max {} ms",
        round_trips[0], round_trips[5], round_trips[9]
    );

    // config.get: the file as it is.
    let got = send(broker.plain_port, &keys, "ops", "pole-1", "config.get", &[]);
    assert_eq!(
        got["result"]["config"],
        std::fs::read_to_string(&pole.config).unwrap()
    );

    // light.override, then cancelled: the lamp follows, `light` events say why.
    wait_dimmer(&dimmer, 0.3);
    let over = send(
        broker.plain_port,
        &keys,
        "ops",
        "pole-1",
        "light.override",
        &["--arg", "level=65", "--arg", "minutes=5"],
    );
    assert_eq!(over["ok"], true, "{over}");
    wait_dimmer(&dimmer, 0.65);
    let cancel = send(
        broker.plain_port,
        &keys,
        "ops",
        "pole-1",
        "light.override",
        &["--arg", "cancel=true"],
    );
    assert_eq!(cancel["ok"], true, "{cancel}");
    wait_dimmer(&dimmer, 0.3);
    consumer.wait_for(Duration::from_secs(10), "a manual light event", |r| {
        r.iter()
            .any(|e| e.payload["kind"] == "light" && e.payload["data"]["reason"] == "manual")
    });

    // config.apply: an invalid file is refused with its problems, and
    // nothing changes; a dry run changes nothing either.
    let before = std::fs::read(&pole.config).unwrap();
    let bad = send(
        broker.plain_port,
        &keys,
        "installer",
        "pole-1",
        "config.apply",
        &[
            "--arg",
            "partial=true",
            "--arg",
            "config=[camera]\nfps = 0\n",
        ],
    );
    assert_eq!(bad["ok"], false, "{bad}");
    assert_eq!(bad["error"]["code"], "invalid_config");
    assert!(
        bad["error"]["problems"][0]
            .as_str()
            .unwrap()
            .contains("camera.fps = 0"),
        "{bad}"
    );
    let dry = send(
        broker.plain_port,
        &keys,
        "installer",
        "pole-1",
        "config.apply",
        &[
            "--arg",
            "partial=true",
            "--arg",
            "dry_run=true",
            "--arg",
            "config=[events]\nhealth_interval_ms = 1500\n",
        ],
    );
    assert_eq!(
        (dry["ok"].clone(), dry["result"]["applied"].clone()),
        (true.into(), false.into()),
        "{dry}"
    );
    assert_eq!(std::fs::read(&pole.config).unwrap(), before);
    // An operator may not apply.
    let denied = send(
        broker.plain_port,
        &keys,
        "ops",
        "pole-1",
        "config.apply",
        &["--arg", "config=x"],
    );
    assert_eq!(denied["error"]["code"], "forbidden", "{denied}");

    // A partial change is written, applied and confirmed; comments stay.
    let applied = send(
        broker.plain_port,
        &keys,
        "installer",
        "pole-1",
        "config.apply",
        &[
            "--arg",
            "partial=true",
            "--arg",
            "config=[events]\nhealth_interval_ms = 1500\n",
        ],
    );
    assert_eq!(applied["ok"], true, "{applied}\n{}", pole.log());
    let now = std::fs::read_to_string(&pole.config).unwrap();
    assert!(now.contains("health_interval_ms = 1500"), "{now}");
    assert_eq!(applied["result"]["sha256"], sha256(&pole.config));
    assert!(!pole.dir.join("remote/apply.pending").exists());

    // restart: answered, then the daemon stops cleanly (systemd restarts it).
    let restart = send(
        broker.plain_port,
        &keys,
        "installer",
        "pole-1",
        "restart",
        &[],
    );
    assert_eq!(restart["ok"], true, "{restart}");
    assert!(
        pole.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        pole.log()
    );

    consumer.wait_for(Duration::from_secs(10), "the last audit", |r| {
        r.iter()
            .any(|e| e.payload["kind"] == "audit" && e.payload["data"]["command"] == "restart")
    });
    let audits = audits(&consumer);
    for expected in [
        ("status", "done", ""),
        ("config.get", "done", ""),
        ("light.override", "done", ""),
        ("config.apply", "failed", "invalid_config"),
        ("config.apply", "refused", "forbidden"),
        ("config.apply", "accepted", ""),
        ("config.apply", "done", ""),
        ("restart", "done", ""),
    ] {
        let found = audits
            .iter()
            .any(|(c, o, k)| (c.as_str(), o.as_str(), k.as_str()) == expected);
        assert!(found, "no audit {expected:?} in {audits:?}");
    }
    // Audit events match their schema, and never carry a command's arguments.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo().join("appliance/schemas/audit.json")).unwrap(),
    )
    .unwrap();
    let schema = jsonschema::validator_for(&schema).unwrap();
    for event in consumer
        .events()
        .iter()
        .filter(|e| e.payload["kind"] == "audit")
    {
        assert!(schema.is_valid(&event.payload), "{}", event.payload);
        let text = event.payload.to_string();
        assert!(
            !text.contains("health_interval_ms") && !text.contains("fps = 0"),
            "{text}"
        );
    }
}

/// A raw MQTT 3.1.1 client that publishes crafted commands and reads the
/// answers on its reply topic.
struct Raw {
    client: Client,
    answers: crossbeam_channel::Receiver<serde_json::Value>,
}

impl Raw {
    fn connect(port: u16, reply: &str) -> Raw {
        let mut options =
            MqttOptions::new(format!("raw-{}", std::process::id()), "127.0.0.1", port);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(options, 64);
        let (tx, answers) = crossbeam_channel::unbounded();
        let (ready_tx, ready) = crossbeam_channel::bounded(1);
        let (sub, reply) = (client.clone(), reply.to_string());
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        sub.subscribe(&reply, QoS::AtLeastOnce).unwrap()
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send(serde_json::from_slice(&p.payload).unwrap_or_default());
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        ready.recv_timeout(Duration::from_secs(10)).unwrap();
        Raw { client, answers }
    }

    fn ask(&self, topic: &str, payload: Vec<u8>) -> serde_json::Value {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
        self.answers
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no answer on {topic}"))
    }
}

#[test]
fn every_wrong_command_is_refused_audited_and_changes_nothing_over_mqtt_3_1_1() {
    let root = scratch("remote-refusals");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let consumer = Consumer::start(
        broker.plain_port,
        &format!("luciole/{SITE}/pole-1/events/audit"),
    );
    let pole = Pole::start("pole-1", &root, |dir| {
        config_text("pole-1", dir, &frames, broker.port, &keys, "")
    });
    wait_online(broker.plain_port, &["pole-1"]);
    let before = std::fs::read(&pole.config).unwrap();
    let reply = "luciole/lyon/fleet/test/reply";
    let raw = Raw::connect(broker.plain_port, reply);
    let now = luciole::events::now_ms() as i64;
    let order = |command: &str, key: &str, device: &str, nonce: &str| Order {
        v: ORDER_VERSION,
        command: command.into(),
        args: serde_json::json!({}),
        site: SITE.into(),
        device: device.into(),
        nonce: format!("test-nonce-{nonce:0>8}"),
        issued_ms: now - 1000,
        expires_ms: now + 60_000,
        key: key.into(),
    };
    let envelope = |order: &Order, signer: &str| {
        let mut e: Envelope = remote::sign(order, &keys.signing(signer));
        e.reply_to = Some(reply.into());
        e.correlation = Some(order.nonce.clone());
        serde_json::to_vec(&e).unwrap()
    };
    let topic = |command: &str| format!("luciole/{SITE}/pole-1/cmd/{command}");

    let good = envelope(&order("status", "ops", "pole-1", "1"), "ops");
    let first = raw.ask(&topic("status"), good.clone());
    assert_eq!(
        (first["ok"].clone(), first["correlation"].clone()),
        (true.into(), "test-nonce-00000001".into()),
        "{first}"
    );
    let mut cases: Vec<(&str, Vec<u8>, &str)> = vec![("replayed", good, "status")];
    cases.push((
        "bad_signature",
        envelope(&order("status", "ops", "pole-1", "2"), "installer"),
        "status",
    ));
    cases.push((
        "unknown_key",
        envelope(&order("status", "mallory", "pole-1", "3"), "ops"),
        "status",
    ));
    let mut expired = order("status", "ops", "pole-1", "4");
    expired.issued_ms = now - 120_000;
    expired.expires_ms = now - 60_000;
    cases.push(("expired", envelope(&expired, "ops"), "status"));
    cases.push((
        "forbidden",
        envelope(&order("restart", "ops", "pole-1", "5"), "ops"),
        "restart",
    ));
    let mut apply = order("config.apply", "ops", "pole-1", "6");
    apply.args = serde_json::json!({"config": "[device]\nsite = \"x\"\n"});
    cases.push(("forbidden", envelope(&apply, "ops"), "config.apply"));
    let mut malformed = serde_json::json!({"signed": "%%%", "signature": "", "reply_to": reply});
    cases.push((
        "malformed",
        serde_json::to_vec(&malformed).unwrap(),
        "status",
    ));
    malformed["signed"] = "not base64 at all!".into();
    cases.push((
        "malformed",
        serde_json::to_vec(&malformed).unwrap(),
        "status",
    ));
    let mut big = order("config.apply", "installer", "pole-1", "7");
    big.args = serde_json::json!({"config": "#".repeat(80_000)});
    cases.push(("oversized", envelope(&big, "installer"), "config.apply"));
    let mut bad_args = order("light.override", "ops", "pole-1", "8");
    bad_args.args = serde_json::json!({"level": 250, "minutes": 5});
    cases.push((
        "bad_arguments",
        envelope(&bad_args, "ops"),
        "light.override",
    ));
    for (code, payload, command) in cases {
        let answer = raw.ask(&topic(command), payload);
        assert_eq!(answer["ok"], false, "{code}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert_eq!(answer["device"], "pole-1");
    }
    // Addressed to another pole: published where this pole listens, and
    // refused; on its own topic this pole never sees it.
    let other = raw.ask(
        &format!("luciole/{SITE}/cmd/status"),
        envelope(&order("status", "ops", "pole-2", "9"), "ops"),
    );
    assert_eq!(other["error"]["code"], "wrong_target", "{other}");

    // Nothing changed, the pole still answers, and each refusal was audited.
    assert_eq!(std::fs::read(&pole.config).unwrap(), before);
    let after = raw.ask(
        &topic("status"),
        envelope(&order("status", "ops", "pole-1", "10"), "ops"),
    );
    assert_eq!(after["ok"], true, "{after}");
    consumer.wait_for(Duration::from_secs(10), "every audit", |r| r.len() >= 13);
    let codes: Vec<String> = audits(&consumer)
        .into_iter()
        .filter(|a| a.1 == "refused")
        .map(|a| a.2)
        .collect();
    for code in [
        "replayed",
        "bad_signature",
        "unknown_key",
        "expired",
        "forbidden",
        "malformed",
        "oversized",
        "bad_arguments",
        "wrong_target",
    ] {
        assert!(
            codes.iter().any(|c| c == code),
            "no refusal audited as {code}: {codes:?}"
        );
    }
    assert!(
        pole.log().contains("remote command refused"),
        "{}",
        pole.log()
    );
}

#[test]
fn a_configuration_that_analyses_no_frame_is_rolled_back_and_its_file_restored() {
    let root = scratch("remote-rollback");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let consumer = Consumer::start(
        broker.plain_port,
        &format!("luciole/{SITE}/pole-1/events/#"),
    );
    let pole = Pole::start("pole-1", &root, |dir| {
        config_text("pole-1", dir, &frames, broker.port, &keys, "")
    });
    wait_online(broker.plain_port, &["pole-1"]);
    let before = std::fs::read(&pole.config).unwrap();
    // A whole file whose camera is not there: valid, but the pipeline
    // never sees a frame.
    let text = String::from_utf8(before.clone()).unwrap();
    let start = text.find("[camera]").unwrap();
    let end = text.find("[events]").unwrap();
    let missing = root.join("missing-camera.toml");
    std::fs::write(
        &missing,
        format!(
            "{}[camera]\nsource = \"v4l2\"\ndevice = \"/dev/video-luciole-missing\"\n\n{}",
            &text[..start],
            &text[end..]
        ),
    )
    .unwrap();
    let started = Instant::now();
    let answer = send(
        broker.plain_port,
        &keys,
        "installer",
        "pole-1",
        "config.apply",
        &[
            "--timeout",
            "40",
            "--arg-file",
            &format!("config={}", missing.display()),
        ],
    );
    assert_eq!(answer["ok"], false, "{answer}\n{}", pole.log());
    assert_eq!(answer["error"]["code"], "rolled_back", "{answer}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "rolled back before apply_timeout_s"
    );
    assert_eq!(
        std::fs::read(&pole.config).unwrap(),
        before,
        "the previous file is back"
    );
    assert!(!pole.dir.join("remote/apply.pending").exists());
    // The pole runs the previous configuration again: frames are analysed.
    let status = send(broker.plain_port, &keys, "ops", "pole-1", "status", &[]);
    assert_eq!(status["result"]["config_sha256"], sha256(&pole.config));
    consumer.wait_for(
        Duration::from_secs(15),
        "the rollback's events and a healthy run",
        |r| {
            let rolled = r.iter().position(|e| {
                e.payload["kind"] == "error" && e.payload["data"]["code"] == "config_rolled_back"
            });
            rolled.is_some_and(|at| {
                r[at..].iter().any(|e| {
                    e.payload["kind"] == "health"
                        && e.payload["data"]["fps"].as_f64().unwrap_or(0.0) > 0.0
                })
            })
        },
    );
    assert!(audits(&consumer).contains(&(
        "config.apply".into(),
        "failed".into(),
        "rolled_back".into()
    )));

    // A broker the pole cannot reach: frames are analysed, but no command
    // could come any more; rolled back too, and the answer still arrives
    // once the previous session is back.
    let unreachable = broker::free_port();
    let answer = send(
        broker.plain_port,
        &keys,
        "installer",
        "pole-1",
        "config.apply",
        &[
            "--timeout",
            "40",
            "--arg",
            "partial=true",
            "--arg",
            &format!("config=[mqtt]\nport = {unreachable}\n"),
        ],
    );
    assert_eq!(
        answer["error"]["code"],
        "rolled_back",
        "{answer}\n{}",
        pole.log()
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("command channel"),
        "{answer}"
    );
    assert_eq!(std::fs::read(&pole.config).unwrap(), before);
    // Nor may an apply move the rollback's own folder.
    let moved = send(
        broker.plain_port,
        &keys,
        "installer",
        "pole-1",
        "config.apply",
        &[
            "--arg",
            "partial=true",
            "--arg",
            "config=[remote]\nstate_dir = \"/tmp/elsewhere\"\n",
        ],
    );
    assert_eq!(moved["error"]["code"], "invalid_config", "{moved}");
}

#[test]
fn twenty_poles_are_driven_by_the_fleet_tool() {
    const POLES: usize = 20;
    let root = scratch("remote-fleet");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let names: Vec<String> = (1..=POLES).map(|i| format!("pole-{i:02}")).collect();
    let health = Consumer::start(
        broker.plain_port,
        &format!("luciole/{SITE}/+/events/health"),
    );
    let poles: Vec<Pole> = names
        .iter()
        .map(|name| {
            Pole::start(name, &root, |dir| {
                config_text(name, dir, &frames, broker.port, &keys, "")
            })
        })
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_online(broker.plain_port, &refs);
    let key = keys.path("installer");
    let key = key.to_str().unwrap();

    // The whole site: one signed order, twenty answers.
    let started = Instant::now();
    let (lines, ok, text) = fleet(
        broker.plain_port,
        &[
            "send",
            "--key",
            key,
            "--site",
            SITE,
            "--all",
            "--timeout",
            "30",
            "status",
        ],
    );
    let whole_site = started.elapsed();
    assert!(ok, "{text}");
    assert_eq!(lines.len(), POLES, "{text}");
    assert!(
        lines
            .iter()
            .all(|l| l["ok"] == true && l["result"]["version"] == env!("CARGO_PKG_VERSION")),
        "{text}"
    );
    let mut latencies: Vec<u64> = lines
        .iter()
        .filter_map(|l| l["latency_ms"].as_u64())
        .collect();
    latencies.sort();
    let mut answered: Vec<&str> = lines
        .iter()
        .map(|l| l["device"].as_str().unwrap())
        .collect();
    answered.sort();
    assert_eq!(answered, refs);

    // A list: a dry run on three poles.
    let (lines, ok, text) = fleet(
        broker.plain_port,
        &[
            "send",
            "--key",
            key,
            "--site",
            SITE,
            "--device",
            "pole-03",
            "--device",
            "pole-07",
            "--device",
            "pole-19",
            "--arg",
            "partial=true",
            "--arg",
            "dry_run=true",
            "--arg",
            "config=[events]\nhealth_interval_ms = 2000\n",
            "config.apply",
        ],
    );
    assert!(ok, "{text}");
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines.iter().all(|l| l["result"]["valid"] == true), "{text}");

    // The fleet table, once every pole has reported its health.
    health.wait_for(
        Duration::from_secs(30),
        "a health event from every pole",
        |r| {
            let devices: std::collections::BTreeSet<&str> = r
                .iter()
                .filter_map(|e| e.payload["device"].as_str())
                .collect();
            devices.len() == POLES
        },
    );
    let started = Instant::now();
    let (lines, ok, text) = fleet(
        broker.plain_port,
        &[
            "status", "--key", key, "--site", SITE, "--wait", "10", "--json",
        ],
    );
    let table = started.elapsed();
    assert!(ok, "{text}");
    let rows = lines[0]["poles"].as_array().unwrap();
    assert_eq!(rows.len(), POLES, "{text}");
    assert!(
        rows.iter()
            .all(|r| r["online"] == true && r["answered"] == true && r["version"].is_string()),
        "{text}"
    );
    assert!(
        rows.iter()
            .all(|r| r["fps"].as_f64().is_some_and(|f| f > 0.0)),
        "{text}"
    );
    // A pole that stops is offline in the table.
    drop(poles);
    let (lines, _, text) = fleet(
        broker.plain_port,
        &["status", "--site", SITE, "--json", "--wait", "2"],
    );
    let rows = lines[0]["poles"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["online"] == false), "{text}");
    eprintln!(
        "fleet of {POLES}: `fleet send --all status` took {} ms (answers after {} ms first, {} ms median, {} ms last); `fleet status --key` took {} ms",
        whole_site.as_millis(),
        latencies[0],
        latencies[POLES / 2],
        latencies[POLES - 1],
        table.as_millis()
    );
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites_one() {
    use std::os::unix::fs::PermissionsExt;
    let root = scratch("remote-keygen");
    let keys = Keys::make(&root);
    let mode = std::fs::metadata(keys.path("ops"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = luciole()
        .args(["fleet", "keygen", "--name", "ops", "--out"])
        .arg(&keys.dir)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("ops.key: cannot create"),
        "{}",
        stderr(&again)
    );
    // The printed entry is what a pole's configuration takes.
    let frames = root.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let config = root.join("pole.toml");
    std::fs::write(
        &config,
        config_text("pole-1", &root, &frames, 1883, &keys, ""),
    )
    .unwrap();
    let out = luciole().arg("check-config").arg(&config).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out) + &stdout(&out));
    // A private key others can read is refused by the tool.
    std::fs::set_permissions(keys.path("ops"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, ok, text) = fleet(
        1,
        &[
            "send",
            "--key",
            keys.path("ops").to_str().unwrap(),
            "--site",
            SITE,
            "--device",
            "pole-1",
            "status",
        ],
    );
    assert!(!ok && text.contains("readable by its owner only"), "{text}");
}

#[test]
fn a_daemon_that_keeps_dying_on_an_unconfirmed_configuration_gets_the_previous_one_back() {
    let root = scratch("remote-recover");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let dir = root.join("pole-1");
    let state = dir.join("remote");
    std::fs::create_dir_all(&state).unwrap();
    let good = config_text("pole-1", &dir, &frames, broker.port, &keys, "");
    // What a config.apply leaves while unconfirmed: the previous file and
    // the marker, here as after two starts that died before confirming.
    std::fs::write(state.join("config.previous.toml"), &good).unwrap();
    std::fs::write(state.join("apply.pending"), "2").unwrap();
    let broken = good.replace("health_interval_ms = 1000", "health_interval_ms = 1100");
    let mut pole = Pole::start("pole-1", &root, |_| broken.clone());
    wait_online(broker.plain_port, &["pole-1"]);
    assert_eq!(std::fs::read_to_string(&pole.config).unwrap(), good);
    assert!(!state.join("apply.pending").exists());
    assert!(
        pole.log().contains("never confirmed after 3 starts"),
        "{}",
        pole.log()
    );
    // One start short of the limit: pending again, and confirmed once a
    // frame is analysed.
    drop(pole.child.take().map(|mut c| {
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        c.wait()
    }));
    std::fs::write(state.join("apply.pending"), "0").unwrap();
    pole = Pole::start("pole-1", &root, |_| broken.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while state.join("apply.pending").exists() {
        assert!(
            Instant::now() < deadline,
            "never confirmed:\n{}",
            pole.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&pole.config).unwrap(), broken);
    assert!(
        pole.log().contains("not confirmed yet (start 1 of 3)"),
        "{}",
        pole.log()
    );
}

#[test]
fn the_metrics_endpoint_and_luciole_status_show_the_running_pole() {
    let root = scratch("remote-metrics");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let port = broker::free_port();
    let pole = Pole::start("pole-1", &root, |dir| {
        let lamp = LAMP.replace("DIMMER", &dir.join("dimmer.json").display().to_string());
        config_text(
            "pole-1",
            dir,
            &frames,
            broker.port,
            &keys,
            &format!("{lamp}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        )
    });
    wait_online(broker.plain_port, &["pole-1"]);
    let get = |path: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    };
    // Wait for a health event and an acknowledged publish.
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let text = get("/metrics");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("application/openmetrics-text"), "{text}");
        let samples = luciole::metrics::parse(text.split_once("\r\n\r\n").unwrap().1);
        let value = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        if value("luciole_frames_total").is_some_and(|f| f > 0.0)
            && value("luciole_publish_latency_seconds_count").is_some_and(|c| c > 0.0)
        {
            break samples;
        }
        assert!(Instant::now() < deadline, "{text}\n{}", pole.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    let value = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    assert_eq!(value("luciole_broker_connected"), Some(1.0));
    assert!(value("luciole_events_acked_total").unwrap() > 0.0);
    assert!(value("luciole_outbox_depth").is_some());
    assert_eq!(value("luciole_lamp_level"), Some(0.3));
    assert!(value("luciole_fps").unwrap() > 0.0);
    assert_eq!(
        value(&format!(
            "luciole_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        Some(1.0)
    );
    assert!(get("/other").starts_with("HTTP/1.1 404"));
    // The same for someone on the console.
    let out = luciole()
        .args(["status", "--config"])
        .arg(&pole.config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "luciole 0.1.0",
        "camera: ",
        "fps",
        "broker: connected",
        "lamp: 30 %",
        "outbox: ",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
    // A listen address beyond loopback is refused.
    let public = pole.dir.join("public.toml");
    let config = std::fs::read_to_string(&pole.config).unwrap();
    std::fs::write(
        &public,
        config.replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}")),
    )
    .unwrap();
    let out = luciole().arg("check-config").arg(&public).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("metrics.listen") || stderr(&out).contains("metrics.listen"),
        "{}",
        stderr(&out)
    );
    drop(pole);
    let out = luciole()
        .args(["status", "--config"])
        .arg(root.join("pole-1/pole.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot reach the daemon's metrics endpoint"),
        "{}",
        stderr(&out)
    );
}

/// The bundle server of the update tests (tests/support/https_server.py):
/// HTTPS on a loopback port with the given certificate, byte ranges, and
/// optionally its first long transfer cut after `cut` bytes.
struct BundleServer {
    port: u16,
    log: PathBuf,
    child: Child,
}

impl BundleServer {
    fn start(dir: &Path, pki: &broker::Pki, cut: Option<u64>, log: PathBuf) -> BundleServer {
        use std::io::BufRead;
        let mut command = Command::new("python3");
        command
            .arg(support::repo().join("tests/support/https_server.py"))
            .arg("--dir")
            .arg(dir)
            .arg("--cert")
            .arg(&pki.server_cert)
            .arg("--key")
            .arg(&pki.server_key)
            .arg("--log")
            .arg(&log);
        if let Some(cut) = cut {
            command.args(["--cut-after", &cut.to_string()]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("https_server.py printed {line:?}, not its port"));
        BundleServer { port, log, child }
    }

    fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }

    fn requests(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `update` events received so far, as (step, code, bytes).
fn update_steps(consumer: &Consumer) -> Vec<(String, String, Option<u64>)> {
    consumer
        .events()
        .iter()
        .filter(|r| r.payload["kind"] == "update")
        .map(|r| {
            let d = &r.payload["data"];
            (
                d["step"].as_str().unwrap_or("").to_string(),
                d["code"].as_str().unwrap_or("").to_string(),
                d["bytes"].as_u64(),
            )
        })
        .collect()
}

/// Waits for the `n`th `failed` update step; the steps so far.
fn wait_update_failures(consumer: &Consumer, n: usize) -> Vec<(String, String, Option<u64>)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let steps = update_steps(consumer);
        if steps.iter().filter(|(s, _, _)| s == "failed").count() >= n {
            return steps;
        }
        assert!(Instant::now() < deadline, "no end: {steps:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn update_install_resumes_its_download_checks_it_and_reports_every_step() {
    let root = scratch("remote-update");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let city = broker::make_pki(&root.join("city"), "city");
    let stranger = broker::make_pki(&root.join("stranger"), "stranger");
    // A 3 MiB stand-in for a bundle: RAUC is not on this machine's bus, so
    // the job must end at the installation, after a real download.
    let served = root.join("served");
    std::fs::create_dir_all(&served).unwrap();
    let mut bytes = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(served.join("v2.raucb"), &bytes).unwrap();
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = BundleServer::start(&served, &city, Some(1 << 20), root.join("city.log"));
    let untrusted = BundleServer::start(&served, &stranger, None, root.join("stranger.log"));
    let consumer = Consumer::start(
        broker.plain_port,
        &format!("luciole/{SITE}/pole-1/events/#"),
    );
    let pole = Pole::start("pole-1", &root, |dir| {
        config_text(
            "pole-1",
            dir,
            &frames,
            broker.port,
            &keys,
            "protocol = \"5\"\n",
        ) + &format!(
            "\n[remote.update]\nca = \"{}\"\nmax_mib = 4\nwindow = \"now\"\n",
            city.ca.display()
        )
    });
    wait_online(broker.plain_port, &["pole-1"]);
    let job_dir = pole.dir.join("remote/update");
    let order = |key: &str, url: &str, sha256: &str, extra: &[&str]| {
        let url = format!("url={url}");
        let sha = format!("sha256={sha256}");
        let mut args = vec!["--arg", url.as_str(), "--arg", sha.as_str()];
        args.extend_from_slice(extra);
        send(
            broker.plain_port,
            &keys,
            key,
            "pole-1",
            "update.install",
            &args,
        )
    };

    // Refused before anything starts: an operator's key, a plain-HTTP URL.
    let answer = order("ops", &server.url("v2.raucb"), &digest, &[]);
    assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    let answer = order("installer", "http://127.0.0.1/v2.raucb", &digest, &[]);
    assert_eq!(answer["error"]["code"], "bad_arguments", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("https://"),
        "{answer}"
    );

    // 1. The first transfer breaks after 1 MiB: the download resumes with a
    //    range request, the sha256 matches, the bundle goes to RAUC (which
    //    this machine does not have: the job fails there, and says so).
    let url = format!("{}?token=hush", server.url("v2.raucb"));
    let answer = order("installer", &url, &digest, &[]);
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["result"]["window"], "now", "{answer}");
    // One job at a time: a second order meanwhile (the first waits 5 s
    // before it resumes its download) is refused, and the first goes on.
    let second = order("installer", &server.url("v2.raucb"), &digest, &[]);
    assert_eq!(second["error"]["code"], "busy", "{second}");
    let steps = wait_update_failures(&consumer, 1);
    let names: Vec<&str> = steps.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(names.first(), Some(&"downloading"), "{steps:?}");
    let resumed = steps
        .iter()
        .any(|(s, _, b)| s == "downloading" && *b == Some(1 << 20));
    assert!(resumed, "no step resuming from byte 1048576: {steps:?}");
    let downloaded = steps.iter().position(|(s, _, _)| s == "downloaded");
    let installing = steps.iter().position(|(s, _, _)| s == "installing");
    assert!(downloaded.is_some() && downloaded < installing, "{steps:?}");
    assert_eq!(
        steps.iter().find(|(s, _, _)| s == "downloaded").unwrap().2,
        Some(3 << 20)
    );
    let (last, code, _) = steps.last().unwrap();
    assert_eq!(
        (last.as_str(), code.as_str()),
        ("failed", "install_failed"),
        "{steps:?}"
    );
    let requests = server.requests();
    assert!(
        requests.contains("range=bytes=1048576- status=206"),
        "no resumed request: {requests}"
    );
    // The token in the URL never reaches an event.
    assert!(
        !consumer
            .events()
            .iter()
            .any(|r| r.payload.to_string().contains("hush")),
        "the URL's query was published"
    );
    // The job and its files are gone: a new order may start.
    let left: Vec<_> = std::fs::read_dir(&job_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !left
            .iter()
            .any(|n| n == "job.json" || n == "bundle.raucb" || n == "bundle.part"),
        "{left:?}"
    );

    // 2. A bundle whose sha256 is not the one ordered is refused and removed.
    let answer = order("installer", &server.url("v2.raucb"), &"0".repeat(64), &[]);
    assert_eq!(answer["ok"], true, "{answer}");
    let steps = wait_update_failures(&consumer, 2);
    assert_eq!(steps.last().unwrap().1, "sha256_mismatch", "{steps:?}");
    assert!(!job_dir.join("bundle.part").exists());

    // 3. Larger than the size the command allows: stopped before reading it.
    let answer = order(
        "installer",
        &server.url("v2.raucb"),
        &digest,
        &["--arg", "size=1000"],
    );
    assert_eq!(answer["ok"], true, "{answer}");
    let steps = wait_update_failures(&consumer, 3);
    assert_eq!(steps.last().unwrap().1, "too_large", "{steps:?}");
    // ... and a size above remote.update.max_mib is refused outright.
    let answer = order(
        "installer",
        &server.url("v2.raucb"),
        &digest,
        &["--arg", "size=5000000"],
    );
    assert_eq!(answer["error"]["code"], "too_large", "{answer}");

    // 4. A server whose certificate is not from the city's CA.
    let answer = order("installer", &untrusted.url("v2.raucb"), &digest, &[]);
    assert_eq!(answer["ok"], true, "{answer}");
    let steps = wait_update_failures(&consumer, 4);
    assert_eq!(steps.last().unwrap().1, "download_failed", "{steps:?}");
    assert_eq!(
        untrusted.requests(),
        "",
        "a request went through to the untrusted server"
    );

    // Every order has its audits: accepted, then failed with the same code.
    let audits: Vec<_> = audits(&consumer)
        .into_iter()
        .filter(|(c, _, _)| c == "update.install")
        .collect();
    let failed: Vec<&str> = audits
        .iter()
        .filter(|(_, o, _)| o == "failed")
        .map(|(_, _, code)| code.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "busy",
            "install_failed",
            "sha256_mismatch",
            "too_large",
            "too_large",
            "download_failed"
        ],
        "{audits:?}"
    );
    assert_eq!(
        audits.iter().filter(|(_, o, _)| o == "accepted").count(),
        4,
        "{audits:?}"
    );
    assert!(
        audits
            .iter()
            .any(|(_, o, c)| o == "refused" && c == "forbidden"),
        "{audits:?}"
    );
    drop(pole);
}

#[test]
fn the_lamp_s_energy_is_reported_when_the_night_ends() {
    let root = scratch("remote-energy");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let port = broker::free_port();
    // A night that ends at the next whole minute (UTC), at least 15 s away.
    let now_s = luciole::events::now_ms() / 1000;
    let mut end_s = (now_s / 60 + 1) * 60;
    if end_s - now_s < 15 {
        end_s += 60;
    }
    let off = format!("{:02}:{:02}", (end_s / 3600) % 24, (end_s / 60) % 60);
    let consumer = Consumer::start(
        broker.plain_port,
        &format!("luciole/{SITE}/pole-1/events/#"),
    );
    let pole = Pole::start("pole-1", &root, |dir| {
        let on = if off == "00:00" { "23:00" } else { "00:00" };
        let lamp = LAMP
            .replace("DIMMER", &dir.join("dimmer.json").display().to_string())
            .replace(
                "schedule = { on = \"00:00\", off = \"24:00\", timezone = \"UTC\" }",
                &format!(
                    "schedule = {{ on = \"{on}\", off = \"{off}\", timezone = \"UTC\" }}\nlamp_watts = 120.0"
                ),
            );
        config_text(
            "pole-1",
            dir,
            &frames,
            broker.port,
            &keys,
            &format!("{lamp}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
        )
    });
    let deadline = Instant::now() + Duration::from_secs(110);
    let energy = loop {
        let events = consumer.events();
        if let Some(e) = events.iter().find(|r| r.payload["kind"] == "energy") {
            break e.payload["data"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no energy event:\n{}",
            pole.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // The same figures, worked out here from the published light timeline.
    let to = |r: &broker::Received| {
        r.payload["time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond()
    };
    let lights: Vec<(i64, f64, bool)> = consumer
        .events()
        .iter()
        .filter(|r| r.payload["kind"] == "light")
        .map(|r| {
            (
                to(r),
                r.payload["data"]["level"].as_f64().unwrap(),
                r.payload["data"]["night"] == true,
            )
        })
        .collect();
    let (mut used_wh, mut night_ms) = (0.0, 0i64);
    for pair in lights.windows(2) {
        let ((t0, level, night), (t1, _, _)) = (pair[0], pair[1]);
        used_wh += level * 120.0 * (t1 - t0) as f64 / 3_600_000.0;
        if night {
            night_ms += t1 - t0;
        }
        if night && !pair[1].2 {
            break;
        }
    }
    let num = |k: &str| energy[k].as_f64().unwrap();
    assert_eq!(num("lamp_watts"), 120.0, "{energy}");
    assert!(
        (num("used_kwh") - used_wh / 1000.0).abs() < 1e-5,
        "{energy} vs {used_wh} Wh from {lights:?}"
    );
    let night_h = night_ms as f64 / 3_600_000.0;
    assert!(
        (num("night_h") - night_h).abs() < 1e-4,
        "{energy} vs {night_h} h"
    );
    assert!(
        (num("full_kwh") - 0.12 * num("night_h")).abs() < 1e-5,
        "{energy}"
    );
    assert!(
        (num("saved_kwh") - (num("full_kwh") - num("used_kwh"))).abs() < 1e-5,
        "{energy}"
    );
    assert!(
        num("used_kwh") > 0.0 && num("saved_kwh") > 0.0,
        "a 30 % night saves: {energy}"
    );
    assert!(energy["to"].as_str().unwrap() > energy["from"].as_str().unwrap());
    // And on the metrics endpoint.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let samples = luciole::metrics::parse(text.split_once("\r\n\r\n").unwrap().1);
    let value = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let metric = value("luciole_lamp_last_night_used_kwh").unwrap();
    assert!((metric - num("used_kwh")).abs() < 1e-5, "{text}");
    assert!(value("luciole_lamp_energy_used_kwh_total").unwrap() >= num("used_kwh") - 1e-5);
}

/// The demo configuration's `[detect]` section (the real model and runtime).
fn detect_section() -> String {
    let text = support::demo_config_text(Path::new("/nonexistent/outbox"));
    let start = text.find("[detect]").unwrap();
    let end = text[start + 1..].find("\n[").unwrap() + start + 1;
    text[start..end].to_string() + "\n"
}

#[test]
fn remote_snapshots_are_published_once_pixelated_and_only_where_allowed_and_local_images_expire() {
    let root = scratch("remote-snapshot");
    let broker = Broker::start(&root.join("broker"));
    let keys = Keys::make(&root);
    let frames = frames(&root);
    let audit_feed = Consumer::start(broker.plain_port, &format!("luciole/{SITE}/+/events/audit"));
    let port = broker.plain_port;
    let privacy = |dir: &Path, remote: bool| {
        format!(
            "{}\n[privacy]\nimages_dir = \"{}/images\"\nimage_retention_s = 3600\nremote_snapshots = {remote}\n",
            detect_section(),
            dir.display()
        )
    };
    // Before pole-1 starts: an image past its retention, and a capture
    // taken on the pole's console (its audit record waits in the spool).
    let dir1 = root.join("pole-1");
    std::fs::create_dir_all(dir1.join("images")).unwrap();
    let text1 = |dir: &Path| config_text("pole-1", dir, &frames, port, &keys, &privacy(dir, true));
    std::fs::write(dir1.join("pole.toml"), text1(&dir1)).unwrap();
    let old = dir1.join("images/snapshot-old.png");
    std::fs::write(&old, b"old picture").unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::open(&old)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(two_hours_ago))
        .unwrap();
    let captured = luciole()
        .args(["capture", "--frames", "2", "--config"])
        .arg(dir1.join("pole.toml"))
        .output()
        .unwrap();
    assert!(captured.status.success(), "{}", stderr(&captured));
    let summary: serde_json::Value = serde_json::from_str(stdout(&captured).trim()).unwrap();
    let capture_dir = PathBuf::from(summary["out"].as_str().unwrap());
    assert!(
        capture_dir.starts_with(dir1.join("images").canonicalize().unwrap()),
        "{capture_dir:?}"
    );
    let spool = dir1.join("images/.audit");
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        1,
        "one audit record waits"
    );
    // An --out outside the images folder is refused, and nothing written.
    let outside = luciole()
        .args(["capture", "--frames", "2", "--config"])
        .arg(dir1.join("pole.toml"))
        .arg("--out")
        .arg(root.join("elsewhere"))
        .output()
        .unwrap();
    assert_eq!(outside.status.code(), Some(1));
    assert!(
        stderr(&outside).contains("outside privacy.images_dir"),
        "{}",
        stderr(&outside)
    );
    assert!(!root.join("elsewhere").exists());

    let _pole1 = Pole::start("pole-1", &root, text1);
    let _pole2 = Pole::start("pole-2", &root, |dir| {
        config_text("pole-2", dir, &frames, port, &keys, &privacy(dir, false))
    });
    wait_online(port, &["pole-1", "pole-2"]);

    // The daemon published the capture's audit, emptied the spool and
    // deleted the expired image; the capture itself stays.
    let deadline = Instant::now() + Duration::from_secs(20);
    let console = loop {
        let found: Vec<serde_json::Value> = audit_feed
            .events()
            .iter()
            .filter(|r| r.payload["data"]["role"] == "console")
            .map(|r| r.payload.clone())
            .collect();
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no console audit:\n{}",
            _pole1.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(console.len(), 1, "{console:?}");
    assert_eq!(console[0]["device"], "pole-1");
    assert_eq!(console[0]["data"]["command"], "capture");
    assert_eq!(console[0]["data"]["outcome"], "done");
    let detail = console[0]["data"]["detail"].as_str().unwrap();
    assert!(
        detail.contains(capture_dir.to_str().unwrap()) && detail.contains("deleted after 3600 s"),
        "{detail}"
    );
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "spool emptied"
    );
    assert!(!old.exists(), "the image past its retention is deleted");
    assert!(capture_dir.join("frame-000001.png").exists());

    // Snapshots: pole-1 allows them, pole-2 does not.
    let saved = root.join("saved");
    let key = keys.path("installer");
    let (lines, _, text) = fleet(
        port,
        &[
            "send",
            "--key",
            key.to_str().unwrap(),
            "--site",
            SITE,
            "--device",
            "pole-1",
            "--device",
            "pole-2",
            "--timeout",
            "40",
            "--save",
            saved.to_str().unwrap(),
            "snapshot",
        ],
    );
    assert_eq!(lines.len(), 2, "{text}");
    let answer = |device: &str| {
        lines
            .iter()
            .find(|l| l["device"] == device)
            .unwrap()
            .clone()
    };
    let one = answer("pole-1");
    assert_eq!(one["ok"], true, "{one}");
    let result = &one["result"];
    assert_eq!(result["topic"], format!("luciole/{SITE}/pole-1/snapshot"));
    assert_eq!(result["format"], "jpeg");
    assert!(result["pixelated_blocks"].as_u64().unwrap() > 0, "{one}");
    let path = PathBuf::from(one["saved"].as_str().unwrap_or_else(|| panic!("{one}")));
    assert!(path.starts_with(&saved));
    assert_eq!(sha256(&path), result["sha256"].as_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let picture = image::open(&path).unwrap().to_rgb8();
    assert_eq!(
        (picture.width() as u64, picture.height() as u64),
        (
            result["width"].as_u64().unwrap(),
            result["height"].as_u64().unwrap()
        )
    );
    assert_eq!(picture.width(), 320);
    let two = answer("pole-2");
    assert_eq!(two["ok"], false, "{two}");
    assert_eq!(two["error"]["code"], "remote_snapshots_off");
    // An operator may not order one.
    let refused = send(port, &keys, "ops", "pole-1", "snapshot", &[]);
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");

    // Published once and not retained: a new subscriber gets nothing.
    let late = Raw::connect(port, &format!("luciole/{SITE}/pole-1/snapshot"));
    assert!(
        late.answers.recv_timeout(Duration::from_secs(2)).is_err(),
        "a snapshot was retained"
    );
    // Nothing of it is kept on the pole: only the capture is in its folder.
    let kept: Vec<_> = std::fs::read_dir(dir1.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != ".audit")
        .collect();
    assert_eq!(kept, vec![capture_dir.file_name().unwrap().to_owned()]);

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = audits(&audit_feed);
        let snapshot: Vec<_> = seen
            .iter()
            .filter(|(c, _, _)| c == "snapshot")
            .cloned()
            .collect();
        let want = |o: &str, c: &str| snapshot.iter().any(|(_, oo, cc)| oo == o && cc == c);
        if want("done", "")
            && want("failed", "remote_snapshots_off")
            && want("refused", "forbidden")
        {
            break;
        }
        assert!(Instant::now() < deadline, "audits: {seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
