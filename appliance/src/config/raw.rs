//! Raw configuration sections: exactly what the TOML file says, with
//! defaults filled in and unknown keys refused. Validation lives in the
//! parent module.

use serde::Deserialize;

/// The whole file. Sections are optional here so that a missing one is
/// reported by validation, beside every other problem.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[device]`: who this pole is.
    pub device: Option<RawDevice>,
    /// `[camera]`: where frames come from.
    pub camera: Option<RawCamera>,
    /// `[detect]`: the detection model and its runtime (optional until a
    /// command needs it).
    pub detect: Option<RawDetect>,
    /// `[events]`: what the daemon reports and how often (optional).
    pub events: Option<RawEvents>,
    /// `[outbox]`: where events wait for the broker (optional; without it
    /// no events are kept).
    pub outbox: Option<RawOutbox>,
    /// `[mqtt]`: the city's broker (optional; needs `[outbox]`).
    pub mqtt: Option<RawMqtt>,
    /// `[tracking]`, `[motion]`, `[analytics]`, `[pipeline]`: from
    /// detections to counts (all optional).
    pub tracking: Option<super::analytics::RawTracking>,
    pub motion: Option<super::analytics::RawMotion>,
    pub analytics: Option<super::analytics::RawAnalytics>,
    pub pipeline: Option<super::analytics::RawPipeline>,
    /// `[lighting]`: the lamp (optional); see `config/lighting.rs`.
    pub lighting: Option<super::lighting::RawLighting>,
}

impl RawConfig {
    /// Top-level sections this version understands.
    pub const SECTIONS: [&'static str; 11] = [
        "device",
        "camera",
        "detect",
        "events",
        "outbox",
        "mqtt",
        "tracking",
        "motion",
        "analytics",
        "pipeline",
        "lighting",
    ];
}

/// `[device]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    /// Site or district the pole belongs to, e.g. `"lyon-part-dieu"`. Used in
    /// MQTT topics: letters, digits, `-`, `_`, `.`.
    pub site: String,
    /// This pole's identifier, unique within its site, e.g. `"pole-0042"`.
    /// Same character rules as `site`.
    pub id: String,
}

/// `[camera]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCamera {
    /// `"v4l2"` for a camera device, `"replay"` for a recording.
    #[serde(default = "default_source")]
    pub source: String,
    /// V4L2 device node.
    #[serde(default = "default_device")]
    pub device: String,
    /// Frame width in pixels (V4L2 default 640; replay: the recording's own).
    pub width: Option<u32>,
    /// Frame height in pixels (V4L2 default 480; replay: the recording's own).
    pub height: Option<u32>,
    /// Frames per second asked of the camera, 1 to 120; also the pace of an
    /// image-folder replay.
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Pixel formats in order of preference: `YUYV`, `MJPG`, `NV12`, `RGB3`,
    /// `GREY`. The first one the device offers at the asked size wins.
    #[serde(default = "default_pixel_formats")]
    pub pixel_formats: Vec<String>,
    /// Memory-mapped V4L2 buffers, 2 to 32.
    #[serde(default = "default_buffers")]
    pub buffers: u32,
    /// Milliseconds without a frame after which the camera counts as lost
    /// and is reopened.
    #[serde(default = "default_frame_timeout_ms")]
    pub frame_timeout_ms: u64,
    /// First delay before reopening a lost camera, in milliseconds; doubles
    /// on each failed attempt.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest delay between reopening attempts, in milliseconds.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// `[camera.replay]`: the recording, when `source = "replay"`.
    pub replay: Option<RawReplay>,
}

/// `[camera.replay]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplay {
    /// A video file (decoded by `ffmpeg`) or a folder of PNG/JPEG images.
    /// Relative paths start from the configuration file's folder; `${NAME}`
    /// is replaced by the environment variable NAME (e.g. `${HOME}`).
    pub path: String,
    /// `"realtime"` (the recording's frame rate) or `"fast"` (as fast as
    /// frames are consumed).
    #[serde(default = "default_pace")]
    pub pace: String,
    /// Start over at the end instead of stopping.
    #[serde(default)]
    pub r#loop: bool,
}

/// `[detect]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDetect {
    /// The model manifest (`models/*.toml`). Relative paths start from the
    /// configuration file's folder; `${NAME}` is replaced by the environment
    /// variable NAME.
    pub model: String,
    /// The folder holding the model and label files named in the manifest
    /// (default: the manifest's folder). Same path rules as `model`.
    pub model_dir: Option<String>,
    /// `"litert"` (LiteRT 2.x C API) or `"tflite"` (classic TensorFlow Lite
    /// C API, for external delegates).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// The runtime library: a path (same rules as `model`) or a bare file
    /// name found through the system's library search path. Default
    /// `libLiteRt.so` for litert, `libtensorflowlite_c.so` for tflite.
    pub runtime: Option<String>,
    /// `"cpu"`, `"gpu"` or `"npu"` (litert only). When the asked one cannot
    /// run the model, detection falls back to the CPU and says so.
    #[serde(default = "default_accelerator")]
    pub accelerator: String,
    /// litert NPU only: the folder of the vendor's `libLiteRtDispatch_*.so`.
    pub npu_dispatch_dir: Option<String>,
    /// CPU threads for inference, 1 to 16.
    #[serde(default = "default_threads")]
    pub threads: u32,
    /// tflite only: an external delegate plugin (`libedgetpu.so.1`,
    /// `libvx_delegate.so`, ...), same path rules as `runtime`.
    pub delegate: Option<String>,
    /// Options handed to the delegate plugin, as key = "value" strings.
    #[serde(default)]
    pub delegate_options: std::collections::BTreeMap<String, String>,
    /// Classes to report, among person, bicycle, car, motorcycle, bus,
    /// truck (default: all six).
    #[serde(default = "default_classes")]
    pub classes: Vec<String>,
    /// Minimum score of a reported detection, 0 to 1.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// Per-class minimum scores overriding `min_score`, e.g.
    /// `{ person = 0.4 }`.
    #[serde(default)]
    pub min_scores: std::collections::BTreeMap<String, f32>,
    /// Keep the frame's aspect ratio when scaling it to the model input
    /// (padding the rest) instead of stretching it.
    #[serde(default)]
    pub letterbox: bool,
}

/// `[events]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// Milliseconds between two `health` events, 100 to 86 400 000.
    #[serde(default = "default_health_interval_ms")]
    pub health_interval_ms: u64,
}

/// `[outbox]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutbox {
    /// The outbox database folder (created if missing). Relative paths
    /// start from the configuration file's folder; `${NAME}` is replaced by
    /// the environment variable NAME.
    #[serde(default = "default_outbox_path")]
    pub path: String,
    /// Most bytes of events held, 65 536 to 17 179 869 184 (16 GiB); when
    /// full, the oldest events are deleted and a `dropped` event says so.
    #[serde(default = "default_outbox_max_bytes")]
    pub max_bytes: u64,
    /// Seconds an unpublished event is kept before it is deleted (and
    /// reported by a `dropped` event), 60 to 2 592 000 (30 days).
    #[serde(default = "default_outbox_retention_s")]
    pub retention_s: u64,
    /// Milliseconds between durable commits, 1 to 1000: the most recent
    /// events a power cut can lose.
    #[serde(default = "default_outbox_flush_ms")]
    pub flush_ms: u64,
}

/// `[mqtt]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// Broker host name or IP address.
    pub host: String,
    /// MQTT protocol version: `"3.1.1"` (default) or `"5"`.
    #[serde(default = "default_mqtt_protocol")]
    pub protocol: String,
    /// Broker port (default 8883 with TLS, 1883 without).
    pub port: Option<u16>,
    /// TLS with the broker's certificate checked against `ca_file`. Turning
    /// it off sends everything, credentials included, in clear: only for a
    /// broker on the same host or a trusted link.
    #[serde(default = "default_true")]
    pub tls: bool,
    /// PEM file of the CA(s) that signed the broker's certificate (required
    /// with TLS). Same path rules as `outbox.path`.
    pub ca_file: Option<String>,
    /// PEM client certificate chain, for brokers that authenticate clients
    /// by certificate (with `client_key_file`).
    pub client_cert_file: Option<String>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<String>,
    /// User name, when the broker asks for one.
    pub username: Option<String>,
    /// File whose first line is the password (never written in this file).
    pub password_file: Option<String>,
    /// MQTT client id (default `luciole-<site>-<device>`).
    pub client_id: Option<String>,
    /// First topic level: topics are `<prefix>/<site>/<device>/...`.
    #[serde(default = "default_topic_prefix")]
    pub topic_prefix: String,
    /// Seconds between keep-alive pings when idle, 5 to 3600.
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// First delay before reconnecting, in milliseconds; doubles on each
    /// failure, with random jitter.
    #[serde(default = "default_mqtt_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest delay between reconnection attempts, in milliseconds.
    #[serde(default = "default_mqtt_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Most events published and not yet acknowledged, 1 to 1000.
    #[serde(default = "default_inflight")]
    pub inflight: u16,
}

fn default_health_interval_ms() -> u64 {
    60_000
}
fn default_outbox_path() -> String {
    "/var/lib/luciole/outbox".into()
}
fn default_outbox_max_bytes() -> u64 {
    256 << 20
}
fn default_outbox_retention_s() -> u64 {
    24 * 3600
}
fn default_outbox_flush_ms() -> u64 {
    50
}
fn default_mqtt_protocol() -> String {
    "3.1.1".into()
}
fn default_true() -> bool {
    true
}
fn default_topic_prefix() -> String {
    "luciole".into()
}
fn default_keep_alive_s() -> u64 {
    30
}
fn default_mqtt_reconnect_min_ms() -> u64 {
    500
}
fn default_mqtt_reconnect_max_ms() -> u64 {
    60_000
}
fn default_inflight() -> u16 {
    32
}
fn default_source() -> String {
    "v4l2".into()
}
fn default_device() -> String {
    "/dev/video0".into()
}
fn default_fps() -> u32 {
    25
}
fn default_pixel_formats() -> Vec<String> {
    ["YUYV", "MJPG", "NV12", "RGB3", "GREY"]
        .map(String::from)
        .to_vec()
}
fn default_buffers() -> u32 {
    4
}
fn default_frame_timeout_ms() -> u64 {
    2000
}
fn default_reconnect_min_ms() -> u64 {
    250
}
fn default_reconnect_max_ms() -> u64 {
    10_000
}
fn default_pace() -> String {
    "realtime".into()
}
fn default_backend() -> String {
    "litert".into()
}
fn default_accelerator() -> String {
    "cpu".into()
}
fn default_threads() -> u32 {
    2
}
fn default_classes() -> Vec<String> {
    ["person", "bicycle", "car", "motorcycle", "bus", "truck"]
        .map(String::from)
        .to_vec()
}
fn default_min_score() -> f32 {
    0.5
}
