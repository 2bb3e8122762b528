//! Luciole: the daemon of a privacy-first street-pole camera.
//!
//! Frames flow in one direction: a [`capture`] source yields raw frames from a
//! V4L2 camera or a recorded file, [`convert`] turns them into RGB at the size
//! the next stage wants, and the commands in [`app`] wire the stages together.
//! Frames stay in memory; nothing here writes an image unless an installer
//! asks for one with `luciole capture`.
//!
//! # Layout
//!
//! - [`config`]: the pole's TOML file, parsed into raw structs then validated
//!   into typed [`config::Settings`]; every problem names file, line and key.
//! - [`capture`]: the [`capture::FrameSource`] trait and its implementations:
//!   V4L2 streaming ([`capture::v4l2`]), replay of a video or image folder
//!   ([`capture::replay`]), and reconnection with backoff
//!   ([`capture::reconnect`]).
//! - [`convert`]: pixel-format conversion to RGB and scaling, plus a plain
//!   scalar [`convert::reference`] used to check and benchmark the fast path.
//! - [`detect`]: the [`detect::Detector`] trait: a TFLite model described by
//!   a manifest in `models/`, run by LiteRT ([`detect::litert`]) or the
//!   classic TFLite C API ([`detect::tflite`]) loaded at run time, with
//!   pure pre- and post-processing ([`detect::postprocess`]).
//! - [`motion`]: motion gating on a small grey image, so the model only
//!   runs when something moves (plus periodic refreshes).
//! - [`track`]: SORT/ByteTrack-like multi-object tracking with ephemeral
//!   random ids and no appearance features.
//! - [`analytics`]: counting lines, zones, flows and ground calibration,
//!   driven by frame time; [`fiware`] maps flows to FIWARE Smart Data
//!   Models entities.
//! - [`pipeline`]: the daemon's threads: capture, then motion, detection,
//!   tracking and analytics, with bounded queues, events and health.
//! - [`events`]: the versioned JSON events a pole publishes, their topics
//!   and timestamps; one JSON Schema per kind in `appliance/schemas/`.
//! - [`outbox`]: store-and-forward in sled ([`outbox::store`] also offers
//!   redb): events are committed before they are offered and deleted on the
//!   broker's acknowledgement, within size and age limits
//!   ([`outbox::ledger`] keeps the pure bookkeeping).
//! - [`publish`]: the MQTT 3.1.1/5 publisher (rumqttc): TLS, presence with
//!   last will, ordered replay, bounded in-flight window, reconnection with
//!   jittered [`publish::backoff`]; [`publish::reporter`] is the daemon's
//!   handle on outbox and publisher.
//! - [`light`]: the lamp: a pure policy (schedule or sun, presence boost,
//!   fail-on), relay and PWM outputs behind traits, `luciole light`.
//! - [`app`]: the commands behind the CLI (`run`, `check-config`, `capture`,
//!   `detect`, `events`).
//! - [`cli`]: argument definitions; [`logging`]: tracing set-up;
//!   [`shutdown`]: SIGINT/SIGTERM handling.

pub mod analytics;
pub mod backoff;
pub mod app;
pub mod capture;
pub mod cli;
pub mod config;
pub mod convert;
pub mod detect;
pub mod events;
pub mod fiware;
pub mod light;
pub mod logging;
pub mod motion;
pub mod outbox;
pub mod pipeline;
pub mod publish;
pub mod shutdown;
pub mod sync;
pub mod track;
