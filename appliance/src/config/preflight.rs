//! The start-up checks: what the daemon verifies before it opens a device
//! or the network, beyond the file's own keys. Credentials and certificates
//! are read and must be what `[mqtt]` says (PEM, a non-empty password), the
//! model manifest, label and model files are loaded and checked against the
//! manifest, and the runtime and delegate libraries are loaded once.
//!
//! The daemon's start-up, its reload on SIGHUP and `luciole check-config`
//! all run these checks through [`super::load_for_daemon`], so a file
//! `check-config` accepts is a file the daemon starts with.

use std::path::Path;

use super::check::Check;
use super::Settings;
use crate::detect::manifest::Model;
use crate::detect::{DetectError, DetectSettings};
use crate::publish::MqttSettings;

/// Records every start-up problem of `settings` in `check`.
pub(super) fn run(settings: &Settings, check: &mut Check<'_, '_>) {
    if let Some(mqtt) = &settings.mqtt {
        credentials(mqtt, check);
    }
    if let Some(detect) = &settings.detect {
        model(detect, check);
        libraries(detect, check);
    }
}

fn shown(path: &Path) -> Option<String> {
    Some(format!("{:?}", path.display().to_string()))
}

fn credentials(mqtt: &MqttSettings, check: &mut Check<'_, '_>) {
    if let (Some(_), Some(path)) = (&mqtt.username, &mqtt.password_file) {
        match std::fs::read(path) {
            Err(err) => check.fail(
                "mqtt.password_file",
                shown(path),
                format!("cannot read: {err}"),
            ),
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let first = text.lines().next().unwrap_or("");
                if first.is_empty() {
                    let reason = if bytes.is_empty() {
                        "the file is empty: its first line must be the password"
                    } else {
                        "the first line is empty: it must be the password"
                    };
                    check.fail("mqtt.password_file", shown(path), reason);
                }
            }
        }
    }
    if let Some(tls) = &mqtt.tls {
        pem(check, "mqtt.ca_file", &tls.ca_file, Pem::Certificate);
        if let Some((cert, key)) = &tls.client_cert {
            pem(check, "mqtt.client_cert_file", cert, Pem::Certificate);
            pem(check, "mqtt.client_key_file", key, Pem::PrivateKey);
        }
    }
}

/// What a PEM file of `[mqtt]` must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pem {
    Certificate,
    PrivateKey,
}

impl Pem {
    fn label(self) -> &'static str {
        match self {
            Pem::Certificate => "CERTIFICATE",
            Pem::PrivateKey => "PRIVATE KEY",
        }
    }

    /// The `openssl` command that turns a DER file of this kind into PEM.
    fn convert(self, path: &Path) -> String {
        let tool = match self {
            Pem::Certificate => "x509",
            Pem::PrivateKey => "pkey",
        };
        let p = path.display();
        format!("openssl {tool} -inform der -in {p} -out {p}.pem")
    }
}

/// Why `bytes` is not a PEM file holding at least one `kind` block, or
/// `None` when it is. `path` only names the file in the hint.
pub fn pem_problem(bytes: &[u8], kind: Pem, path: &Path) -> Option<String> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Some("the file is empty".into());
    }
    // A DER file is an ASN.1 SEQUENCE: it starts with 0x30.
    let pem_marker = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if bytes[0] == 0x30 && !pem_marker {
        return Some(format!(
            "binary DER, not PEM: convert it with `{}` and name the .pem file here",
            kind.convert(path)
        ));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Some(format!(
            "not a PEM file (binary content, no -----BEGIN {}----- block)",
            kind.label()
        ));
    };
    let mut found = 0;
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut closed = false;
        for body in lines.by_ref() {
            if body == end {
                closed = true;
                break;
            }
            let base64 = body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
            // Encrypted keys of the old OpenSSL form carry headers.
            if !base64 && !body.contains(':') {
                return Some(format!("the {label} block holds a line that is not base64"));
            }
        }
        if !closed {
            return Some(format!("the {label} block has no `{end}` line"));
        }
        if label.ends_with(kind.label()) {
            found += 1;
        }
    }
    if found == 0 {
        return Some(format!(
            "not a PEM file of the expected kind: no -----BEGIN {}----- block",
            kind.label()
        ));
    }
    None
}

fn pem(check: &mut Check<'_, '_>, key: &str, path: &Path, kind: Pem) {
    match std::fs::read(path) {
        Err(err) => check.fail(key, shown(path), format!("cannot read: {err}")),
        Ok(bytes) => {
            if let Some(reason) = pem_problem(&bytes, kind, path) {
                check.fail(key, shown(path), reason);
            }
        }
    }
}

/// The manifest, labels and model file, as the detector loads them.
fn model(detect: &DetectSettings, check: &mut Check<'_, '_>) {
    let outcome = Model::load(&detect.model, &detect.model_dir).and_then(|m| m.verify());
    if let Err(err) = outcome {
        // Problems of the manifest itself belong to detect.model; files
        // missing or wrong in the model folder to detect.model_dir.
        let key = match &err {
            DetectError::Io { path, .. } if path == &detect.model => "detect.model",
            DetectError::Manifest { key, .. } if key != "labels.file" && key != "file" => {
                "detect.model"
            }
            _ => "detect.model_dir",
        };
        let value = if key == "detect.model" {
            shown(&detect.model)
        } else {
            shown(&detect.model_dir)
        };
        check.fail(key, value, err.to_string());
    }
}

/// The runtime (and delegate) libraries, loaded once and let go.
fn libraries(detect: &DetectSettings, check: &mut Check<'_, '_>) {
    let mut load = |key: &str, library: &Path| {
        // SAFETY: loading the runtime runs its initialisers, as opening
        // the detector does right after.
        match unsafe { libloading::Library::new(library) } {
            // Never unloaded: LiteRT leaves exit handlers behind that would
            // point into unmapped code after a dlclose (the process then
            // crashes as it exits). The detector loads it again anyway.
            Ok(loaded) => std::mem::forget(loaded),
            Err(err) => {
                let hint = if library.components().count() == 1 {
                    " (a bare name is looked up in the system's library path: install the library there or give its full path)"
                } else {
                    ""
                };
                check.fail(key, shown(library), format!("cannot load: {err}{hint}"));
            }
        }
    };
    load("detect.runtime", &detect.runtime);
    if let Some(delegate) = &detect.delegate {
        load("detect.delegate", &delegate.library);
    }
    if let Some(dir) = &detect.npu_dispatch_dir {
        if !dir.is_dir() {
            check.fail("detect.npu_dispatch_dir", shown(dir), "no such folder");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAAAA==\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_pem_certificate_passes_and_a_der_one_gets_the_conversion_command() {
        let p = Path::new("/etc/luciole/ca.der");
        assert_eq!(pem_problem(PEM.as_bytes(), Pem::Certificate, p), None);
        let der = [0x30, 0x82, 0x01, 0xb3, 0x30, 0x82, 0x01, 0x59, 0xff, 0xfe];
        let reason = pem_problem(&der, Pem::Certificate, p).unwrap();
        assert!(
            reason.contains(
                "openssl x509 -inform der -in /etc/luciole/ca.der -out /etc/luciole/ca.der.pem"
            ),
            "{reason}"
        );
    }

    #[test]
    fn empty_truncated_and_wrong_kind_pem_files_are_refused() {
        let p = Path::new("x");
        assert_eq!(
            pem_problem(b"\n", Pem::Certificate, p).as_deref(),
            Some("the file is empty")
        );
        let truncated = &PEM[..PEM.len() - 26];
        assert!(pem_problem(truncated.as_bytes(), Pem::Certificate, p)
            .unwrap()
            .contains("no `-----END CERTIFICATE-----` line"));
        assert!(pem_problem(PEM.as_bytes(), Pem::PrivateKey, p)
            .unwrap()
            .contains("no -----BEGIN PRIVATE KEY----- block"));
        let ec = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(pem_problem(ec.as_bytes(), Pem::PrivateKey, p), None);
        assert!(pem_problem(b"hello world", Pem::Certificate, p).is_some());
    }
}
