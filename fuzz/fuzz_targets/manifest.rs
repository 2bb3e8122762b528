//! Model manifests and label files: `luciole::detect::manifest`, through
//! `Model::load` on real files as the daemon opens a model, then the SSD
//! anchors the detector computes from an accepted manifest.
//!
//! The input is the manifest's text, then a line `#--labels--`, then the
//! label file's text. The harness writes both into a folder of its own
//! (with a model file of the size the manifest states), so file names that
//! leave that folder are not followed.
//!
//! Properties: no panic, no runaway memory; both label formats parse or
//! are refused with a reason.

#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use luciole::detect::manifest::{parse_labels, Manifest, Model, OutputKind};
use luciole::detect::postprocess::ssd_anchors;

const SEPARATOR: &str = "\n#--labels--\n";

/// One folder per fuzzing process, in memory when /dev/shm exists.
fn folder() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("luciole-fuzz-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a folder for the fuzzed files");
        dir
    })
}

/// A file name that stays in the folder.
fn plain(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (manifest_text, labels_text) = text.split_once(SEPARATOR).unwrap_or((text, ""));
    for format in ["id-name", "lines"] {
        if let Err(reason) = parse_labels(labels_text, format) {
            assert!(!reason.is_empty());
        }
    }
    let dir = folder();
    // Model::load reads what the manifest names: give it those files when
    // they stay in the folder, leave them absent otherwise.
    if let Ok(manifest) = toml::from_str::<Manifest>(manifest_text) {
        if !plain(&manifest.labels.file) || !plain(&manifest.file) {
            return;
        }
        if manifest.labels.file == "model.toml" || manifest.file == "model.toml" {
            return;
        }
        if std::fs::write(dir.join(&manifest.labels.file), labels_text).is_err() {
            return;
        }
        if manifest.file != manifest.labels.file {
            let Ok(model) = std::fs::File::create(dir.join(&manifest.file)) else {
                return;
            };
            // Sparse: no bytes written whatever the size.
            let _ = model.set_len(manifest.size.min(1 << 40));
        }
    }
    let manifest_path = dir.join("model.toml");
    std::fs::write(&manifest_path, manifest_text).expect("write the manifest");
    let loaded = Model::load(&manifest_path, dir);
    // Leave no file behind for the next input.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let Ok(model) = loaded else { return };
    assert!(!model.labels.is_empty());
    if let OutputKind::SsdRaw(params) = &model.output {
        let anchors = ssd_anchors(
            &params.anchors,
            model.manifest.input.width,
            model.manifest.input.height,
        );
        let _ = anchors.len();
    }
});
