//! Luciole: the daemon of a privacy-first street-pole camera.
//!
//! Frames flow in one direction: a [`capture`] source yields raw frames
//! from a V4L2 camera or a recording, the [`pipeline`] runs them through
//! [`motion`] gating, [`detect`]ion, [`track`]ing and [`analytics`] (lines,
//! zones, flows), drives the lamp ([`light`]) from what it sees, and hands
//! [`events`] to a sink: the [`outbox`] on local storage, from which
//! [`publish`] sends them to the city's MQTT broker. Frames stay in memory;
//! nothing here writes an image unless an installer asks for one with
//! `luciole capture`. Nobody is identified: only classes, boxes and
//! ephemeral track ids exist.
//!
//! This crate is the library; the `luciole` binary (`src/bin/luciole/`)
//! parses the command line, sets up logging, reads the configuration
//! ([`config`]), opens the devices and runs one command.
//!
//! # Layout
//!
//! - [`config`]: the pole's TOML file: raw sections (one file each) and
//!   their validation into the settings types the modules below own; every
//!   problem names file, line and key. Only the binary uses it.
//! - [`capture`]: the [`capture::FrameSource`] trait: V4L2 streaming,
//!   replay of a video or image folder, reconnection with backoff, and a
//!   scripted source for tests ([`capture::fake`]).
//! - [`convert`]: pixel-format conversion to RGB and scaling, plus a plain
//!   scalar [`convert::reference`] used to check and benchmark the fast path.
//! - [`detect`]: the [`detect::Detector`] trait: a TFLite model described by
//!   a manifest in `models/`, run by LiteRT or the classic TFLite C API
//!   loaded at run time, with pure pre- and post-processing; a scripted
//!   detector for tests ([`detect::fake`]).
//! - [`motion`]: motion gating on a small grey image, so the model only
//!   runs when something moves (plus periodic refreshes).
//! - [`track`]: SORT/ByteTrack-like multi-object tracking with ephemeral
//!   random ids and no appearance features.
//! - [`analytics`]: counting lines, zones, flows and ground calibration,
//!   driven by frame time; [`fiware`] maps flows to FIWARE Smart Data
//!   Models entities.
//! - [`pipeline`]: the daemon's threads (capture, inference, lamp, events)
//!   with bounded queues, handed its opened stages and an event sink; pure
//!   camera-watch and health types.
//! - [`events`]: the versioned JSON events a pole publishes, their topics,
//!   and the [`events::Sink`] they are handed to; one JSON Schema per kind
//!   in `appliance/schemas/`.
//! - [`outbox`]: store-and-forward in SQLite: events are committed before
//!   they are offered and deleted on the broker's acknowledgement, within
//!   size and age limits ([`outbox::ledger`] keeps the pure bookkeeping).
//! - [`publish`]: the MQTT 3.1.1/5 publisher (rumqttc): TLS, presence with
//!   last will, ordered replay, bounded in-flight window;
//!   [`publish::reporter`] is the daemon's event sink (outbox + publisher).
//! - [`remote`]: the signed commands a pole accepts from its broker: Ed25519
//!   signatures, roles, validity windows and nonces, checked purely.
//! - [`update`]: `update.install`: the bundle's resumable HTTPS download
//!   (the city's CA only), its sha256, RAUC over D-Bus, the maintenance
//!   window.
//! - [`privacy`]: the data profile (`privacy.publish`) applied where
//!   analytics outputs become events, and the data manifest stating what
//!   is published, kept and never produced.
//! - [`metrics`]: histograms the stages record into and the OpenMetrics
//!   text the daemon serves on a loopback address.
//! - [`light`]: the lamp: a pure policy (schedule or sun, presence boost,
//!   fail-on), relay and PWM outputs behind traits (GPIO, sysfs, rppal,
//!   simulated), and the lighting thread.
//! - [`backoff`]: the one exponential backoff with jitter (camera and
//!   broker reconnection); [`sync`]: the one lock-poison policy;
//!   [`shutdown`]: SIGINT/SIGTERM handling.

pub mod analytics;
pub mod backoff;
pub mod capture;
pub mod config;
pub mod convert;
pub mod detect;
pub mod events;
pub mod fiware;
pub mod light;
pub mod metrics;
pub mod motion;
pub mod outbox;
pub mod pipeline;
pub mod privacy;
pub mod publish;
pub mod remote;
pub mod shutdown;
pub mod sync;
pub mod track;
pub mod update;
