//! The relay on a Linux GPIO character device (`/dev/gpiochipN`, through
//! `gpiocdev`): the chip is found by its label (or its `gpiochipN` name),
//! the line by name or offset. The line stays requested while the value
//! holds it; dropping it releases the line to the hardware default.

use std::path::PathBuf;

use gpiocdev::line::Value;
use gpiocdev::request::Request;

use super::settings::{LineRef, RelaySettings};
use super::{LightError, Relay};

/// A relay line held as an output.
pub struct CdevRelay {
    request: Request,
    path: PathBuf,
    on: bool,
}

/// A chip as found: device path, name, label, line count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChipSummary {
    pub path: PathBuf,
    pub name: String,
    pub label: String,
    pub num_lines: u32,
}

/// Every GPIO chip under `/dev`: the ones the process can open, and a
/// description of each one it cannot (`/dev/gpiochip0: Permission denied`).
pub fn chips() -> (Vec<ChipSummary>, Vec<String>) {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    for path in gpiocdev::chip::chips().unwrap_or_default() {
        let opened = gpiocdev::chip::Chip::from_path(&path).and_then(|chip| chip.info());
        match opened {
            Ok(info) => found.push(ChipSummary {
                path,
                name: info.name,
                label: info.label,
                num_lines: info.num_lines,
            }),
            Err(err) => unreadable.push(format!("{}: cannot open: {err}", path.display())),
        }
    }
    (found, unreadable)
}

/// The chip whose label (or name) is `wanted`, or an error listing the
/// chips found and those that could not be opened.
pub fn select_chip<'a>(
    found: &'a [ChipSummary],
    unreadable: &[String],
    wanted: &str,
) -> Result<&'a ChipSummary, LightError> {
    found
        .iter()
        .find(|c| c.label == wanted)
        .or_else(|| found.iter().find(|c| c.name == wanted))
        .ok_or_else(|| LightError::ChipNotFound {
            chip: wanted.into(),
            reason: if !unreadable.is_empty() {
                "no chip that could be opened has this label or name (permission? the luciole user opens /dev/gpiochip* through the gpio group, which the udev rule 60-luciole.rules sets)".into()
            } else if found.is_empty() {
                "no GPIO chip under /dev (is the driver or overlay loaded?)".into()
            } else {
                "no chip has this label or name".into()
            },
            found: found
                .iter()
                .map(|c| format!("{} ({})", c.label, c.name))
                .chain(unreadable.iter().cloned())
                .collect(),
        })
}

/// The offset of `line` among a chip's `(offset, name)` lines.
pub fn select_line(
    chip: &ChipSummary,
    lines: &[(u32, String)],
    line: &LineRef,
) -> Result<u32, LightError> {
    let not_found = |reason: String| LightError::LineNotFound {
        chip: chip.label.clone(),
        path: chip.path.clone(),
        line: line.to_string(),
        reason,
        found: lines
            .iter()
            .filter(|(_, name)| !name.is_empty())
            .map(|(offset, name)| format!("{name} ({offset})"))
            .collect(),
    };
    match line {
        LineRef::Offset(offset) if *offset < chip.num_lines => Ok(*offset),
        LineRef::Offset(_) => Err(not_found(format!(
            "the chip has {} lines (offsets 0 to {})",
            chip.num_lines,
            chip.num_lines.saturating_sub(1)
        ))),
        LineRef::Name(name) => lines
            .iter()
            .find(|(_, n)| n == name)
            .map(|(offset, _)| *offset)
            .ok_or_else(|| not_found("no line has this name".into())),
    }
}

impl CdevRelay {
    /// Finds the chip and line and requests the line as an output at `on`.
    pub fn open(settings: &RelaySettings, on: bool) -> Result<CdevRelay, LightError> {
        let (found, unreadable) = chips();
        let chip = select_chip(&found, &unreadable, &settings.chip)?;
        let gpio = |what: &str, source| LightError::Gpio {
            what: what.into(),
            path: chip.path.clone(),
            source,
        };
        let handle = gpiocdev::chip::Chip::from_path(&chip.path).map_err(|e| gpio("open", e))?;
        let lines: Vec<(u32, String)> = (0..chip.num_lines)
            .filter_map(|offset| handle.line_info(offset).ok())
            .map(|info| (info.offset, info.name))
            .collect();
        let offset = select_line(chip, &lines, &settings.line)?;
        let mut builder = Request::builder();
        builder
            .on_chip(&chip.path)
            .with_consumer("luciole-lamp")
            .with_line(offset);
        if settings.active_low {
            builder.as_active_low();
        }
        builder.as_output(value(on));
        let request = builder
            .request()
            .map_err(|e| gpio(&format!("request of line {offset} as output"), e))?;
        Ok(CdevRelay {
            request,
            path: chip.path.clone(),
            on,
        })
    }
}

fn value(on: bool) -> Value {
    if on {
        Value::Active
    } else {
        Value::Inactive
    }
}

impl Relay for CdevRelay {
    fn set(&mut self, on: bool) -> Result<(), LightError> {
        self.request
            .set_lone_value(value(on))
            .map_err(|source| LightError::Gpio {
                what: "set value".into(),
                path: self.path.clone(),
                source,
            })?;
        self.on = on;
        Ok(())
    }

    fn is_on(&self) -> bool {
        self.on
    }
}
