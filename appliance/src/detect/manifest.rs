//! Model manifests (`models/*.toml`): what a model file is, where it came
//! from, what its input and outputs look like and which of its labels map to
//! Luciole's classes. Parsed with unknown keys refused, then checked, so a
//! mistake names the manifest and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{Class, DetectError};

/// A model manifest as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Short name, used in logs and status.
    pub name: String,
    /// The model file's name in the model folder.
    pub file: String,
    /// sha256 of the model file, checked when the model is opened.
    pub sha256: String,
    /// Size in bytes of the model file.
    pub size: u64,
    /// SPDX licence of the weights.
    pub licence: String,
    /// Where the weights come from, in words.
    pub provenance: String,
    /// The registry package carrying the file (read by `models/fetch`).
    pub source: Source,
    /// The label file.
    pub labels: LabelsSpec,
    /// Input tensor.
    pub input: InputSpec,
    /// Output tensors and how to decode them.
    pub output: OutputSpec,
    /// Luciole class name to model label; nothing else is ever reported.
    pub classes: BTreeMap<String, String>,
    /// The same network built for other hardware (e.g. `edgetpu`).
    #[serde(default)]
    pub twins: BTreeMap<String, Twin>,
}

/// A registry package and the member inside it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `npm` (the only registry models come from so far).
    pub registry: String,
    pub package: String,
    pub version: String,
    /// sha256 of the package archive.
    pub archive_sha256: String,
    /// Archive members to open in turn, outermost first.
    pub path: Vec<String>,
    /// Byte range `[start, end)` inside the last member.
    pub bytes: Option<[u64; 2]>,
}

/// The label file of a model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsSpec {
    pub file: String,
    pub sha256: String,
    pub path: Vec<String>,
    pub bytes: Option<[u64; 2]>,
    /// `id-name` (`"<id> <name>"` per line) or `lines` (line number is id).
    pub format: String,
}

/// Another build of the same network.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Twin {
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub path: Vec<String>,
}

/// The input tensor: `[1, height, width, 3]` RGB.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    /// `uint8` (pixels as they are) or `float32` (mapped to `range`).
    #[serde(rename = "type")]
    pub kind: String,
    /// For `float32`: the values 0 and 255 map to.
    pub range: Option<[f32; 2]>,
}

/// Output tensors and their decoding.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// `postprocess` (NMS inside the model) or `ssd-raw` (box encodings and
    /// class scores per anchor).
    pub kind: String,
    /// Output tensor roles in model order.
    pub tensors: Vec<String>,
    /// `ssd-raw`: `sigmoid` or `none` applied to class scores.
    pub score: Option<String>,
    /// `ssd-raw`: class ids never reported (background).
    #[serde(default)]
    pub ignore_classes: Vec<usize>,
    pub scale_y: Option<f32>,
    pub scale_x: Option<f32>,
    pub scale_h: Option<f32>,
    pub scale_w: Option<f32>,
    /// `ssd-raw`: IoU above which a box of the same class is suppressed.
    pub iou_threshold: Option<f32>,
    /// `ssd-raw`: most detections kept per frame.
    pub max_detections: Option<usize>,
    /// `ssd-raw`: the anchor layout.
    pub anchors: Option<AnchorSpec>,
}

/// SSD anchor layout (the parameters of MediaPipe's anchor generator).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AnchorSpec {
    pub num_layers: usize,
    pub min_scale: f32,
    pub max_scale: f32,
    pub strides: Vec<u32>,
    pub aspect_ratios: Vec<f32>,
    pub offset: f32,
    pub reduce_boxes_in_lowest_layer: bool,
    pub interpolated_scale_aspect_ratio: f32,
}

/// Element type of the input tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputType {
    Uint8,
    /// Float32, with the values that pixel 0 and pixel 255 map to.
    Float32 {
        low: f32,
        high: f32,
    },
}

/// How the outputs decode.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputKind {
    /// boxes, classes, scores, count: indices of each role in model order.
    PostProcess {
        boxes: usize,
        classes: usize,
        scores: usize,
        count: usize,
    },
    /// Raw SSD outputs.
    SsdRaw(SsdParams),
}

/// Decoding parameters of a raw SSD model.
#[derive(Clone, Debug, PartialEq)]
pub struct SsdParams {
    pub encodings: usize,
    pub scores: usize,
    pub sigmoid: bool,
    pub ignore_classes: Vec<usize>,
    /// Divisors for y, x, h, w encodings.
    pub scales: [f32; 4],
    pub iou_threshold: f32,
    pub max_detections: usize,
    pub anchors: AnchorSpec,
}

/// A manifest checked and resolved against its folder.
#[derive(Clone, Debug)]
pub struct Model {
    pub manifest: Manifest,
    /// The manifest file.
    pub manifest_path: PathBuf,
    /// The model file.
    pub path: PathBuf,
    pub input_type: InputType,
    pub output: OutputKind,
    /// Label of each model class id (ids without a label are absent).
    pub labels: BTreeMap<usize, String>,
    /// Model class id of each Luciole class the model can report.
    pub class_ids: BTreeMap<Class, usize>,
}

/// Most SSD anchors a manifest may describe (16 MB of anchors; real heads
/// have a few thousand, 1917 for SSD MobileNet at 300x300).
const MAX_ANCHORS: u64 = 1_000_000;

fn bad(path: &Path, key: &str, reason: impl Into<String>) -> DetectError {
    DetectError::Manifest {
        path: path.to_owned(),
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// A model or label file that cannot be read: which file, the reason once,
/// and what the person at the pole can do about it.
fn missing(
    manifest: &Path,
    key: &str,
    what: &str,
    file: &Path,
    err: &std::io::Error,
) -> DetectError {
    let folder = file.parent().unwrap_or(Path::new("."));
    let reason = match err.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => err.to_string(),
    };
    bad(
        manifest,
        key,
        format!(
            "{what} file {}: {reason}; install the model's files in {} (the model package does), or set detect.model_dir to the folder holding them",
            file.display(),
            folder.display()
        ),
    )
}

impl Model {
    /// Reads the manifest at `manifest_path` and the label file, looking for
    /// the model and label files in `model_dir`. The model file must exist
    /// and have the manifest's size; its sha256 is checked by
    /// [`Model::verify`] (hashing 10 MB costs a few tens of milliseconds,
    /// so callers choose when).
    pub fn load(manifest_path: &Path, model_dir: &Path) -> Result<Model, DetectError> {
        let text = std::fs::read_to_string(manifest_path).map_err(|source| DetectError::Io {
            path: manifest_path.to_owned(),
            what: "cannot read the model manifest",
            source,
        })?;
        let manifest: Manifest = toml::from_str(&text).map_err(|err| {
            let key = err.span().map(|span| {
                let line = text[..span.start].matches('\n').count() + 1;
                format!("line {line}")
            });
            bad(
                manifest_path,
                key.as_deref().unwrap_or("(file)"),
                err.message().trim(),
            )
        })?;
        let p = manifest_path;
        let input_type = match (manifest.input.kind.as_str(), manifest.input.range) {
            ("uint8", None) => InputType::Uint8,
            ("uint8", Some(_)) => {
                return Err(bad(p, "input.range", "only used with type = \"float32\""))
            }
            ("float32", Some([low, high])) if low < high => InputType::Float32 { low, high },
            ("float32", _) => {
                return Err(bad(
                    p,
                    "input.range",
                    "float32 input needs range = [low, high] with low < high",
                ))
            }
            (other, _) => {
                return Err(bad(
                    p,
                    "input.type",
                    format!("{other:?}: must be \"uint8\" or \"float32\""),
                ))
            }
        };
        if !(1..=4096).contains(&manifest.input.width)
            || !(1..=4096).contains(&manifest.input.height)
        {
            return Err(bad(p, "input.width", "width and height must be 1 to 4096"));
        }
        let output = output_kind(p, &manifest.output)?;
        if let OutputKind::SsdRaw(params) = &output {
            let (w, h) = (manifest.input.width, manifest.input.height);
            let count = super::postprocess::ssd_anchor_count(&params.anchors, w, h);
            if count > MAX_ANCHORS {
                return Err(bad(
                    p,
                    "output.anchors",
                    format!("{count} anchors over the {w}x{h} input, more than {MAX_ANCHORS}: are the strides or aspect_ratios right?"),
                ));
            }
        }
        let labels_path = model_dir.join(&manifest.labels.file);
        let labels_text = std::fs::read_to_string(&labels_path)
            .map_err(|err| missing(p, "labels.file", "label", &labels_path, &err))?;
        let labels = parse_labels(&labels_text, &manifest.labels.format).map_err(|reason| {
            bad(
                p,
                "labels.format",
                format!("{}: {reason}", labels_path.display()),
            )
        })?;
        let mut class_ids = BTreeMap::new();
        for (class, label) in &manifest.classes {
            let key = format!("classes.{class}");
            let class: Class = class
                .parse()
                .map_err(|reason: String| bad(p, &key, reason))?;
            let id = labels
                .iter()
                .find(|(_, name)| *name == label)
                .map(|(id, _)| *id)
                .ok_or_else(|| {
                    bad(
                        p,
                        &key,
                        format!("label {label:?} is not in {}", labels_path.display()),
                    )
                })?;
            class_ids.insert(class, id);
        }
        let path = model_dir.join(&manifest.file);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() == manifest.size => {}
            Ok(meta) => {
                return Err(DetectError::BadModel {
                    path,
                    reason: format!(
                        "{} bytes, the manifest {} says {} (truncated or another file?)",
                        meta.len(),
                        p.display(),
                        manifest.size
                    ),
                })
            }
            Err(err) => return Err(missing(p, "file", "model", &path, &err)),
        }
        Ok(Model {
            manifest,
            manifest_path: manifest_path.to_owned(),
            path,
            input_type,
            output,
            labels,
            class_ids,
        })
    }

    /// Checks the model file against the manifest's sha256.
    pub fn verify(&self) -> Result<(), DetectError> {
        let data = std::fs::read(&self.path).map_err(|source| DetectError::Io {
            path: self.path.clone(),
            what: "cannot read the model file",
            source,
        })?;
        let actual = sha256_hex(&data);
        if actual != self.manifest.sha256 {
            return Err(DetectError::BadModel {
                path: self.path.clone(),
                reason: format!(
                    "sha256 {actual} differs from {} in {}",
                    self.manifest.sha256,
                    self.manifest_path.display()
                ),
            });
        }
        Ok(())
    }
}

fn output_kind(p: &Path, spec: &OutputSpec) -> Result<OutputKind, DetectError> {
    let role = |name: &str| -> Result<usize, DetectError> {
        spec.tensors
            .iter()
            .position(|t| t == name)
            .ok_or_else(|| bad(p, "output.tensors", format!("must name a {name:?} tensor")))
    };
    match spec.kind.as_str() {
        "postprocess" => {
            if spec.tensors.len() != 4 {
                return Err(bad(
                    p,
                    "output.tensors",
                    "postprocess models have 4 outputs: boxes, classes, scores, count",
                ));
            }
            Ok(OutputKind::PostProcess {
                boxes: role("boxes")?,
                classes: role("classes")?,
                scores: role("scores")?,
                count: role("count")?,
            })
        }
        "ssd-raw" => {
            if spec.tensors.len() != 2 {
                return Err(bad(
                    p,
                    "output.tensors",
                    "ssd-raw models have 2 outputs: box_encodings, class_scores",
                ));
            }
            let need = |value: Option<f32>, key: &str| {
                value
                    .filter(|v| *v > 0.0)
                    .ok_or_else(|| bad(p, key, "needed for ssd-raw, and must be above 0"))
            };
            let sigmoid = match spec.score.as_deref() {
                Some("sigmoid") => true,
                Some("none") => false,
                _ => {
                    return Err(bad(
                        p,
                        "output.score",
                        "must be \"sigmoid\" or \"none\" for ssd-raw",
                    ))
                }
            };
            let iou = spec.iou_threshold.unwrap_or(0.5);
            if !(0.0..=1.0).contains(&iou) {
                return Err(bad(p, "output.iou_threshold", "must be between 0 and 1"));
            }
            let anchors = spec
                .anchors
                .clone()
                .ok_or_else(|| bad(p, "output.anchors", "needed for ssd-raw"))?;
            if anchors.num_layers == 0 || anchors.strides.len() != anchors.num_layers {
                return Err(bad(
                    p,
                    "output.anchors.strides",
                    "must list one stride per layer (num_layers)",
                ));
            }
            if anchors.strides.contains(&0) {
                return Err(bad(
                    p,
                    "output.anchors.strides",
                    "every stride must be at least 1",
                ));
            }
            Ok(OutputKind::SsdRaw(SsdParams {
                encodings: role("box_encodings")?,
                scores: role("class_scores")?,
                sigmoid,
                ignore_classes: spec.ignore_classes.clone(),
                scales: [
                    need(spec.scale_y, "output.scale_y")?,
                    need(spec.scale_x, "output.scale_x")?,
                    need(spec.scale_h, "output.scale_h")?,
                    need(spec.scale_w, "output.scale_w")?,
                ],
                iou_threshold: iou,
                max_detections: spec.max_detections.unwrap_or(100),
                anchors,
            }))
        }
        other => Err(bad(
            p,
            "output.kind",
            format!("{other:?}: must be \"postprocess\" or \"ssd-raw\""),
        )),
    }
}

/// Parses a label file: `id-name` lines (`"3  motorcycle"`) or plain
/// `lines` (the line number, from 0, is the id).
pub fn parse_labels(text: &str, format: &str) -> Result<BTreeMap<usize, String>, String> {
    let mut labels = BTreeMap::new();
    match format {
        "id-name" => {
            for (number, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let (id, name) = line
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| format!("line {}: expected \"<id> <name>\"", number + 1))?;
                let id = id
                    .parse()
                    .map_err(|_| format!("line {}: {id:?} is not a class id", number + 1))?;
                labels.insert(id, name.trim().to_string());
            }
        }
        "lines" => {
            for (id, line) in text.lines().enumerate() {
                labels.insert(id, line.trim().to_string());
            }
        }
        other => return Err(format!("{other:?}: must be \"id-name\" or \"lines\"")),
    }
    if labels.is_empty() {
        return Err("no labels".into());
    }
    Ok(labels)
}

/// SHA-256 of `data` in lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_digests() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // 56 bytes: the padding spills into a second block.
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn label_files_of_both_formats_parse_with_their_ids() {
        let coco = parse_labels("0  person\n1  bicycle\n12  stop sign\n", "id-name").unwrap();
        assert_eq!(coco[&12], "stop sign");
        assert_eq!(coco.len(), 3);
        let lines = parse_labels("???\nBicycle\nBoot\n", "lines").unwrap();
        assert_eq!(lines[&1], "Bicycle");
        assert!(parse_labels("person\n", "id-name").is_err());
        assert!(parse_labels("", "lines").is_err());
    }

    /// Writes a fuzz input (manifest, `#--labels--` line, label file) into
    /// a folder of its own, with an empty model file, and loads it.
    fn load_fuzz_input(name: &str, input: &str) -> Result<Model, DetectError> {
        let dir =
            std::env::temp_dir().join(format!("luciole-manifest-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (manifest, labels) = input.split_once("\n#--labels--\n").unwrap();
        let parsed: Manifest = toml::from_str(manifest).unwrap();
        std::fs::write(dir.join(&parsed.labels.file), labels).unwrap();
        std::fs::write(dir.join(&parsed.file), b"").unwrap();
        std::fs::write(dir.join("model.toml"), manifest).unwrap();
        let loaded = Model::load(&dir.join("model.toml"), &dir);
        std::fs::remove_dir_all(&dir).unwrap();
        loaded
    }

    /// Found by fuzzing (fuzz/regressions/manifest/huge-anchor-grid): stride
    /// 1 over a 4096x4096 input with 8 anchor shapes is 134 million anchors,
    /// 2 GB the detector would allocate when it opens the model.
    #[test]
    fn an_anchor_layout_of_millions_of_anchors_is_refused_when_loading() {
        let input = include_str!("../../../fuzz/regressions/manifest/huge-anchor-grid");
        let err = load_fuzz_input("anchors", input).unwrap_err().to_string();
        assert!(
            err.contains("output.anchors") && err.contains("134217728 anchors"),
            "{err}"
        );
    }
}
