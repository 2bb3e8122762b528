//! How old a stored event is, measured so that wall-clock jumps change
//! nothing: ages run on the monotonic boot clock (`CLOCK_BOOTTIME`, which
//! keeps counting through suspend and is never set), and each stored event
//! carries the boot it was made in.
//!
//! Rule across a reboot: the boot clock of an earlier boot says nothing
//! about now, and the wall clock of a Raspberry Pi (no RTC) may be days
//! off until NTP syncs. An event from an earlier boot is surely at least as
//! old as the time since this boot began, and that is the age it is given:
//! its age time is taken as 0 on this boot's clock. So it is never expired
//! early by a wrong wall clock, and it expires at most `outbox.retention_s`
//! after the boot (the size cap still applies meanwhile). The wall clock is
//! only reported (event times, `dropped` ranges), never used for ages.

use std::path::Path;

/// A boot's identity: the kernel's random boot id.
pub type BootId = [u8; 16];

/// The two clocks at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Wall clock, ms since the Unix epoch.
    pub wall_ms: u64,
    /// Boot clock, ms since this boot began.
    pub boot_ms: u64,
    /// This boot.
    pub boot: BootId,
}

/// Where the outbox reads the time (injected in tests).
pub trait Clock: Send + Sync {
    fn now(&self) -> Now;
}

/// The system's clocks.
pub struct SystemClock {
    boot: BootId,
}

impl SystemClock {
    /// Reads this boot's id once (`/proc/sys/kernel/random/boot_id`; all
    /// zero where there is none, which makes every stored event look like
    /// one of this boot).
    pub fn new() -> SystemClock {
        SystemClock {
            boot: read_boot_id(Path::new("/proc/sys/kernel/random/boot_id")).unwrap_or([0; 16]),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Now {
        let boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Now {
            wall_ms: crate::events::now_ms(),
            boot_ms: boot.tv_sec as u64 * 1000 + boot.tv_nsec as u64 / 1_000_000,
            boot: self.boot,
        }
    }
}

/// Parses the kernel's boot id (a UUID in text).
pub fn read_boot_id(path: &Path) -> Option<BootId> {
    parse_boot_id(&std::fs::read_to_string(path).ok()?)
}

fn parse_boot_id(text: &str) -> Option<BootId> {
    let hex: Vec<u8> = text.trim().bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// The age time (boot clock of `now`'s boot) of an event stored at
/// `boot_ms` in boot `boot`: unchanged in the same boot, 0 (made at the
/// latest when this boot began) in another one or when unknown.
pub fn age_time(now: &Now, stored: Option<(BootId, u64)>) -> u64 {
    match stored {
        Some((boot, boot_ms)) if boot == now.boot && boot_ms <= now.boot_ms => boot_ms,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_boot_id_is_read_from_its_uuid_text() {
        let id = parse_boot_id("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n").unwrap();
        assert_eq!(id[0], 0x0f);
        assert_eq!(id[15], 0xf0);
        assert_eq!(parse_boot_id("nope"), None);
    }

    #[test]
    fn ages_follow_the_boot_clock_and_restart_at_a_new_boot() {
        let now = Now {
            wall_ms: 5,
            boot_ms: 10_000,
            boot: [1; 16],
        };
        assert_eq!(age_time(&now, Some(([1; 16], 4_000))), 4_000);
        // Another boot: made before this one began.
        assert_eq!(age_time(&now, Some(([2; 16], 4_000))), 0);
        // Same id but a boot clock ahead of now cannot be: treated alike.
        assert_eq!(age_time(&now, Some(([1; 16], 20_000))), 0);
        assert_eq!(age_time(&now, None), 0);
    }

    #[test]
    fn the_system_boot_clock_is_monotonic_and_the_boot_id_is_read() {
        let clock = SystemClock::new();
        let a = clock.now();
        let b = clock.now();
        assert!(b.boot_ms >= a.boot_ms);
        assert_ne!(a.boot, [0; 16], "no /proc/sys/kernel/random/boot_id");
    }
}
