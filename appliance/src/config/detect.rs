//! `[detect]`: the detection model, its runtime and what it reports.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::check::Check;
use crate::detect::{Accelerator, Backend, Class, DelegateSettings, DetectSettings};
use crate::pipeline::pace::PaceSettings;

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
    pub backend: Option<String>,
    /// The runtime library: a path (same rules as `model`) or a bare file
    /// name found through the system's library search path. Default
    /// `libLiteRt.so` for litert, `libtensorflowlite_c.so` for tflite.
    pub runtime: Option<String>,
    /// `"cpu"`, `"gpu"` or `"npu"` (litert only). When the asked one cannot
    /// run the model, detection falls back to the CPU and says so.
    pub accelerator: Option<String>,
    /// litert NPU only: the folder of the vendor's `libLiteRtDispatch_*.so`.
    pub npu_dispatch_dir: Option<String>,
    /// CPU threads for inference, 1 to 16.
    pub threads: Option<u32>,
    /// tflite only: an external delegate plugin (`libedgetpu.so.1`,
    /// `libvx_delegate.so`, ...), same path rules as `runtime`.
    pub delegate: Option<String>,
    /// Options handed to the delegate plugin, as key = "value" strings.
    #[serde(default)]
    pub delegate_options: BTreeMap<String, String>,
    /// Classes to report, among person, bicycle, car, motorcycle, bus,
    /// truck (default: all six).
    pub classes: Option<Vec<String>>,
    /// Minimum score of a reported detection, 0 to 1.
    pub min_score: Option<f32>,
    /// Per-class minimum scores overriding `min_score`, e.g.
    /// `{ person = 0.4 }`.
    #[serde(default)]
    pub min_scores: BTreeMap<String, f32>,
    /// Keep the frame's aspect ratio when scaling it to the model input
    /// (padding the rest) instead of stretching it.
    pub letterbox: Option<bool>,
    /// Space inferences by what the scene needs (the tracker predicts in
    /// between); false: the model runs on every frame motion gating lets
    /// through.
    pub adaptive: Option<bool>,
    /// Inferences per second, at least, while anything moves (adaptive
    /// only), 0.2 to 30.
    pub min_fps: Option<f32>,
    /// Inferences per second, at most (adaptive only), 0.2 to 60.
    pub max_fps: Option<f32>,
}

/// The adaptive inference rate from `[detect]`: `max_coast` is the
/// tracker's, which the longest wait between two inferences must stay
/// under.
pub(super) fn pace(
    raw: &RawDetect,
    max_coast: std::time::Duration,
    check: &mut Check<'_, '_>,
) -> PaceSettings {
    let d = PaceSettings::default();
    let adaptive = raw.adaptive.unwrap_or(d.adaptive);
    let min_fps = raw.min_fps.unwrap_or(d.min_fps);
    let max_fps = raw.max_fps.unwrap_or(d.max_fps);
    let min_ok = check.fraction("detect.min_fps", min_fps, 0.2, 30.0);
    let max_ok = check.fraction("detect.max_fps", max_fps, 0.2, 60.0);
    if min_ok && max_ok && min_fps > max_fps {
        check.fail(
            "detect.min_fps",
            Some(min_fps.to_string()),
            format!("must not exceed detect.max_fps ({max_fps})"),
        );
    }
    if min_ok && adaptive && f64::from(1.0 / min_fps) >= max_coast.as_secs_f64() {
        check.fail(
            "detect.min_fps",
            Some(min_fps.to_string()),
            format!(
                "the longest wait between two inferences (1/min_fps = {:.2} s) must be shorter \
                 than tracking.max_coast_ms ({} ms), or tracks end between two inferences",
                1.0 / min_fps,
                max_coast.as_millis()
            ),
        );
    }
    PaceSettings {
        adaptive,
        min_fps,
        max_fps,
    }
}

pub(super) fn validate(raw: RawDetect, check: &mut Check<'_, '_>) -> Option<DetectSettings> {
    let before = check.count();
    let model = check.path("detect.model", &raw.model);
    if let Some(model) = &model {
        if !model.is_file() {
            check.fail(
                "detect.model",
                Some(format!("{:?}", raw.model)),
                format!("{}: no such manifest file", model.display()),
            );
        }
    }
    let d = DetectSettings::new(model.clone().unwrap_or_default());
    let model_dir = match &raw.model_dir {
        Some(dir) => check.path("detect.model_dir", dir),
        None => model
            .as_ref()
            .map(|m| m.parent().unwrap_or(Path::new(".")).to_owned()),
    };
    let backend = match raw.backend.as_deref() {
        None => Some(d.backend),
        Some("litert") => Some(Backend::Litert),
        Some("tflite") => Some(Backend::Tflite),
        Some(other) => {
            check.fail(
                "detect.backend",
                Some(format!("{other:?}")),
                "must be \"litert\" or \"tflite\"",
            );
            None
        }
    };
    let runtime = match (&raw.runtime, backend) {
        (Some(runtime), _) => check.library("detect.runtime", runtime),
        (None, Some(backend)) => Some(backend.default_library().into()),
        (None, None) => None,
    };
    let accelerator_name = raw.accelerator.as_deref().unwrap_or(d.accelerator.name());
    let mut accelerator = match accelerator_name {
        "cpu" => Some(Accelerator::Cpu),
        "gpu" => Some(Accelerator::Gpu),
        "npu" => Some(Accelerator::Npu),
        other => {
            check.fail(
                "detect.accelerator",
                Some(format!("{other:?}")),
                "must be \"cpu\", \"gpu\" or \"npu\"",
            );
            None
        }
    };
    if backend == Some(Backend::Tflite)
        && matches!(accelerator, Some(Accelerator::Gpu | Accelerator::Npu))
    {
        check.fail(
            "detect.accelerator",
            Some(format!("{accelerator_name:?}")),
            "the tflite backend reaches accelerators through detect.delegate; use \"cpu\" with a delegate, or backend = \"litert\"",
        );
    }
    if raw.npu_dispatch_dir.is_some() && accelerator != Some(Accelerator::Npu) {
        check.fail(
            "detect.npu_dispatch_dir",
            None,
            "only used with detect.accelerator = \"npu\"",
        );
    }
    let npu_dispatch_dir = raw
        .npu_dispatch_dir
        .as_deref()
        .and_then(|dir| check.path("detect.npu_dispatch_dir", dir));
    let threads = raw.threads.unwrap_or(d.threads);
    check.range("detect.threads", threads.into(), 1, 16);
    let delegate = match (&raw.delegate, backend) {
        (Some(_), Some(Backend::Litert)) => {
            check.fail(
                "detect.delegate",
                None,
                "external delegates need backend = \"tflite\"",
            );
            None
        }
        (Some(library), _) => check.library("detect.delegate", library).map(|library| {
            accelerator = Some(Accelerator::Delegate);
            DelegateSettings {
                library,
                options: raw.delegate_options.clone().into_iter().collect(),
            }
        }),
        (None, _) => {
            if !raw.delegate_options.is_empty() {
                check.fail(
                    "detect.delegate_options",
                    None,
                    "only used with detect.delegate",
                );
            }
            None
        }
    };
    let score_ok = |v: f32| (0.0..=1.0).contains(&v);
    let min_score = raw.min_score.unwrap_or(crate::detect::DEFAULT_MIN_SCORE);
    if !score_ok(min_score) {
        check.fail(
            "detect.min_score",
            Some(min_score.to_string()),
            "must be between 0 and 1",
        );
    }
    let classes: Vec<String> = match raw.classes {
        Some(classes) => classes,
        None => d.min_scores.keys().map(|c| c.name().to_string()).collect(),
    };
    let mut min_scores = BTreeMap::new();
    if classes.is_empty() {
        check.fail(
            "detect.classes",
            Some("[]".into()),
            "must name at least one class",
        );
    }
    for name in &classes {
        match name.parse::<Class>() {
            Ok(class) if min_scores.contains_key(&class) => check.fail(
                "detect.classes",
                Some(format!("{name:?}")),
                "is listed twice",
            ),
            Ok(class) => {
                min_scores.insert(class, min_score);
            }
            Err(reason) => check.fail("detect.classes", Some(format!("{name:?}")), reason),
        }
    }
    for (name, &score) in &raw.min_scores {
        let key = format!("detect.min_scores.{name}");
        match name.parse::<Class>() {
            Ok(class) if min_scores.contains_key(&class) => {
                if score_ok(score) {
                    min_scores.insert(class, score);
                } else {
                    check.fail(&key, Some(score.to_string()), "must be between 0 and 1");
                }
            }
            Ok(_) => check.fail(
                &key,
                Some(score.to_string()),
                "this class is not in detect.classes",
            ),
            Err(reason) => check.fail(&key, Some(score.to_string()), reason),
        }
    }
    if check.count() > before {
        return None;
    }
    Some(DetectSettings {
        model: model?,
        model_dir: model_dir?,
        backend: backend?,
        runtime: runtime?,
        accelerator: accelerator?,
        npu_dispatch_dir,
        threads,
        delegate,
        min_scores,
        letterbox: raw.letterbox.unwrap_or(d.letterbox),
    })
}
