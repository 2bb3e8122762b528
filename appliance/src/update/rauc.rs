//! The [`Installer`] that hands a bundle to RAUC over D-Bus (the system
//! bus, `de.pengutronix.rauc`, interface `de.pengutronix.rauc.Installer`).
//!
//! `InstallBundle(path, {})` starts the installation and returns at once;
//! RAUC then reports `Progress` (a property) and ends with a `Completed`
//! signal carrying 0 on success, with `LastError` saying why otherwise.
//! RAUC runs as root and checks the bundle's signature against the image's
//! keyring itself: the daemon needs only the right to call it, which the
//! image's D-Bus policy gives the `luciole` user
//! (`image-build/rootfs/usr/share/dbus-1/system.d/luciole-rauc.conf`).

use std::path::Path;
use std::time::{Duration, Instant};

use zbus::blocking::{Connection, Proxy};
use zbus::proxy::CacheProperties;
use zbus::zvariant::Value;

use super::{Installer, UpdateError};

const SERVICE: &str = "de.pengutronix.rauc";
const INTERFACE: &str = "de.pengutronix.rauc.Installer";

/// RAUC on the system bus.
pub struct Rauc {
    /// The longest an installation may take.
    pub timeout: Duration,
}

impl Default for Rauc {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
        }
    }
}

fn bus(err: zbus::Error) -> UpdateError {
    UpdateError::Bus(err.to_string())
}

impl Installer for Rauc {
    fn install(
        &mut self,
        bundle: &Path,
        progress: &mut dyn FnMut(u8, &str),
    ) -> Result<(), UpdateError> {
        let connection = Connection::system().map_err(bus)?;
        let proxy: Proxy<'static> = zbus::blocking::proxy::Builder::new(&connection)
            .destination(SERVICE)
            .and_then(|b| b.path("/"))
            .and_then(|b| b.interface(INTERFACE))
            .map_err(bus)?
            .cache_properties(CacheProperties::No)
            .build()
            .map_err(bus)?;
        // Subscribed before the call, so a fast installation's end is not
        // missed; read on its own thread so that progress can be polled.
        let completed = proxy.receive_signal("Completed").map_err(bus)?;
        let (sender, receiver) = crossbeam_channel::bounded::<i32>(1);
        std::thread::Builder::new()
            .name("rauc-completed".into())
            .spawn(move || {
                for message in completed {
                    if let Ok(result) = message.body().deserialize::<i32>() {
                        let _ = sender.send(result);
                        return;
                    }
                }
            })
            .map_err(|e| UpdateError::Bus(format!("cannot start a thread: {e}")))?;
        let path = bundle
            .to_str()
            .ok_or_else(|| UpdateError::io(bundle, "not a UTF-8 path"))?;
        let args: std::collections::HashMap<&str, Value<'_>> = std::collections::HashMap::new();
        proxy
            .call_method("InstallBundle", &(path, args))
            .map_err(|e| match e {
                zbus::Error::MethodError(name, text, _) => {
                    UpdateError::Install(format!("{}: {}", name.as_str(), text.unwrap_or_default()))
                }
                other => bus(other),
            })?;
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        loop {
            match receiver.recv_timeout(Duration::from_secs(2)) {
                Ok(0) => {
                    progress(100, "done");
                    return Ok(());
                }
                Ok(code) => {
                    let why: String = proxy
                        .get_property("LastError")
                        .unwrap_or_else(|_| String::from("(RAUC gave no LastError)"));
                    return Err(UpdateError::Install(format!("result {code}: {why}")));
                }
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                    return Err(UpdateError::Bus(
                        "the bus connection closed before RAUC said the installation ended".into(),
                    ))
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() > deadline {
                return Err(UpdateError::Install(format!(
                    "not finished after {} s",
                    self.timeout.as_secs()
                )));
            }
            if let Ok((percent, message, _depth)) =
                proxy.get_property::<(i32, String, i32)>("Progress")
            {
                let percent = percent.clamp(0, 100) as u8;
                if last != Some(percent) {
                    progress(percent, &message);
                    last = Some(percent);
                }
            }
        }
    }
}
