//! Whether the system clock can be trusted: the kernel's NTP status. A
//! board without a real-time clock (a Raspberry Pi) boots with a stale
//! time and jumps when NTP synchronises it; events made before then carry
//! `"clock": "unsynchronised"` in their envelope, so a consumer knows their
//! `time` may be far off.

use serde::{Deserialize, Serialize};

/// The `clock` mark of an envelope (absent when the clock is synchronised).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMark {
    /// The kernel does not consider the clock synchronised.
    Unsynchronised,
}

/// `STA_UNSYNC` of `struct timex`: the clock is not synchronised.
const STA_UNSYNC: i32 = 0x0040;
/// `TIME_ERROR`, what `adjtimex` returns while the clock is unsynchronised.
const TIME_ERROR: i32 = 5;

/// The mark for what `adjtimex(2)` returned (`state`) and its `status`
/// field: `None` when synchronised, or when the kernel cannot tell (a
/// failed call, `-1`, marks nothing rather than everything).
pub fn mark(state: i32, status: i32) -> Option<ClockMark> {
    if state < 0 {
        return None;
    }
    (state == TIME_ERROR || status & STA_UNSYNC != 0).then_some(ClockMark::Unsynchronised)
}

/// The mark for the system clock now (one read-only `adjtimex` call).
pub fn system_mark() -> Option<ClockMark> {
    // SAFETY: `timex` is plain data, valid zeroed; with `modes` 0 the call
    // only reads the kernel's state into the struct it is given.
    let (state, status) = unsafe {
        let mut timex: libc::timex = std::mem::zeroed();
        let state = libc::adjtimex(&mut timex);
        (state, timex.status)
    };
    mark(state, status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsynchronised_kernel_clock_marks_events_and_a_synchronised_one_does_not() {
        // TIME_OK with the PLL locked, as after an NTP sync.
        assert_eq!(mark(0, 0x0001), None);
        // Booted without a sync: TIME_ERROR and STA_UNSYNC.
        assert_eq!(
            mark(TIME_ERROR, STA_UNSYNC),
            Some(ClockMark::Unsynchronised)
        );
        assert_eq!(
            mark(0, STA_UNSYNC | 0x0001),
            Some(ClockMark::Unsynchronised)
        );
        // A failed call tells nothing.
        assert_eq!(mark(-1, 0), None);
    }

    #[test]
    fn the_system_clock_state_can_be_read() {
        // Whatever this machine's state, the call itself works.
        // SAFETY: as in `system_mark`.
        let state = unsafe {
            let mut timex: libc::timex = std::mem::zeroed();
            libc::adjtimex(&mut timex)
        };
        assert!(
            state >= 0,
            "adjtimex failed: {}",
            std::io::Error::last_os_error()
        );
        let _ = system_mark();
    }
}
