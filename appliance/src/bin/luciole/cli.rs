//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

/// Luciole: privacy-first street-pole camera daemon.
///
/// Reads a camera (or a recording), and keeps every frame in memory. Only
/// `capture` and `snapshot` write images (masked; snapshots pixelated), and
/// only where an installer asks.
#[derive(Debug, Parser)]
#[command(name = "luciole", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log line format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Plain, global = true)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `luciole=debug` (RUST_LOG overrides it).
    #[arg(long, default_value = "info", global = true)]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGINT or SIGTERM (or the end of a replay).
    Run {
        /// The pole's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The README's main job: the whole pipeline (motion gating, detection,
    /// tracking, counting lines and zones, flows, events, outbox, and MQTT
    /// with --broker) on real footage, printing events as they happen and a
    /// table of counts per line, direction and class at the end.
    Demo {
        /// The demo configuration (lines and zones drawn for vtest.avi).
        #[arg(long, short, default_value = "appliance/config/demo.toml")]
        config: PathBuf,
        /// Stop after this many frames (vtest.avi has 795).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        frames: Option<u64>,
        /// Also publish to this broker, e.g. mqtt://127.0.0.1:1883
        /// (plain MQTT, since the address is given explicitly).
        #[arg(long)]
        broker: Option<String>,
        /// Run the model on every frame (motion gating and the adaptive
        /// inference rate off). `--no-motion` is the older name.
        #[arg(long, alias = "no-motion")]
        every_frame: bool,
        /// Print the summary as one JSON line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file: prints a one-line summary and exits 0,
    /// or lists every problem (file:line key = value: reason) and exits 1.
    CheckConfig {
        /// The configuration file to check.
        file: PathBuf,
    },
    /// Print the data manifest of a configuration: what the pole publishes
    /// (topics, kinds, fields, rhythm), keeps and for how long, and never
    /// produces, as the daemon publishes it retained on
    /// <prefix>/<site>/<device>/manifest.
    Manifest {
        /// The pole's configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Save N frames as PNG images for engineers (focus, exposure, the
    /// camera's formats), the privacy masks filled, with a frames.jsonl
    /// index, in privacy.images_dir (deleted after
    /// privacy.image_retention_s); prints a JSON summary on standard output.
    Capture {
        /// The pole's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// How many frames to save.
        #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..=100_000))]
        frames: u64,
        /// Folder to write into (created if missing), inside
        /// privacy.images_dir; default capture-<time> there.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Write one picture for installers (aiming, lines): the privacy masks
    /// filled, every person, vehicle and moving region pixelated in coarse
    /// blocks, the masks, zones, counting lines and calibration points
    /// drawn and labelled; a 0600 PNG in privacy.images_dir, deleted after
    /// privacy.image_retention_s, audited. Needs [detect]. Prints a JSON
    /// summary on standard output.
    Snapshot {
        /// The pole's configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The PNG file to write, inside privacy.images_dir; default
        /// snapshot-<time>.png there.
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Frames read to see what moves; the last one is shown.
        #[arg(long, short = 'n', default_value_t = 10, value_parser = clap::value_parser!(u64).range(4..=600))]
        frames: u64,
    },
    /// Detect people and vehicles in PNG or JPEG images with the model of
    /// the config's `[detect]` section; prints one JSON line per detection:
    /// image, label, score, box [x0, y0, x1, y1] in pixels.
    Detect {
        /// The pole's configuration file (needs a `[detect]` section).
        #[arg(long, short)]
        config: PathBuf,
        /// Images to look at.
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Show what the outbox holds (events not yet acknowledged by the
    /// broker): count, size, oldest and newest; with --all, every event as
    /// one JSON line; with --json, one JSON document (summary, and with
    /// --all every event with its boot and age). Stop the daemon first: the
    /// outbox has one user at a time.
    Events {
        /// The pole's configuration file (needs an `[outbox]` section).
        #[arg(long, short)]
        config: PathBuf,
        /// Print every held event, oldest first.
        #[arg(long)]
        all: bool,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// What the running daemon measures, read from its metrics endpoint
    /// (`[metrics]`): frames, inferences, outbox, broker, lamp.
    Status {
        /// The pole's configuration file (its `[metrics] listen`).
        #[arg(long, short)]
        config: PathBuf,
        /// Print the OpenMetrics text as served.
        #[arg(long)]
        raw: bool,
    },
    /// The integrator's tool for remote operations: `keygen` makes a
    /// signing key, `send` signs a command and prints one JSON line per
    /// pole's answer, `status` shows the site's poles (docs/remote.md).
    Fleet {
        #[command(subcommand)]
        action: Box<crate::commands::fleet::Fleet>,
    },
    /// Drive the lamp by hand: `--level PERCENT` writes the level, prints
    /// one JSON line and holds the outputs until SIGTERM/SIGINT, then applies
    /// the safe state (rated level), prints a second line and exits 0;
    /// `--safe` applies the safe state and exits (systemd ExecStopPost).
    Light {
        /// The pole's configuration file (needs a `[lighting]` section).
        #[arg(long, short)]
        config: PathBuf,
        /// Level in percent, 0 to 100 (relay on iff above 0).
        #[arg(long, conflicts_with = "safe", required_unless_present = "safe")]
        level: Option<f64>,
        /// Apply the safe state (rated level, relay on) and exit.
        #[arg(long)]
        safe: bool,
    },
}
