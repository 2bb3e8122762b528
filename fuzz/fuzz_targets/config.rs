//! The pole's configuration file: any text through `luciole::config::parse`,
//! the daemon's own path from TOML to validated settings.
//!
//! The text is placed in `appliance/config/`, as the repository's example
//! files are, so their relative paths (the model manifests) resolve and a
//! valid file validates all the way. Properties: parsing never panics, and
//! every refusal names at least one problem whose text is not empty.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../appliance/config/fuzz.toml");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match luciole::config::parse(Path::new(FILE), text) {
        Ok(settings) => {
            // What the daemon derives from valid settings right after.
            let _ = settings.pipeline_options();
            let _ = settings.detector();
        }
        Err(err) => {
            let problems = err.problems();
            assert!(!problems.is_empty(), "a refusal without a problem: {err}");
            for problem in problems {
                assert!(
                    !problem.reason.trim().is_empty(),
                    "a problem without a reason: {err}"
                );
                if let Some(line) = problem.line {
                    let lines = text.lines().count().max(1) + 1;
                    assert!(line >= 1 && line <= lines, "line {line} of {lines}: {err}");
                }
            }
            let _ = err.to_string();
        }
    }
});
