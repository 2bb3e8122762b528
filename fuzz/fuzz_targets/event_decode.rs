//! Stored events: any bytes as the outbox's stored value (8 bytes of time,
//! big-endian milliseconds, then the JSON event) through `Event::decode`.
//!
//! Properties: decoding never panics; an event that decodes encodes to
//! bytes that decode again, to the same envelope and kind (the outbox
//! stores what `encode` gives, so anything else would be an event it
//! cannot read back); the times the outbox reads from a `dropped` event
//! parse without panicking. Inputs that once failed are in
//! `fuzz/regressions/event_decode` (`infinite-f32`: a position of `1e39`
//! decoded to infinity, which `encode` wrote as `null`).

#![no_main]

use libfuzzer_sys::fuzz_target;
use luciole::events::{self, Body, Event};

fuzz_target!(|data: &[u8]| {
    // The outbox refuses values shorter than the time and one byte of JSON.
    if data.len() < 9 {
        return;
    }
    let time_ms = u64::from_be_bytes(data[..8].try_into().unwrap());
    let json = &data[8..];
    // The stored time, written back as the daemon writes times: it parses
    // to itself up to year 9999.
    if time_ms < 253_402_300_800_000 {
        let text = events::rfc3339_ms(time_ms);
        assert_eq!(events::parse_rfc3339_ms(&text), Some(time_ms), "{text}");
    }
    let Ok(event) = Event::decode(7, json) else {
        return;
    };
    let _ = event.body.kind();
    let _ = events::parse_rfc3339_ms(&event.time);
    if let Body::Dropped(d) = &event.body {
        let _ = events::parse_rfc3339_ms(&d.from);
        let _ = events::parse_rfc3339_ms(&d.to);
    }
    let encoded = event.encode();
    match Event::decode(event.id, &encoded) {
        // Numbers are compared through their text only: serde_json's fast
        // float parser may land one unit in the last place away.
        Ok(again) => {
            let envelope = |e: &Event| {
                (
                    e.schema,
                    e.id,
                    e.time.clone(),
                    e.site.clone(),
                    e.device.clone(),
                    e.body.kind(),
                )
            };
            assert_eq!(envelope(&again), envelope(&event));
        }
        Err(err) => panic!(
            "an event that decoded encodes to bytes that do not: {err}: {}",
            String::from_utf8_lossy(&encoded)
        ),
    }
});
