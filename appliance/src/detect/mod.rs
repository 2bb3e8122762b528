//! Object detection: frames in, boxes of people and vehicles out.
//!
//! A [`Detector`] takes a [`FrameRef`] and returns [`Detection`]s in frame
//! pixels. The one implementation, [`ModelDetector`], runs a TFLite model
//! described by a manifest ([`manifest`]) on an inference [`Engine`]:
//!
//! - [`litert`]: the LiteRT 2.x C API (`libLiteRt.so`), CPU through
//!   XNNPACK with a thread count, or a GPU / NPU accelerator with fallback to
//!   CPU when the asked one cannot take the model;
//! - [`tflite`]: the classic TensorFlow Lite C API
//!   (`libtensorflowlite_c.so`), optionally with an external delegate
//!   (`libedgetpu.so.1` for Coral, `libvx_delegate.so` for NXP NPUs).
//!
//! Both libraries are loaded at run time from a configured path, so the
//! daemon builds and runs its other stages without them, and a missing or
//! wrong library is an error that names it.
//!
//! Pre-processing converts the frame straight into the input tensor's own
//! memory ([`Converter::to_rgb_scaled`]); post-processing
//! ([`postprocess`]) is pure code, tested without a runtime.
//!
//! Privacy: only [`Class`]es can come out (people and vehicles), and only
//! boxes and scores: no crops, no appearance features.

/// Declares a runtime library's C functions as one `Api` struct, resolved
/// once by `Api::load(path)` (which first checks the file's architecture).
/// `$what` names the expected library in the error for a missing symbol.
macro_rules! runtime_api {
    ($what:literal; $($name:ident: fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        #[allow(non_snake_case)]
        struct Api {
            $($name: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            /// Never unloaded: the runtime keeps process-wide state (op and
            /// accelerator registries, thread pools) whose destructors run
            /// at exit, after an unload they would crash the process.
            _library: ManuallyDrop<Library>,
        }

        #[allow(non_snake_case)]
        impl Api {
            fn load(path: &Path) -> Result<Api, DetectError> {
                check_elf_arch(path)?;
                // SAFETY: loading runs the library's initialisers, which only
                // set up the runtime's own state.
                let library = unsafe { Library::new(path) }.map_err(|err| DetectError::Runtime {
                    path: path.to_owned(),
                    reason: format!("cannot load: {err}"),
                })?;
                $(
                    // SAFETY: the signature is the one of the runtime's C header.
                    let $name = *unsafe {
                        library.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                            concat!(stringify!($name), "\0").as_bytes(),
                        )
                    }
                    .map_err(|_| DetectError::Runtime {
                        path: path.to_owned(),
                        reason: format!("does not export {}: not {}", stringify!($name), $what),
                    })?;
                )*
                Ok(Api { $($name,)* _library: ManuallyDrop::new(library) })
            }
        }
    };
}

pub mod fake;
pub mod litert;
pub mod manifest;
pub mod postprocess;
pub mod tflite;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::capture::FrameRef;
use crate::convert::{ConvertError, Converter};
use manifest::{InputType, Model, OutputKind};
use postprocess::{Anchor, Candidate, ClassMap, Geometry};

/// What Luciole may detect. Nothing else is ever reported, whatever the
/// model knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Person,
    Bicycle,
    Car,
    Motorcycle,
    Bus,
    Truck,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::Person,
        Class::Bicycle,
        Class::Car,
        Class::Motorcycle,
        Class::Bus,
        Class::Truck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::Person => "person",
            Class::Bicycle => "bicycle",
            Class::Car => "car",
            Class::Motorcycle => "motorcycle",
            Class::Bus => "bus",
            Class::Truck => "truck",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Class {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Class::ALL
            .into_iter()
            .find(|c| c.name() == text)
            .ok_or_else(|| {
                format!(
                    "unknown class {text:?}: expected one of person, bicycle, car, motorcycle, bus, truck"
                )
            })
    }
}

/// One detected object.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Detection {
    pub class: Class,
    pub score: f32,
    /// `[x0, y0, x1, y1]` in frame pixels.
    pub bbox: [f32; 4],
}

impl Detection {
    /// The middle of the box's bottom edge: where the object stands.
    pub fn foot(&self) -> [f32; 2] {
        [(self.bbox[0] + self.bbox[2]) / 2.0, self.bbox[3]]
    }
}

/// The inference library in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// LiteRT 2.x C API (`libLiteRt.so`).
    Litert,
    /// Classic TensorFlow Lite C API (`libtensorflowlite_c.so`).
    Tflite,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Litert => "litert",
            Backend::Tflite => "tflite",
        }
    }

    /// The library loaded when the configuration names none: found through
    /// the system's library search path.
    pub fn default_library(self) -> &'static str {
        match self {
            Backend::Litert => "libLiteRt.so",
            Backend::Tflite => "libtensorflowlite_c.so",
        }
    }
}

/// Hardware that runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    Cpu,
    Gpu,
    Npu,
    /// An external delegate of the classic backend.
    Delegate,
}

impl Accelerator {
    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Cpu => "cpu",
            Accelerator::Gpu => "gpu",
            Accelerator::Npu => "npu",
            Accelerator::Delegate => "delegate",
        }
    }
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An external delegate for the classic backend.
#[derive(Clone, Debug, PartialEq)]
pub struct DelegateSettings {
    /// The plugin library (exports `tflite_plugin_create_delegate`).
    pub library: PathBuf,
    /// Key/value options handed to the plugin.
    pub options: Vec<(String, String)>,
}

/// Detection settings, validated (see the `[detect]` configuration section).
#[derive(Clone, Debug, PartialEq)]
pub struct DetectSettings {
    /// The model manifest.
    pub model: PathBuf,
    /// The folder holding the model and label files.
    pub model_dir: PathBuf,
    pub backend: Backend,
    /// The runtime library: a path, or a bare name for the system search.
    pub runtime: PathBuf,
    pub accelerator: Accelerator,
    /// LiteRT NPU: the folder of the vendor's `libLiteRtDispatch_*.so`.
    pub npu_dispatch_dir: Option<PathBuf>,
    /// CPU threads for inference.
    pub threads: u32,
    pub delegate: Option<DelegateSettings>,
    /// The classes to report, each with its minimum score.
    pub min_scores: BTreeMap<Class, f32>,
    /// Keep the frame's aspect ratio (pad) instead of stretching it.
    pub letterbox: bool,
}

/// The minimum score of a reported detection when the configuration
/// names none (`detect.min_score`); also the tracker's confidence threshold
/// when there is no detector.
pub const DEFAULT_MIN_SCORE: f32 = 0.5;

impl DetectSettings {
    /// The model described by the manifest at `model` (its files beside
    /// it), on LiteRT's CPU with 2 threads, reporting every class from
    /// [`DEFAULT_MIN_SCORE`], stretched to the input size.
    pub fn new(model: PathBuf) -> Self {
        let model_dir = model.parent().unwrap_or(Path::new(".")).to_owned();
        let backend = Backend::Litert;
        Self {
            model,
            model_dir,
            backend,
            runtime: PathBuf::from(backend.default_library()),
            accelerator: Accelerator::Cpu,
            npu_dispatch_dir: None,
            threads: 2,
            delegate: None,
            min_scores: Class::ALL.iter().map(|&c| (c, DEFAULT_MIN_SCORE)).collect(),
            letterbox: false,
        }
    }

    /// The same detector reporting down to `low` for every class: the
    /// tracker keeps the weak detections to hold tracks (ByteTrack's second
    /// round) and splits them from confident ones with the configured
    /// per-class scores.
    pub fn reporting_down_to(&self, low: f32) -> DetectSettings {
        let mut settings = self.clone();
        for score in settings.min_scores.values_mut() {
            *score = score.min(low);
        }
        settings
    }
}

/// What a detector reports about itself: what was asked and what runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DetectorStatus {
    pub backend: Backend,
    /// The runtime library as loaded.
    pub runtime: PathBuf,
    /// The model's name (from its manifest).
    pub model: String,
    /// The accelerator the configuration asked for.
    pub requested: Accelerator,
    /// The accelerator actually in use.
    pub accelerator: Accelerator,
    /// Why the asked accelerator is not the one in use.
    pub fallback: Option<String>,
    pub threads: u32,
}

/// Time spent in each step of the last frame.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    pub preprocess: Duration,
    pub inference: Duration,
    pub postprocess: Duration,
}

/// Errors of detection. Each names the file concerned and the reason.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {key}: {reason}")]
    Manifest {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("runtime library {path}: {reason}")]
    Runtime { path: PathBuf, reason: String },
    #[error("model {path}: {reason}")]
    BadModel { path: PathBuf, reason: String },
    #[error("model {path} does not fit its manifest {manifest}: {reason}")]
    UnexpectedTensors {
        path: PathBuf,
        manifest: PathBuf,
        reason: String,
    },
    #[error("delegate {path}: {reason}")]
    Delegate { path: PathBuf, reason: String },
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("frame conversion failed: {0}")]
    Convert(#[from] ConvertError),
}

/// Element types of tensors, as both C APIs number them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
    Float32,
    Uint8,
    Other(i32),
}

impl ElementType {
    /// From the TfLiteType / LiteRtElementType number (they agree).
    pub fn from_code(code: i32) -> Self {
        match code {
            1 => ElementType::Float32,
            3 => ElementType::Uint8,
            other => ElementType::Other(other),
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElementType::Float32 => f.write_str("float32"),
            ElementType::Uint8 => f.write_str("uint8"),
            ElementType::Other(code) => write!(f, "type #{code}"),
        }
    }
}

/// Shape and type of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub element: ElementType,
    pub dims: Vec<i32>,
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {} {:?}", self.name, self.element, self.dims)
    }
}

/// An inference runtime holding one compiled model with one input and
/// float32 outputs.
pub trait Engine: Send {
    /// The input tensor.
    fn input(&self) -> &TensorInfo;
    /// The output tensors, in model order, with their run-time shapes.
    fn outputs(&self) -> &[TensorInfo];
    /// Lends the input tensor's memory to `fill`.
    fn write_input(
        &mut self,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), DetectError>,
    ) -> Result<(), DetectError>;
    /// Runs the model once.
    fn invoke(&mut self) -> Result<(), DetectError>;
    /// Lends the output tensors' memory to `read`, in model order.
    fn read_outputs(&mut self, read: &mut dyn FnMut(&[&[f32]])) -> Result<(), DetectError>;
    /// What runs, and why it is not what was asked if so.
    fn status(&self) -> DetectorStatus;
}

/// Finds objects in frames.
pub trait Detector: Send {
    /// Detects objects in `frame`, replacing the contents of `out`.
    fn detect(&mut self, frame: &FrameRef<'_>, out: &mut Vec<Detection>)
        -> Result<(), DetectError>;
    /// Backend, accelerator actually used, threads.
    fn status(&self) -> DetectorStatus;
    /// Time spent in each step of the last call to `detect`.
    fn timings(&self) -> Timings;
}

/// Opens the configured model on the configured runtime.
pub fn open(settings: &DetectSettings) -> Result<Box<dyn Detector>, DetectError> {
    let model = Model::load(&settings.model, &settings.model_dir)?;
    model.verify()?;
    let engine: Box<dyn Engine> = match settings.backend {
        Backend::Litert => Box::new(litert::LiteRtEngine::open(&model.path, settings)?),
        Backend::Tflite => Box::new(tflite::TfLiteEngine::open(&model.path, settings)?),
    };
    Ok(Box::new(ModelDetector::new(engine, model, settings)?))
}

/// A model on an engine, with its pre- and post-processing.
pub struct ModelDetector {
    engine: Box<dyn Engine>,
    model: Model,
    map: ClassMap,
    anchors: Vec<Anchor>,
    num_classes: usize,
    letterbox: bool,
    converter: Converter,
    /// Scaled RGB when it cannot go straight into the input tensor (float
    /// models, letterboxing).
    scratch: Vec<u8>,
    /// Input value of each pixel value, for float models.
    float_lut: Option<[f32; 256]>,
    candidates: Vec<Candidate>,
    timings: Timings,
}

impl ModelDetector {
    /// Checks that `engine`'s tensors are what the manifest describes.
    pub fn new(
        engine: Box<dyn Engine>,
        model: Model,
        settings: &DetectSettings,
    ) -> Result<Self, DetectError> {
        let unexpected = |reason: String| DetectError::UnexpectedTensors {
            path: model.path.clone(),
            manifest: model.manifest_path.clone(),
            reason,
        };
        let spec = &model.manifest.input;
        let input = engine.input();
        let want_dims = [1, spec.height as i32, spec.width as i32, 3];
        let want_type = match model.input_type {
            InputType::Uint8 => ElementType::Uint8,
            InputType::Float32 { .. } => ElementType::Float32,
        };
        if input.dims != want_dims || input.element != want_type {
            return Err(unexpected(format!(
                "input is {input}, the manifest says {want_type} {want_dims:?}"
            )));
        }
        let outputs = engine.outputs();
        if outputs.len() != model.manifest.output.tensors.len() {
            return Err(unexpected(format!(
                "{} outputs, the manifest names {} ({})",
                outputs.len(),
                model.manifest.output.tensors.len(),
                model.manifest.output.tensors.join(", ")
            )));
        }
        if let Some(t) = outputs.iter().find(|t| t.element != ElementType::Float32) {
            return Err(unexpected(format!("output {t} is not float32")));
        }
        let shape_err = |role: &str, t: &TensorInfo, want: &str| {
            unexpected(format!("output {role:?} is {t}, expected {want}"))
        };
        let mut anchors = Vec::new();
        let mut num_classes = 0;
        match &model.output {
            OutputKind::PostProcess {
                boxes,
                classes,
                scores,
                count,
            } => {
                let b = &outputs[*boxes];
                let n = b.dims.get(1).copied().unwrap_or(0);
                if b.dims.len() != 3 || b.dims[2] != 4 || n < 1 {
                    return Err(shape_err("boxes", b, "[1, N, 4]"));
                }
                for (role, index) in [("classes", classes), ("scores", scores)] {
                    let t = &outputs[*index];
                    if t.dims != [1, n] {
                        return Err(shape_err(role, t, &format!("[1, {n}]")));
                    }
                }
                let c = &outputs[*count];
                if c.dims.iter().product::<i32>() != 1 {
                    return Err(shape_err("count", c, "one value"));
                }
            }
            OutputKind::SsdRaw(params) => {
                anchors = postprocess::ssd_anchors(&params.anchors, spec.width, spec.height);
                let a = anchors.len() as i32;
                let e = &outputs[params.encodings];
                if e.dims != [1, a, 4] {
                    return Err(shape_err(
                        "box_encodings",
                        e,
                        &format!("[1, {a}, 4] for {a} anchors"),
                    ));
                }
                let s = &outputs[params.scores];
                let max_id = model.class_ids.values().max().copied().unwrap_or(0) as i32;
                if s.dims.len() != 3 || s.dims[..2] != [1, a] || s.dims[2] <= max_id {
                    return Err(shape_err(
                        "class_scores",
                        s,
                        &format!("[1, {a}, C] with C > {max_id}"),
                    ));
                }
                num_classes = s.dims[2] as usize;
            }
        }
        let unknown: Vec<&str> = settings
            .min_scores
            .keys()
            .filter(|class| !model.class_ids.contains_key(class))
            .map(|class| class.name())
            .collect();
        if !unknown.is_empty() {
            tracing::warn!(
                model = %model.manifest.name,
                "the model cannot detect {}: never reported",
                unknown.join(", ")
            );
        }
        let map = ClassMap::new(&model.class_ids, &settings.min_scores);
        let float_lut = match model.input_type {
            InputType::Uint8 => None,
            InputType::Float32 { low, high } => {
                let mut lut = [0f32; 256];
                for (value, slot) in lut.iter_mut().enumerate() {
                    *slot = low + (high - low) * value as f32 / 255.0;
                }
                Some(lut)
            }
        };
        Ok(Self {
            engine,
            model,
            map,
            anchors,
            num_classes,
            letterbox: settings.letterbox,
            converter: Converter::new(),
            scratch: Vec::new(),
            float_lut,
            candidates: Vec::new(),
            timings: Timings::default(),
        })
    }

    /// The model this detector runs.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Fills the input tensor from `frame`; returns where the frame landed.
    fn preprocess(&mut self, frame: &FrameRef<'_>) -> Result<Geometry, DetectError> {
        let (in_w, in_h) = (
            self.model.manifest.input.width,
            self.model.manifest.input.height,
        );
        let (fw, fh) = (frame.layout.width, frame.layout.height);
        let (geometry, place) = if self.letterbox {
            Geometry::letterboxed(fw, fh, in_w, in_h)
        } else {
            (Geometry::stretched(fw, fh), [0, 0, in_w, in_h])
        };
        let [left, top, w, h] = place;
        let direct = self.float_lut.is_none() && !self.letterbox;
        if !direct {
            self.scratch.resize(w as usize * h as usize * 3, 0);
            self.converter
                .to_rgb_scaled(frame, w, h, &mut self.scratch)?;
        }
        let converter = &mut self.converter;
        let scratch = &self.scratch;
        let lut = self.float_lut;
        self.engine.write_input(&mut |input: &mut [u8]| {
            if direct {
                return Ok(converter.to_rgb_scaled(frame, in_w, in_h, input)?);
            }
            match &lut {
                None => place_rows(input, scratch, [left, top, w, in_w], 0u8, |v| v),
                Some(lut) => {
                    let floats = as_f32_mut(input).ok_or_else(|| {
                        DetectError::Inference("float input tensor is not 4-byte aligned".into())
                    })?;
                    place_rows(floats, scratch, [left, top, w, in_w], lut[0], |v| {
                        lut[v as usize]
                    });
                }
            }
            Ok(())
        })?;
        Ok(geometry)
    }

    fn postprocess(
        &mut self,
        geometry: &Geometry,
        out: &mut Vec<Detection>,
    ) -> Result<(), DetectError> {
        let candidates = &mut self.candidates;
        candidates.clear();
        let map = &self.map;
        let anchors = &self.anchors;
        let num_classes = self.num_classes;
        let output = &self.model.output;
        self.engine
            .read_outputs(&mut |tensors: &[&[f32]]| match output {
                OutputKind::PostProcess {
                    boxes,
                    classes,
                    scores,
                    count,
                } => postprocess::decode_postprocess(
                    tensors[*boxes],
                    tensors[*classes],
                    tensors[*scores],
                    tensors[*count],
                    map,
                    candidates,
                ),
                OutputKind::SsdRaw(params) => {
                    postprocess::decode_ssd(
                        tensors[params.encodings],
                        tensors[params.scores],
                        num_classes,
                        anchors,
                        params,
                        map,
                        candidates,
                    );
                    postprocess::nms_per_class(
                        candidates,
                        params.iou_threshold,
                        params.max_detections,
                    );
                }
            })?;
        out.clear();
        out.extend(candidates.iter().map(|c| Detection {
            class: c.class,
            score: c.score,
            bbox: geometry.to_pixels(c),
        }));
        Ok(())
    }
}

/// Copies `w`-pixel RGB rows of `src` into `dst` (rows of `stride` pixels)
/// at (`left`, `top`), mapping each byte; the rest of `dst` gets `pad`.
fn place_rows<T: Copy>(
    dst: &mut [T],
    src: &[u8],
    [left, top, w, stride]: [u32; 4],
    pad: T,
    map: impl Fn(u8) -> T,
) {
    let row_len = w as usize * 3;
    let (left, top, stride) = (left as usize * 3, top as usize, stride as usize * 3);
    let rows = src.len().checked_div(row_len).unwrap_or(0);
    if left > 0 || top > 0 || rows * stride < dst.len() {
        dst.fill(pad);
    }
    for (y, row) in src.chunks_exact(row_len.max(1)).enumerate().take(rows) {
        let start = (top + y) * stride + left;
        for (d, s) in dst[start..start + row_len].iter_mut().zip(row) {
            *d = map(*s);
        }
    }
}

/// The bytes of a float tensor as floats, when aligned (runtimes align
/// tensor memory to at least 16 bytes).
fn as_f32_mut(bytes: &mut [u8]) -> Option<&mut [f32]> {
    // SAFETY: every bit pattern is a valid f32, and align_to_mut only
    // returns a middle part that is correctly aligned.
    let (head, floats, tail) = unsafe { bytes.align_to_mut::<f32>() };
    (head.is_empty() && tail.is_empty()).then_some(floats)
}

impl Detector for ModelDetector {
    fn detect(
        &mut self,
        frame: &FrameRef<'_>,
        out: &mut Vec<Detection>,
    ) -> Result<(), DetectError> {
        let start = Instant::now();
        let geometry = self.preprocess(frame)?;
        let pre = Instant::now();
        self.engine.invoke()?;
        let inferred = Instant::now();
        self.postprocess(&geometry, out)?;
        self.timings = Timings {
            preprocess: pre - start,
            inference: inferred - pre,
            postprocess: inferred.elapsed(),
        };
        Ok(())
    }

    fn status(&self) -> DetectorStatus {
        let mut status = self.engine.status();
        status.model = self.model.manifest.name.clone();
        status
    }

    fn timings(&self) -> Timings {
        self.timings
    }
}

/// ELF machine of a shared library, to refuse one built for another
/// architecture with a clear message instead of the loader's.
pub(crate) fn check_elf_arch(path: &Path) -> Result<(), DetectError> {
    use std::io::Read;
    let mut header = [0u8; 20];
    let Ok(mut file) = std::fs::File::open(path) else {
        // A bare library name goes through the loader's search path;
        // dlopen reports what it does not find.
        return Ok(());
    };
    let runtime = |reason: String| DetectError::Runtime {
        path: path.to_owned(),
        reason,
    };
    file.read_exact(&mut header)
        .map_err(|_| runtime("too short to be a shared library".into()))?;
    if &header[..4] != b"\x7fELF" {
        return Err(runtime("not an ELF shared library".into()));
    }
    let machine = u16::from_le_bytes([header[18], header[19]]);
    let built_for = match machine {
        0x3e => "x86_64",
        0xb7 => "aarch64",
        0x28 => "arm",
        0x03 => "x86",
        0xf3 => "riscv64",
        _ => "an unknown architecture",
    };
    if built_for != std::env::consts::ARCH {
        return Err(runtime(format!(
            "built for {built_for} (ELF machine {machine:#x}), this is {}; use the runtime of this architecture",
            std::env::consts::ARCH
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_placed_with_padding_around_them() {
        let src = [1u8, 2, 3, 4, 5, 6]; // one row of 2 pixels
        let mut dst = [9u8; 3 * 2 * 3]; // 3x2 pixels
        place_rows(&mut dst, &src, [1, 1, 2, 3], 0, |v| v * 10);
        assert_eq!(
            dst,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 20, 30, 40, 50, 60]
        );
    }

    #[test]
    fn classes_parse_by_their_names_only() {
        assert_eq!("motorcycle".parse::<Class>(), Ok(Class::Motorcycle));
        assert!("face"
            .parse::<Class>()
            .unwrap_err()
            .contains("unknown class"));
    }
}
