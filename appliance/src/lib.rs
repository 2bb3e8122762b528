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
//! - [`app`]: the commands behind the CLI (`run`, `check-config`, `capture`).
//! - [`cli`]: argument definitions; [`logging`]: tracing set-up;
//!   [`shutdown`]: SIGINT/SIGTERM handling.

pub mod app;
pub mod capture;
pub mod cli;
pub mod config;
pub mod convert;
pub mod logging;
pub mod shutdown;
