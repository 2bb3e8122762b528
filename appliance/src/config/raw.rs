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
}

impl RawConfig {
    /// Top-level sections this version understands.
    pub const SECTIONS: [&'static str; 2] = ["device", "camera"];
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
    /// Relative paths start from the configuration file's folder.
    pub path: String,
    /// `"realtime"` (the recording's frame rate) or `"fast"` (as fast as
    /// frames are consumed).
    #[serde(default = "default_pace")]
    pub pace: String,
    /// Start over at the end instead of stopping.
    #[serde(default)]
    pub r#loop: bool,
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
