//! Object detection on the real runtimes with the real models, checked
//! against the Python `ai-edge-litert` Interpreter on real footage nobody
//! here made (Debian opencv-doc samples), plus every kind of bad input.
//!
//! Needs what `models/fetch` (models, LiteRT and classic TFLite libraries)
//! and `tests/reference/setup` (the pinned Python reference) provide; both
//! run from here, cached under `${LUCIOLE_CACHE:-~/.cache/luciole}`.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use luciole::capture::{FrameLayout, FrameRef, PixelFormat, YuvEncoding};
use luciole::convert::Converter;
use luciole::detect::{
    self, Accelerator, Backend, Class, DelegateSettings, DetectError, DetectSettings, Detection,
    Detector,
};

use support::{repo, run, scratch, stderr, stdout};

/// Score and pixel tolerances against the reference.
const SCORE_TOLERANCE: f32 = 0.01;
const PIXEL_TOLERANCE: f32 = 1.0;
const COCO: &str = "mobilenet_ssd_v2_coco_quant_postprocess";
const OID: &str = "ssd_mobilenetv2_oidv4_fp16";

/// Runs a setup script once per test binary; returns its stdout's last line.
fn setup_script(cell: &'static OnceLock<String>, script: &str) -> &'static str {
    cell.get_or_init(|| support::repo_script(script))
}

/// The cache folder, with models and runtimes fetched.
fn cache() -> PathBuf {
    static FETCHED: OnceLock<String> = OnceLock::new();
    PathBuf::from(setup_script(&FETCHED, "models/fetch"))
}

/// The reference venv's python.
fn reference_python() -> PathBuf {
    static SETUP: OnceLock<String> = OnceLock::new();
    PathBuf::from(setup_script(&SETUP, "tests/reference/setup"))
}

fn manifest(name: &str) -> PathBuf {
    repo().join("models").join(format!("{name}.toml"))
}

fn litert_library(arch: &str) -> PathBuf {
    cache().join("runtime").join(arch).join("libLiteRt.so")
}

fn classic_library() -> PathBuf {
    cache().join("runtime/x86_64/libtensorflowlite_c.so")
}

fn settings(model: &str, backend: Backend) -> DetectSettings {
    let runtime = match backend {
        Backend::Litert => litert_library(std::env::consts::ARCH),
        Backend::Tflite => classic_library(),
    };
    DetectSettings {
        model: manifest(model),
        model_dir: cache().join("models"),
        backend,
        runtime,
        accelerator: Accelerator::Cpu,
        npu_dispatch_dir: None,
        threads: 2,
        delegate: None,
        min_scores: Class::ALL.iter().map(|c| (*c, 0.5)).collect(),
        letterbox: false,
    }
}

/// An RGB image decoded from a file.
struct Image {
    name: String,
    rgb: image::RgbImage,
}

impl Image {
    fn frame(&self) -> FrameRef<'_> {
        FrameRef {
            data: self.rgb.as_raw(),
            layout: FrameLayout {
                format: PixelFormat::Rgb24,
                width: self.rgb.width(),
                height: self.rgb.height(),
                stride: self.rgb.width() * 3,
                yuv: YuvEncoding::default(),
            },
            sequence: 0,
            timestamp: std::time::Duration::ZERO,
            stream: 0,
        }
    }
}

/// Real footage: three frames of vtest.avi (pedestrians, a parked van and
/// car) and licenseplate_motion.jpg (a car), as files and decoded.
fn footage() -> &'static [(PathBuf, Image)] {
    static IMAGES: OnceLock<Vec<(PathBuf, Image)>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let folder = support::footage();
        let out =
            std::env::temp_dir().join(format!("luciole-detect-frames-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let mut files = Vec::new();
        for seconds in [5, 30, 60] {
            let png = out.join(format!("vtest-{seconds:02}s.png"));
            let status = Command::new("ffmpeg")
                .args([
                    "-loglevel",
                    "error",
                    "-y",
                    "-ss",
                    &seconds.to_string(),
                    "-i",
                ])
                .arg(folder.join("vtest.avi"))
                .args(["-frames:v", "1"])
                .arg(&png)
                .status()
                .expect("ffmpeg runs");
            assert!(status.success(), "ffmpeg could not extract a frame");
            files.push(png);
        }
        files.push(folder.join("licenseplate_motion.jpg"));
        files
            .into_iter()
            .map(|path| {
                let rgb = image::open(&path).unwrap().to_rgb8();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (path, Image { name, rgb })
            })
            .collect()
    })
}

/// One detection of the reference.
#[derive(Debug, serde::Deserialize)]
struct Reference {
    label: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

#[derive(Debug, serde::Deserialize)]
struct ReferenceRun {
    detections: Vec<Reference>,
}

/// The Python reference on the very input tensor Luciole's pre-processing
/// makes from `image`.
fn reference(model: &str, image: &Image, dir: &Path) -> Vec<Reference> {
    let manifest_text = std::fs::read_to_string(manifest(model)).unwrap();
    let spec: toml::Table = toml::from_str(&manifest_text).unwrap();
    let input = spec["input"].as_table().unwrap();
    let (w, h) = (
        input["width"].as_integer().unwrap() as u32,
        input["height"].as_integer().unwrap() as u32,
    );
    let mut tensor = vec![0u8; (w * h * 3) as usize];
    Converter::new()
        .to_rgb_scaled(&image.frame(), w, h, &mut tensor)
        .unwrap();
    let raw = dir.join(format!("{model}-{}.rgb", image.name));
    std::fs::write(&raw, &tensor).unwrap();
    let output = Command::new(reference_python())
        .arg(repo().join("tests/reference/detect_reference.py"))
        .arg("--manifest")
        .arg(manifest(model))
        .arg("--model-dir")
        .arg(cache().join("models"))
        .arg("--input")
        .arg(&raw)
        .arg("--frame")
        .arg(format!("{}x{}", image.rgb.width(), image.rgb.height()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<ReferenceRun>(&output.stdout)
        .unwrap()
        .detections
}

fn detect_all(detector: &mut dyn Detector, image: &Image) -> Vec<Detection> {
    let mut found = Vec::new();
    detector.detect(&image.frame(), &mut found).unwrap();
    found
}

fn close(a: &Detection, class: &str, score: f32, bbox: [f32; 4], tolerance: (f32, f32)) -> bool {
    a.class.name() == class
        && (a.score - score).abs() <= tolerance.0
        && a.bbox
            .iter()
            .zip(bbox)
            .all(|(x, y)| (x - y).abs() <= tolerance.1)
}

/// Every detection of `expected` has its own match in `actual` within the
/// reference tolerances, and the counts agree.
fn assert_same(what: &str, actual: &[Detection], expected: &[(String, f32, [f32; 4])]) {
    assert_close(what, actual, expected, (SCORE_TOLERANCE, PIXEL_TOLERANCE));
}

/// As [`assert_same`], with (score, pixel) tolerances of its own.
fn assert_close(
    what: &str,
    actual: &[Detection],
    expected: &[(String, f32, [f32; 4])],
    tolerance: (f32, f32),
) {
    let mut unused: Vec<&Detection> = actual.iter().collect();
    for (class, score, bbox) in expected {
        let Some(at) = unused
            .iter()
            .position(|d| close(d, class, *score, *bbox, tolerance))
        else {
            panic!(
                "{what}: no match for {class} {score} {bbox:?}\n  got: {actual:#?}\n  expected: {expected:#?}"
            );
        };
        unused.remove(at);
    }
    assert!(
        unused.is_empty(),
        "{what}: detections beyond the expected ones: {unused:#?}\n  expected: {expected:#?}"
    );
}

fn as_expected(detections: &[Detection]) -> Vec<(String, f32, [f32; 4])> {
    detections
        .iter()
        .map(|d| (d.class.name().to_string(), d.score, d.bbox))
        .collect()
}

fn check_against_reference(model: &str) -> BTreeMap<Class, usize> {
    let dir = scratch(&format!("reference-{model}"));
    let mut detector = detect::open(&settings(model, Backend::Litert)).unwrap();
    let mut seen = BTreeMap::new();
    for (_, image) in footage() {
        let ours = detect_all(detector.as_mut(), image);
        let theirs: Vec<(String, f32, [f32; 4])> = reference(model, image, &dir)
            .into_iter()
            .map(|r| (r.label, r.score, r.bbox))
            .collect();
        assert_same(&format!("{model} on {}", image.name), &ours, &theirs);
        for d in &ours {
            *seen.entry(d.class).or_default() += 1;
        }
    }
    seen
}

#[test]
fn litert_detections_equal_the_python_reference_for_the_in_model_nms_ssd() {
    let seen = check_against_reference(COCO);
    // The footage holds pedestrians and cars: both must be found, or the
    // comparison above compared nothing.
    assert!(
        seen.get(&Class::Person).copied().unwrap_or(0) >= 5,
        "{seen:?}"
    );
    assert!(seen.get(&Class::Car).copied().unwrap_or(0) >= 1, "{seen:?}");
}

#[test]
fn litert_detections_equal_the_python_reference_for_the_raw_output_ssd() {
    let seen = check_against_reference(OID);
    assert!(
        seen.get(&Class::Person).copied().unwrap_or(0) >= 3,
        "{seen:?}"
    );
}

#[test]
fn the_classic_backend_gives_the_same_detections_as_litert_on_the_float_model() {
    let mut litert = detect::open(&settings(OID, Backend::Litert)).unwrap();
    let mut classic = detect::open(&settings(OID, Backend::Tflite)).unwrap();
    assert_eq!(classic.status().backend, Backend::Tflite);
    assert_eq!(classic.status().accelerator, Accelerator::Cpu);
    let mut total = 0;
    for (_, image) in footage() {
        let a = detect_all(litert.as_mut(), image);
        let b = detect_all(classic.as_mut(), image);
        assert_same(
            &format!("classic vs LiteRT on {}", image.name),
            &b,
            &as_expected(&a),
        );
        total += a.len();
    }
    assert!(total >= 3, "too few detections to compare: {total}");
}

fn iou(p: &[f32; 4], q: &[f32; 4]) -> f32 {
    let w = (p[2].min(q[2]) - p[0].max(q[0])).max(0.0);
    let h = (p[3].min(q[3]) - p[1].max(q[1])).max(0.0);
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(p) + area(q) - w * h)
}

/// TensorFlow Lite 2.6's 8-bit kernels round differently from LiteRT
/// 2.1's, so the quantised model's outputs differ by a few quantisation
/// steps between the two: the same objects and boxes (IoU of 0.9 or more;
/// measured: within 1.3 pixels), but the model's scores come in coarse
/// levels (8-bit logits through a sigmoid: 0.50, 0.58, 0.66, 0.73, 0.79,
/// 0.84, ...) and the runtimes can land one level apart, so a detection
/// near the threshold may cross it. Every confident detection of each must
/// be in the other, at most one score level away.
#[test]
fn the_classic_backend_finds_the_same_objects_as_litert_on_the_quantised_model() {
    let mut litert = detect::open(&settings(COCO, Backend::Litert)).unwrap();
    let mut classic = detect::open(&settings(COCO, Backend::Tflite)).unwrap();
    let mut compared = 0;
    for (_, image) in footage() {
        let a = detect_all(litert.as_mut(), image);
        let b = detect_all(classic.as_mut(), image);
        for (these, those, what) in [(&a, &b, "LiteRT"), (&b, &a, "classic")] {
            for d in these.iter().filter(|d| d.score >= 0.6) {
                let found = those.iter().any(|e| {
                    e.class == d.class
                        && (e.score - d.score).abs() <= 0.085
                        && iou(&e.bbox, &d.bbox) >= 0.9
                });
                assert!(
                    found,
                    "{}: {what} found {d:?}, the other did not:\n{a:#?}\n{b:#?}",
                    image.name
                );
                compared += 1;
            }
        }
    }
    assert!(
        compared >= 10,
        "too few confident detections to compare: {compared}"
    );
}

/// Builds the XNNPACK delegate plugin of tests/reference into `dir`.
fn build_plugin(dir: &Path) -> PathBuf {
    let plugin = dir.join("libxnnpack_plugin.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&plugin)
        .arg(repo().join("tests/reference/xnnpack_delegate_plugin.c"))
        .arg("-ldl")
        .status()
        .expect("a C compiler (cc) runs");
    assert!(status.success(), "building the delegate plugin failed");
    plugin
}

#[test]
fn an_external_delegate_plugin_runs_the_model_and_the_status_says_so() {
    let dir = scratch("delegate");
    let plugin = build_plugin(&dir);
    let mut with_delegate = settings(OID, Backend::Tflite);
    with_delegate.accelerator = Accelerator::Delegate;
    with_delegate.delegate = Some(DelegateSettings {
        library: plugin,
        options: vec![
            ("library".into(), classic_library().display().to_string()),
            ("num_threads".into(), "2".into()),
        ],
    });
    let mut delegated = detect::open(&with_delegate).unwrap();
    let status = delegated.status();
    assert_eq!(status.accelerator, Accelerator::Delegate, "{status:?}");
    assert_eq!(status.fallback, None);
    let mut litert = detect::open(&settings(OID, Backend::Litert)).unwrap();
    for (_, image) in footage() {
        let a = detect_all(litert.as_mut(), image);
        let b = detect_all(delegated.as_mut(), image);
        assert_same(
            &format!("delegate vs LiteRT on {}", image.name),
            &b,
            &as_expected(&a),
        );
    }
}

#[test]
fn a_delegate_that_refuses_its_options_falls_back_to_cpu_and_says_why() {
    let dir = scratch("delegate-refused");
    let mut asked = settings(COCO, Backend::Tflite);
    asked.accelerator = Accelerator::Delegate;
    asked.delegate = Some(DelegateSettings {
        library: build_plugin(&dir),
        options: vec![("colour".into(), "blue".into())],
    });
    let mut detector = detect::open(&asked).unwrap();
    let status = detector.status();
    assert_eq!(status.requested, Accelerator::Delegate);
    assert_eq!(status.accelerator, Accelerator::Cpu);
    let why = status.fallback.unwrap();
    assert!(why.contains("libxnnpack_plugin.so"), "{why}");
    assert!(why.contains("returned no delegate"), "{why}");
    // And it still detects.
    assert!(!detect_all(detector.as_mut(), &footage()[0].1).is_empty());
}

#[test]
fn a_gpu_asked_where_there_is_none_falls_back_to_cpu_and_says_so() {
    let mut asked = settings(COCO, Backend::Litert);
    asked.accelerator = Accelerator::Gpu;
    let mut detector = detect::open(&asked).unwrap();
    let status = detector.status();
    assert_eq!(status.requested, Accelerator::Gpu);
    assert_eq!(status.accelerator, Accelerator::Cpu, "{status:?}");
    assert!(status.fallback.unwrap().contains("compiling for gpu"));
    let mut cpu = detect::open(&settings(COCO, Backend::Litert)).unwrap();
    let image = &footage()[0].1;
    assert_same(
        "gpu fallback vs cpu",
        &detect_all(detector.as_mut(), image),
        &as_expected(&detect_all(cpu.as_mut(), image)),
    );
}

#[test]
fn an_npu_without_a_vendor_dispatch_library_falls_back_to_cpu() {
    let dir = scratch("npu");
    let mut asked = settings(COCO, Backend::Litert);
    asked.accelerator = Accelerator::Npu;
    asked.npu_dispatch_dir = Some(dir);
    let mut detector = detect::open(&asked).unwrap();
    let status = detector.status();
    assert_eq!(status.accelerator, Accelerator::Cpu, "{status:?}");
    assert!(status.fallback.unwrap().contains("compiling for npu"));
    assert!(!detect_all(detector.as_mut(), &footage()[0].1).is_empty());
}

#[test]
fn class_filter_and_per_class_thresholds_apply() {
    let mut only_cars = settings(COCO, Backend::Litert);
    only_cars.min_scores = BTreeMap::from([(Class::Car, 0.5)]);
    let mut all = detect::open(&settings(COCO, Backend::Litert)).unwrap();
    let mut cars = detect::open(&only_cars).unwrap();
    let mut strict = settings(COCO, Backend::Litert);
    strict.min_scores.insert(Class::Person, 0.85);
    let mut strict = detect::open(&strict).unwrap();
    for (_, image) in footage() {
        let everything = detect_all(all.as_mut(), image);
        let expected: Vec<_> = everything
            .iter()
            .filter(|d| d.class == Class::Car)
            .copied()
            .collect();
        assert_same(
            "cars only",
            &detect_all(cars.as_mut(), image),
            &as_expected(&expected),
        );
        let expected: Vec<_> = everything
            .iter()
            .filter(|d| d.class != Class::Person || d.score >= 0.85)
            .copied()
            .collect();
        assert_same(
            "strict people",
            &detect_all(strict.as_mut(), image),
            &as_expected(&expected),
        );
    }
}

#[test]
fn letterboxing_keeps_boxes_on_the_objects() {
    // A wide frame: the letterboxed input sees it undistorted; boxes must
    // still land on the same people, give or take the different scaling.
    let mut boxed = settings(COCO, Backend::Litert);
    boxed.letterbox = true;
    let mut boxed = detect::open(&boxed).unwrap();
    let mut plain = detect::open(&settings(COCO, Backend::Litert)).unwrap();
    let image = &footage()[1].1;
    let a = detect_all(plain.as_mut(), image);
    let b = detect_all(boxed.as_mut(), image);
    assert!(!b.is_empty());
    let matched = b
        .iter()
        .filter(|d| {
            a.iter()
                .any(|e| e.class == d.class && iou(&e.bbox, &d.bbox) > 0.5)
        })
        .count();
    assert!(
        matched * 2 >= b.len(),
        "{matched} of {} letterboxed boxes match: {b:#?} vs {a:#?}",
        b.len()
    );
}

// ---------------------------------------------------------------- bad input

/// A model folder holding a copy of the COCO model's files, for tampering.
fn model_copy(name: &str) -> (PathBuf, PathBuf) {
    let dir = scratch(name);
    for file in [
        "mobilenet_ssd_v2_coco_quant_postprocess.tflite",
        "coco_labels.txt",
    ] {
        std::fs::copy(cache().join("models").join(file), dir.join(file)).unwrap();
    }
    let manifest_copy = dir.join("model.toml");
    std::fs::copy(manifest(COCO), &manifest_copy).unwrap();
    (dir, manifest_copy)
}

fn open_err(settings: &DetectSettings) -> String {
    match detect::open(settings) {
        Ok(_) => panic!("opened: {settings:?}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_truncated_model_is_refused_with_its_name() {
    let (dir, manifest_copy) = model_copy("truncated");
    let model = dir.join("mobilenet_ssd_v2_coco_quant_postprocess.tflite");
    let bytes = std::fs::read(&model).unwrap();
    std::fs::write(&model, &bytes[..bytes.len() / 2]).unwrap();
    let mut s = settings(COCO, Backend::Litert);
    s.model = manifest_copy;
    s.model_dir = dir.clone();
    let err = open_err(&s);
    assert!(err.contains(&model.display().to_string()), "{err}");
    assert!(err.contains("truncated"), "{err}");

    // Straight to each runtime, past the manifest's size and sha256 checks.
    for backend in [Backend::Litert, Backend::Tflite] {
        let s = settings(COCO, backend);
        let err = match backend {
            Backend::Litert => detect::litert::LiteRtEngine::open(&model, &s).err(),
            Backend::Tflite => detect::tflite::TfLiteEngine::open(&model, &s).err(),
        }
        .unwrap_or_else(|| panic!("{backend:?} opened a truncated model"));
        assert!(
            matches!(err, DetectError::BadModel { .. }),
            "{backend:?}: {err}"
        );
        assert!(
            err.to_string().contains(&model.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_model_is_refused() {
    let dir = scratch("not-a-model");
    let png = &footage()[0].0;
    // A flatbuffer header followed by garbage gets past the identifier
    // check: the runtimes' own verifiers must refuse it.
    let mut forged = vec![0x1c, 0, 0, 0];
    forged.extend_from_slice(b"TFL3");
    forged.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let forged_path = dir.join("forged.tflite");
    std::fs::write(&forged_path, &forged).unwrap();
    for path in [png.as_path(), forged_path.as_path()] {
        for backend in [Backend::Litert, Backend::Tflite] {
            let s = settings(COCO, backend);
            let err = match backend {
                Backend::Litert => detect::litert::LiteRtEngine::open(path, &s).err(),
                Backend::Tflite => detect::tflite::TfLiteEngine::open(path, &s).err(),
            }
            .unwrap_or_else(|| panic!("{backend:?} opened {}", path.display()));
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("model {}", path.display())),
                "{text}"
            );
        }
    }
}

#[test]
fn a_model_with_unexpected_tensors_is_refused_naming_the_tensor() {
    // The raw-output float model under the COCO manifest.
    let dir = scratch("unexpected");
    let oid = "object_detection_ssd_mobilenetv2_oidv4_fp16.tflite";
    std::fs::copy(cache().join("models").join(oid), dir.join(oid)).unwrap();
    std::fs::copy(
        cache().join("models/coco_labels.txt"),
        dir.join("coco_labels.txt"),
    )
    .unwrap();
    let text = std::fs::read_to_string(manifest(COCO))
        .unwrap()
        .replace(
            "file = \"mobilenet_ssd_v2_coco_quant_postprocess.tflite\"",
            &format!("file = \"{oid}\""),
        )
        .replace(
            "7046f31a72ec0045a57b94199144c96cf5840c7dc106b808b64a1ed5559aa0cd",
            "d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6",
        )
        .replace("size = 6175408", "size = 9987728");
    let manifest_path = dir.join("wrong.toml");
    std::fs::write(&manifest_path, text).unwrap();
    for backend in [Backend::Litert, Backend::Tflite] {
        let mut s = settings(COCO, backend);
        s.model = manifest_path.clone();
        s.model_dir = dir.clone();
        let err = open_err(&s);
        assert!(err.contains("does not fit its manifest"), "{err}");
        assert!(err.contains("wrong.toml"), "{err}");
        assert!(
            err.contains("float32 [1, 300, 300, 3], the manifest says uint8"),
            "{err}"
        );
    }
    // Right input, wrong outputs: the float model declared as float but
    // with in-model NMS outputs.
    let text = std::fs::read_to_string(&manifest_path).unwrap().replace(
        "type = \"uint8\"",
        "type = \"float32\"\nrange = [-1.0, 1.0]",
    );
    std::fs::write(&manifest_path, text).unwrap();
    let mut s = settings(COCO, Backend::Litert);
    s.model = manifest_path;
    s.model_dir = dir;
    let err = open_err(&s);
    assert!(err.contains("2 outputs, the manifest names 4"), "{err}");
}

#[test]
fn a_runtime_for_another_architecture_is_refused_without_loading_it() {
    let foreign = if std::env::consts::ARCH == "aarch64" {
        "x86_64"
    } else {
        "aarch64"
    };
    let mut s = settings(COCO, Backend::Litert);
    s.runtime = litert_library(foreign);
    let err = open_err(&s);
    assert!(err.contains(&s.runtime.display().to_string()), "{err}");
    assert!(err.contains(&format!("built for {foreign}")), "{err}");

    // Not a library at all, a missing one, and the wrong library.
    s.runtime = cache().join("models/coco_labels.txt");
    assert!(open_err(&s).contains("not an ELF shared library"));
    s.runtime = PathBuf::from("/nonexistent/libLiteRt.so");
    assert!(open_err(&s).contains("cannot load"));
    s.runtime = classic_library();
    let err = open_err(&s);
    assert!(
        err.contains("does not export LiteRtCreateEnvironment"),
        "{err}"
    );
}

#[test]
fn a_manifest_mistake_names_the_manifest_and_key() {
    let (dir, manifest_copy) = model_copy("bad-manifest");
    let text = std::fs::read_to_string(&manifest_copy)
        .unwrap()
        .replace("person = \"person\"", "person = \"pedestrian\"");
    std::fs::write(&manifest_copy, text).unwrap();
    let mut s = settings(COCO, Backend::Litert);
    s.model = manifest_copy.clone();
    s.model_dir = dir;
    let err = open_err(&s);
    assert!(
        err.starts_with(&format!(
            "{}: classes.person: label \"pedestrian\" is not in",
            manifest_copy.display()
        )),
        "{err}"
    );
}

// ---------------------------------------------------------------------- CLI

fn write_detect_config(dir: &Path, extra: &str) -> PathBuf {
    let detect = format!(
        "source = \"v4l2\"\n\n[detect]\nmodel = \"{}\"\nmodel_dir = \"{}\"\nruntime = \"{}\"\n{extra}",
        manifest(COCO).display(),
        cache().join("models").display(),
        litert_library(std::env::consts::ARCH).display()
    );
    support::write_config(dir, "pole.toml", &detect)
}

#[test]
fn luciole_detect_prints_one_json_line_per_detection() {
    let dir = scratch("cli-detect");
    let config = write_detect_config(&dir, "classes = [\"person\", \"car\"]\n");
    let images: Vec<&Path> = footage().iter().map(|(p, _)| p.as_path()).collect();
    let mut args = vec!["detect", "--config", config.to_str().unwrap()];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    let output = run(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut detector = detect::open(&settings(COCO, Backend::Litert)).unwrap();
    let text = stdout(&output);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (path, image) in footage() {
        let printed: Vec<(String, f32, [f32; 4])> = lines
            .iter()
            .filter(|l| l["image"] == path.to_str().unwrap())
            .map(|l| {
                let b: Vec<f32> = l["box"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                (
                    l["label"].as_str().unwrap().to_string(),
                    l["score"].as_f64().unwrap() as f32,
                    [b[0], b[1], b[2], b[3]],
                )
            })
            .collect();
        let found: Vec<Detection> = detect_all(detector.as_mut(), image)
            .into_iter()
            .filter(|d| matches!(d.class, Class::Person | Class::Car))
            .collect();
        assert_same(&format!("CLI on {}", image.name), &found, &printed);
    }
    assert!(lines.len() >= 6, "{text}");
    assert!(
        stderr(&output).contains("detector ready"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn luciole_detect_without_a_detect_section_says_what_is_missing() {
    let dir = scratch("cli-no-detect");
    let config = support::write_config(&dir, "pole.toml", "source = \"v4l2\"\n");
    let output = run(&["detect", "--config", config.to_str().unwrap(), "x.png"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no [detect] section"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn luciole_detect_with_a_wrong_runtime_fails_cleanly() {
    let dir = scratch("cli-wrong-runtime");
    let config = write_detect_config(&dir, "");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &litert_library(std::env::consts::ARCH).display().to_string(),
        &litert_library("aarch64").display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let output = run(&[
        "detect",
        "--config",
        config.to_str().unwrap(),
        footage()[0].0.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("built for aarch64"),
        "{}",
        stderr(&output)
    );
}
