use super::*;

const NOW: i64 = 1_780_000_000_000;

fn origin() -> Origin {
    Origin {
        site: "lyon".into(),
        device: "pole-7".into(),
    }
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn gate() -> Gate {
    let settings = RemoteSettings::new(vec![
        Key {
            name: "ops".into(),
            role: Role::Operator,
            public: key(1).verifying_key(),
        },
        Key {
            name: "installer".into(),
            role: Role::Integrator,
            public: key(2).verifying_key(),
        },
    ]);
    Gate::new(origin(), "luciole", &settings, Nonces::default())
}

fn order(command: &str, key: &str) -> Order {
    Order {
        v: ORDER_VERSION,
        command: command.into(),
        args: serde_json::json!({}),
        site: "lyon".into(),
        device: "pole-7".into(),
        nonce: "abcdefghijklmnop0001".into(),
        issued_ms: NOW - 1000,
        expires_ms: NOW + 60_000,
        key: key.into(),
    }
}

fn payload(order: &Order, signer: &SigningKey) -> Vec<u8> {
    serde_json::to_vec(&sign(order, signer)).unwrap()
}

fn topic(command: &str) -> String {
    format!("luciole/lyon/pole-7/cmd/{command}")
}

fn refusal(gate: &mut Gate, order: &Order, signer: &SigningKey) -> String {
    gate.admit(&topic(&order.command), &payload(order, signer), NOW)
        .unwrap_err()
        .refusal
        .code()
        .to_string()
}

#[test]
fn a_signed_order_for_this_pole_is_admitted_once() {
    let mut gate = gate();
    let o = order("status", "ops");
    let admitted = gate
        .admit(&topic("status"), &payload(&o, &key(1)), NOW)
        .unwrap();
    assert_eq!(admitted.command, Command::Status);
    assert_eq!(
        (admitted.key.as_str(), admitted.role),
        ("ops", Role::Operator)
    );
    assert_eq!(refusal(&mut gate, &o, &key(1)), "replayed");
    // A site-wide order is for this pole too.
    let mut every = order("status", "ops");
    every.device = EVERY_DEVICE.into();
    every.nonce = "abcdefghijklmnop0002".into();
    assert!(gate
        .admit("luciole/lyon/cmd/status", &payload(&every, &key(1)), NOW)
        .is_ok());
}

#[test]
fn every_way_an_order_can_be_wrong_is_refused_with_its_code() {
    let mut gate = gate();
    let base = order("status", "ops");
    let mut cases: Vec<(&str, Order, SigningKey)> = Vec::new();
    cases.push(("bad_signature", base.clone(), key(9)));
    let mut o = base.clone();
    o.key = "nobody".into();
    cases.push(("unknown_key", o, key(1)));
    let mut o = base.clone();
    o.device = "pole-8".into();
    cases.push(("wrong_target", o, key(1)));
    let mut o = base.clone();
    o.site = "paris".into();
    cases.push(("wrong_target", o, key(1)));
    let mut o = base.clone();
    o.expires_ms = NOW - 5000;
    cases.push(("expired", o, key(1)));
    let mut o = base.clone();
    o.issued_ms = NOW + 3_600_000;
    o.expires_ms = NOW + 3_700_000;
    cases.push(("not_yet_valid", o, key(1)));
    let mut o = base.clone();
    o.expires_ms = NOW + 3_600_000;
    cases.push(("too_long", o, key(1)));
    let mut o = base.clone();
    o.command = "restart".into();
    cases.push(("forbidden", o, key(1)));
    let mut o = base.clone();
    o.command = "format.disk".into();
    o.key = "installer".into();
    cases.push(("unknown_command", o, key(2)));
    let mut o = base.clone();
    o.args = serde_json::json!({"verbose": true});
    cases.push(("bad_arguments", o, key(1)));
    let mut o = base.clone();
    o.nonce = "short".into();
    cases.push(("malformed", o, key(1)));
    let mut o = base.clone();
    o.v = 2;
    cases.push(("malformed", o, key(1)));
    for (code, o, signer) in cases {
        assert_eq!(refusal(&mut gate, &o, &signer), code, "{o:?}");
    }
    // None of them used up the nonce.
    assert!(gate
        .admit(&topic("status"), &payload(&base, &key(1)), NOW)
        .is_ok());
}

#[test]
fn a_payload_that_is_not_a_signed_order_is_refused_before_anything_is_read() {
    let mut gate = gate();
    let code = |payload: &[u8], topic: &str| {
        gate.clone()
            .admit(topic, payload, NOW)
            .unwrap_err()
            .refusal
            .code()
    };
    assert_eq!(
        code(&vec![b' '; MAX_PAYLOAD + 1], &topic("status")),
        "oversized"
    );
    assert_eq!(code(b"{not json", &topic("status")), "malformed");
    assert_eq!(
        code(br#"{"signed":"%%%","signature":""}"#, &topic("status")),
        "malformed"
    );
    let good = payload(&order("status", "ops"), &key(1));
    // Published under another command's topic.
    assert_eq!(code(&good, &topic("restart")), "malformed");
    // A signature cut short, or the signed bytes changed.
    let mut envelope: Envelope = serde_json::from_slice(&good).unwrap();
    envelope.signature.truncate(20);
    assert_eq!(
        code(&serde_json::to_vec(&envelope).unwrap(), &topic("status")),
        "bad_signature"
    );
    let mut envelope: Envelope = serde_json::from_slice(&good).unwrap();
    let mut o = order("status", "ops");
    o.device = EVERY_DEVICE.into();
    envelope.signed = BASE64.encode(serde_json::to_vec(&o).unwrap());
    assert_eq!(
        code(&serde_json::to_vec(&envelope).unwrap(), &topic("status")),
        "bad_signature"
    );
    assert!(gate.admit(&topic("status"), &good, NOW).is_ok());
}

#[test]
fn an_unset_clock_refuses_every_order() {
    let mut gate = gate();
    let mut o = order("status", "ops");
    o.issued_ms = 1000;
    o.expires_ms = 60_000;
    let err = gate
        .admit(&topic("status"), &payload(&o, &key(1)), 30_000)
        .unwrap_err();
    assert_eq!(err.refusal, Refusal::ClockNotSet);
}

#[test]
fn arguments_are_checked_per_command() {
    let ok = |name: &str, args: serde_json::Value| Command::parse(name, &args);
    assert_eq!(
        ok(
            "light.override",
            serde_json::json!({"level": 40, "minutes": 30})
        )
        .unwrap(),
        Command::LightOverride {
            level: Some(0.4),
            duration: Duration::from_secs(1800)
        }
    );
    assert_eq!(
        ok("light.override", serde_json::json!({"cancel": true})).unwrap(),
        Command::LightOverride {
            level: None,
            duration: Duration::ZERO
        }
    );
    for bad in [
        serde_json::json!({"level": 140, "minutes": 30}),
        serde_json::json!({"level": 40}),
        serde_json::json!({"level": 40, "minutes": 0}),
        serde_json::json!({"level": 40, "minutes": 100000}),
        serde_json::json!({"cancel": true, "level": 3}),
        serde_json::json!([]),
    ] {
        assert!(ok("light.override", bad.clone()).is_err(), "{bad}");
    }
    assert_eq!(
        ok(
            "config.apply",
            serde_json::json!({"config": "[x]", "dry_run": true})
        )
        .unwrap(),
        Command::ConfigApply {
            config: "[x]".into(),
            partial: false,
            dry_run: true
        }
    );
    assert!(ok("config.apply", serde_json::json!({})).is_err());
    assert!(ok(
        "config.apply",
        serde_json::json!({"config": "", "partial": "yes"})
    )
    .is_err());
    for name in Command::NAMES {
        assert!(Command::role_needed(name).is_some(), "{name}");
    }
}

#[test]
fn nonces_are_forgotten_when_their_order_expires_and_survive_a_save() {
    let mut nonces = Nonces::default();
    nonces
        .remember("abcdefghijklmnop0001", NOW + 10, NOW)
        .unwrap();
    assert_eq!(
        nonces.remember("abcdefghijklmnop0001", NOW + 10, NOW + 5),
        Err(Refusal::Replayed)
    );
    nonces
        .remember("abcdefghijklmnop0001", NOW + 100, NOW + 10)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("luciole-nonces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nonces");
    assert_eq!(Nonces::load(&path).unwrap(), Nonces::default());
    nonces.save(&path).unwrap();
    assert_eq!(Nonces::load(&path).unwrap(), nonces);
    std::fs::write(&path, "abc 12\n").unwrap();
    let err = Nonces::load(&path).unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_nonce_set_is_bounded() {
    let mut nonces = Nonces::default();
    for i in 0..nonces::MAX_NONCES {
        nonces
            .remember(&format!("nonce-{i:016}"), NOW + 1000, NOW)
            .unwrap();
    }
    assert_eq!(
        nonces.remember("nonce-one-too-many", NOW + 1000, NOW),
        Err(Refusal::Busy)
    );
    // Once they expire there is room again.
    nonces
        .remember("nonce-one-too-many", NOW + 5000, NOW + 1000)
        .unwrap();
    assert_eq!(nonces.len(), 1);
}

#[test]
fn keys_round_trip_through_their_text() {
    let k = generate_key().unwrap();
    assert_eq!(private_key(&private_key_text(&k)).unwrap(), k);
    assert_eq!(
        public_key(&public_key_text(&k.verifying_key())).unwrap(),
        k.verifying_key()
    );
    assert!(public_key("AAAA").unwrap_err().contains("3 bytes"));
    assert!(public_key("!!").is_err());
    assert!(nonces::well_formed(&new_nonce().unwrap()));
}

#[test]
fn a_site_wide_order_counts_only_on_the_site_topic_and_only_when_listened_to() {
    let mut gate = gate();
    let mut every = order("status", "ops");
    every.device = EVERY_DEVICE.into();
    // Republished on this pole's own topic: refused.
    let on_device = gate.admit(&topic("status"), &payload(&every, &key(1)), NOW);
    assert_eq!(on_device.unwrap_err().refusal.code(), "wrong_target");
    // An order naming this pole, on the site's topic: refused too.
    let named = order("status", "ops");
    let on_site = gate.admit("luciole/lyon/cmd/status", &payload(&named, &key(1)), NOW);
    assert_eq!(on_site.unwrap_err().refusal.code(), "wrong_target");
    // Another prefix or site: not this pole's topic.
    let elsewhere = gate.admit(
        "other/lyon/pole-7/cmd/status",
        &payload(&named, &key(1)),
        NOW,
    );
    assert_eq!(elsewhere.unwrap_err().refusal.code(), "malformed");
    // Without site_wide, the site's topic is not listened to at all.
    let mut settings = RemoteSettings::new(vec![Key {
        name: "ops".into(),
        role: Role::Operator,
        public: key(1).verifying_key(),
    }]);
    settings.site_wide = false;
    let mut narrow = Gate::new(origin(), "luciole", &settings, Nonces::default());
    let refused = narrow.admit("luciole/lyon/cmd/status", &payload(&every, &key(1)), NOW);
    assert_eq!(refused.unwrap_err().refusal.code(), "malformed");
    assert!(narrow
        .admit(&topic("status"), &payload(&named, &key(1)), NOW)
        .is_ok());
}

#[test]
fn answers_go_only_to_the_fleet_reply_topics_of_the_site() {
    assert!(reply_allowed(
        "luciole",
        "lyon",
        "luciole/lyon/fleet/ab12/reply"
    ));
    for topic in [
        "luciole/lyon/pole-7/events/crossing",
        "luciole/lyon/pole-7/status",
        "luciole/paris/fleet/ab12/reply",
        "luciole/lyon/fleet//reply",
        "luciole/lyon/fleet/a/b/reply",
        "luciole/lyon/fleet/+/reply",
    ] {
        assert!(!reply_allowed("luciole", "lyon", topic), "{topic}");
    }
    assert_eq!(shown(&"x".repeat(100)).chars().count(), 65);
    assert_eq!(shown("a\nb"), "a?b");
}
