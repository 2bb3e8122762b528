//! Outputs that drive no hardware (`backend = "simulated"`): for trying
//! the lighting on a desk, a laptop or in CI. Every change is logged and,
//! when a state file is configured, written there as one JSON line,
//! replaced atomically (temp file + rename) so a reader always sees a
//! whole line: `{"output":"relay","on":true}` or
//! `{"output":"dimmer","level":0.3,"duty_ns":300000,"period_ns":1000000,"polarity":"normal"}`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{duty_for, Dimmer, DimmerSettings, LightError, Polarity, Relay, RelaySettings};

/// Replaces `path` with one JSON line.
fn write_state(path: &Path, state: &serde_json::Value) -> Result<(), LightError> {
    let err = |source| LightError::StateFile {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    writeln!(file, "{state}").map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A relay that only reports what it would do.
#[derive(Debug)]
pub struct SimulatedRelay {
    on: bool,
    file: Option<PathBuf>,
}

impl SimulatedRelay {
    /// Opens the simulated relay in state `on` (and writes it).
    pub fn open(settings: &RelaySettings, on: bool) -> Result<Self, LightError> {
        let mut relay = Self {
            on: !on,
            file: settings.state_file.clone(),
        };
        relay.set(on)?;
        Ok(relay)
    }
}

impl Relay for SimulatedRelay {
    fn set(&mut self, on: bool) -> Result<(), LightError> {
        if let Some(path) = &self.file {
            write_state(path, &serde_json::json!({"output": "relay", "on": on}))?;
        }
        if on != self.on {
            tracing::info!(on, "simulated relay");
        }
        self.on = on;
        Ok(())
    }

    fn is_on(&self) -> bool {
        self.on
    }
}

/// A PWM dimmer that only reports what it would do.
#[derive(Debug)]
pub struct SimulatedDimmer {
    period_ns: u64,
    duty_ns: u64,
    polarity: Polarity,
    file: Option<PathBuf>,
}

impl SimulatedDimmer {
    /// Opens the simulated dimmer at `level` (and writes it).
    pub fn open(settings: &DimmerSettings, level: f64) -> Result<Self, LightError> {
        let mut dimmer = Self {
            period_ns: settings.period_ns,
            duty_ns: u64::MAX,
            polarity: settings.polarity,
            file: settings.state_file.clone(),
        };
        dimmer.set_level(level)?;
        Ok(dimmer)
    }
}

impl Dimmer for SimulatedDimmer {
    fn set_level(&mut self, level: f64) -> Result<(), LightError> {
        let duty = duty_for(level, self.period_ns);
        if let Some(path) = &self.file {
            let state = serde_json::json!({
                "output": "dimmer",
                "level": duty as f64 / self.period_ns as f64,
                "duty_ns": duty,
                "period_ns": self.period_ns,
                "polarity": self.polarity.sysfs(),
            });
            write_state(path, &state)?;
        }
        if duty != self.duty_ns {
            tracing::info!(
                level_pct = (duty as f64 / self.period_ns as f64 * 1000.0).round() / 10.0,
                duty_ns = duty,
                "simulated dimmer"
            );
        }
        self.duty_ns = duty;
        Ok(())
    }

    fn period_ns(&self) -> u64 {
        self.period_ns
    }

    fn duty_ns(&self) -> u64 {
        self.duty_ns
    }

    fn polarity(&self) -> Polarity {
        self.polarity
    }
}
