//! The dimmer on the Linux PWM sysfs interface
//! (`<sysfs>/class/pwm/pwmchipN/pwmM/{period,duty_cycle,polarity,enable}`).
//!
//! The chip is found by its controller's device name (the basename of the
//! `pwmchipN/device` link, e.g. `fe20c000.pwm`) or literally `pwmchipN`;
//! the channel is exported when needed. Writes follow the kernel's rules:
//! the duty cycle never exceeds the period (so the period goes first when
//! it grows, the duty cycle first when it shrinks) and the polarity only
//! changes while the channel is disabled. The sysfs root is a parameter
//! and the file access a trait, so tests run against a fake tree.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::settings::{DimmerSettings, Polarity};
use super::{duty_for, Dimmer, LightError};

/// Reading and writing sysfs attributes.
pub trait AttrFs: Send {
    fn read(&self, path: &Path) -> io::Result<String>;
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    /// Whether this process may write the file now (a freshly exported
    /// channel is root's until udev gives it to the `gpio` group).
    fn writable(&self, path: &Path) -> bool;
}

/// The real file system.
pub struct RealFs;

impl AttrFs for RealFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        // sysfs wants the whole value in one write. Truncating is what a
        // shell's `>` does: sysfs ignores it, and a stand-in tree of plain
        // files (tests) then holds exactly the value written.
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)?;
        file.write_all(value.as_bytes())
    }

    fn writable(&self, path: &Path) -> bool {
        rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
    }
}

/// How long an exported channel may take to appear and become writable
/// (udev's rule 60-luciole.rules gives its files to the `gpio` group).
const EXPORT_WAIT: Duration = Duration::from_secs(2);

/// The channel files the dimmer writes.
const CHANNEL_FILES: [&str; 4] = ["period", "duty_cycle", "polarity", "enable"];

/// A PWM channel driven through sysfs.
pub struct SysfsPwm {
    fs: Box<dyn AttrFs>,
    dir: PathBuf,
    period_ns: u64,
    duty_ns: u64,
    polarity: Polarity,
    enabled: bool,
}

/// The `pwmchipN` folder of a controller under `<sysfs>/class/pwm`.
pub fn find_chip(sysfs: &Path, chip: &str) -> Result<PathBuf, LightError> {
    let class = sysfs.join("class/pwm");
    let not_found = |reason: String, found: Vec<String>| LightError::PwmChipNotFound {
        chip: chip.into(),
        root: class.clone(),
        reason,
        found,
    };
    let entries = std::fs::read_dir(&class).map_err(|e| {
        not_found(
            format!("cannot list it: {e} (is CONFIG_PWM_SYSFS on and the overlay loaded?)"),
            vec![],
        )
    })?;
    let mut found = Vec::new();
    let mut names: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name.starts_with("pwmchip"))
        .collect();
    names.sort();
    for (name, path) in names {
        let device = std::fs::read_link(path.join("device"))
            .ok()
            .and_then(|target| target.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        if name == chip || (!device.is_empty() && device == chip) {
            return Ok(path);
        }
        found.push(format!("{name} ({device})"));
    }
    Err(not_found("no pwmchip has this device name".into(), found))
}

impl SysfsPwm {
    /// Finds, exports and configures the channel, enabled at `level`.
    pub fn open(sysfs: &Path, settings: &DimmerSettings, level: f64) -> Result<Self, LightError> {
        Self::open_with(Box::new(RealFs), sysfs, settings, level)
    }

    /// [`SysfsPwm::open`] through another file access (tests).
    pub fn open_with(
        fs: Box<dyn AttrFs>,
        sysfs: &Path,
        settings: &DimmerSettings,
        level: f64,
    ) -> Result<Self, LightError> {
        let chip = find_chip(sysfs, &settings.chip)?;
        let npwm_path = chip.join("npwm");
        let npwm: u32 = read_value(fs.as_ref(), &npwm_path)?;
        if settings.channel >= npwm {
            return Err(LightError::Pwm {
                path: npwm_path,
                reason: format!(
                    "channel {} does not exist: the chip has {npwm} channel(s)",
                    settings.channel
                ),
            });
        }
        let dir = chip.join(format!("pwm{}", settings.channel));
        if !dir.join("enable").exists() {
            write(
                fs.as_ref(),
                &chip.join("export"),
                &settings.channel.to_string(),
            )?;
            let start = Instant::now();
            while !dir.join("enable").exists() {
                if start.elapsed() > EXPORT_WAIT {
                    return Err(LightError::Pwm {
                        path: dir,
                        reason: format!(
                            "did not appear within {} s of the export",
                            EXPORT_WAIT.as_secs()
                        ),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The kernel makes the channel's files root's; udev then hands them
        // to `gpio`. Writing before it has would fail for the luciole user.
        let start = Instant::now();
        while let Some(file) = CHANNEL_FILES
            .iter()
            .map(|name| dir.join(name))
            .find(|path| !fs.writable(path))
        {
            if start.elapsed() > EXPORT_WAIT {
                return Err(LightError::Pwm {
                    path: file,
                    reason: format!(
                        "not writable by this user within {} s (the udev rule 60-luciole.rules gives the channel's files to the gpio group)",
                        EXPORT_WAIT.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut pwm = SysfsPwm {
            enabled: read_value::<u8>(fs.as_ref(), &dir.join("enable"))? == 1,
            period_ns: read_value(fs.as_ref(), &dir.join("period"))?,
            duty_ns: read_value(fs.as_ref(), &dir.join("duty_cycle"))?,
            polarity: match read_value::<String>(fs.as_ref(), &dir.join("polarity"))?.as_str() {
                "inversed" => Polarity::Inversed,
                _ => Polarity::Normal,
            },
            fs,
            dir,
        };
        pwm.configure(settings.period_ns, settings.polarity, level)?;
        Ok(pwm)
    }

    fn configure(&mut self, period: u64, polarity: Polarity, level: f64) -> Result<(), LightError> {
        let duty = duty_for(level, period);
        // The kernel refuses a polarity change on an enabled channel.
        if polarity != self.polarity && self.enabled {
            self.write("enable", "0")?;
            self.enabled = false;
        }
        if period != self.period_ns {
            if self.duty_ns > period {
                self.write("duty_cycle", &duty.to_string())?;
                self.duty_ns = duty;
            }
            self.write("period", &period.to_string())?;
            self.period_ns = period;
        }
        if polarity != self.polarity {
            self.write("polarity", polarity.sysfs())?;
            self.polarity = polarity;
        }
        if duty != self.duty_ns {
            self.write("duty_cycle", &duty.to_string())?;
            self.duty_ns = duty;
        }
        if !self.enabled {
            self.write("enable", "1")?;
            self.enabled = true;
        }
        Ok(())
    }

    fn write(&self, name: &str, value: &str) -> Result<(), LightError> {
        write(self.fs.as_ref(), &self.dir.join(name), value)
    }

    /// The channel's folder (`.../pwmchipN/pwmM`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Dimmer for SysfsPwm {
    fn set_level(&mut self, level: f64) -> Result<(), LightError> {
        self.configure(self.period_ns, self.polarity, level)
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

fn write(fs: &dyn AttrFs, path: &Path, value: &str) -> Result<(), LightError> {
    fs.write(path, value).map_err(|source| LightError::Sysfs {
        op: format!("write {value:?} to"),
        path: path.to_owned(),
        source,
    })
}

fn read_value<T: std::str::FromStr>(fs: &dyn AttrFs, path: &Path) -> Result<T, LightError> {
    let text = fs.read(path).map_err(|source| LightError::Sysfs {
        op: "read".into(),
        path: path.to_owned(),
        source,
    })?;
    text.trim().parse().map_err(|_| LightError::Pwm {
        path: path.to_owned(),
        reason: format!("unexpected content {:?}", text.trim()),
    })
}
