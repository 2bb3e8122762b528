//! Telling a supervisor (systemd) how the pipeline is doing: readiness,
//! status text, liveness for the watchdog, stopping.
//!
//! [`Supervisor`] is what the pipeline calls; [`SdNotify`] implements it
//! with systemd's notification protocol (one datagram per message to the
//! unix socket named by `$NOTIFY_SOCKET`, a path or, with a leading `@`, an
//! abstract name), written here rather than taken from a crate: it is one
//! `sendto` of `KEY=value` lines.
//!
//! Liveness is decided by [`Liveness`], a pure rule: at each watchdog
//! period, the daemon counts as alive when the inference thread finished a
//! frame since the last look, or is idle waiting for one (no frames: the
//! camera is away or slow, which the pipeline reports and handles by
//! itself). It is not alive when it has held one frame for a whole period
//! (a hung inference) or when the main thread itself stopped looking (it is
//! the one that sends `WATCHDOG=1`). Two missed periods and systemd kills
//! and restarts the daemon, and `ExecStopPost` puts the lamp in its safe
//! state.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// Who the pipeline reports to.
pub trait Supervisor {
    /// How often [`Supervisor::alive`] is wanted; `None` when nobody
    /// watches.
    fn watchdog_period(&self) -> Option<Duration>;
    /// The stages are up: the pole is ready, in the state `status` says.
    fn ready(&mut self, status: &str);
    /// A new one-line status.
    fn status(&mut self, status: &str);
    /// The pipeline made progress this period (feeds the watchdog).
    fn alive(&mut self);
    /// The pipeline is winding down, for the reason `status` says.
    fn stopping(&mut self, status: &str);
    /// Frames analysed so far in this run, told about every tick (how the
    /// daemon decides a new configuration works).
    fn analysed(&mut self, _total: u64) {}
    /// The pipeline is winding down to start again with a new
    /// configuration; [`Supervisor::ready`] follows.
    fn reloading(&mut self, status: &str) {
        self.status(status);
    }
}

/// Nobody watches (tests, the demo, the daemon outside systemd).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unsupervised;

impl Supervisor for Unsupervised {
    fn watchdog_period(&self) -> Option<Duration> {
        None
    }
    fn ready(&mut self, _status: &str) {}
    fn status(&mut self, _status: &str) {}
    fn alive(&mut self) {}
    fn stopping(&mut self, _status: &str) {}
}

/// Whether the pipeline is alive, one look per watchdog period.
#[derive(Debug, Clone)]
pub struct Liveness {
    period: Duration,
    next: Instant,
    finished_seen: u64,
}

impl Liveness {
    /// Looks every `period`, the first one `period` after `now`.
    pub fn new(period: Duration, now: Instant) -> Self {
        Self {
            period,
            next: now + period,
            finished_seen: 0,
        }
    }

    /// At `now`, with `finished` frames fully analysed so far and the
    /// inference thread `busy` with one: `None` before the next look is
    /// due, else whether the pipeline is alive.
    pub fn check(&mut self, now: Instant, finished: u64, busy: bool) -> Option<bool> {
        if now < self.next {
            return None;
        }
        self.next = now + self.period;
        let progressed = finished != self.finished_seen;
        self.finished_seen = finished;
        Some(progressed || !busy)
    }
}

/// systemd's notification socket, from the environment it sets.
#[derive(Debug)]
pub struct SdNotify {
    socket: UnixDatagram,
    address: SocketAddr,
    watchdog: Option<Duration>,
    /// A failed send is logged once.
    warned: bool,
}

impl SdNotify {
    /// The socket named by `$NOTIFY_SOCKET` and the watchdog period from
    /// `$WATCHDOG_USEC` (half of systemd's `WatchdogSec=`, as systemd
    /// advises; ignored when `$WATCHDOG_PID` names another process).
    /// `Ok(None)` when not started by systemd with `Type=notify`.
    pub fn from_env() -> io::Result<Option<Self>> {
        let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let watchdog = watchdog_period(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        Self::connect(&name.to_string_lossy(), watchdog).map(Some)
    }

    /// A notifier sending to `name` (a path, or `@` and an abstract name).
    pub fn connect(name: &str, watchdog: Option<Duration>) -> io::Result<Self> {
        let address = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes())?
            }
            None if name.starts_with('/') => SocketAddr::from_pathname(name)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("NOTIFY_SOCKET={name:?}: neither a path nor an abstract name"),
                ))
            }
        };
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            address,
            watchdog,
            warned: false,
        })
    }

    /// Sends one message: `KEY=value` lines.
    pub fn send(&mut self, message: &str) {
        if let Err(err) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            if !std::mem::replace(&mut self.warned, true) {
                tracing::warn!("cannot notify systemd: {err}");
            }
        }
    }
}

/// One line of status text: `STATUS=` ends at a newline.
fn status_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

impl Supervisor for SdNotify {
    fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog
    }
    fn ready(&mut self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={}", status_line(status)));
    }
    fn status(&mut self, status: &str) {
        self.send(&format!("STATUS={}", status_line(status)));
    }
    fn alive(&mut self) {
        self.send("WATCHDOG=1");
    }
    fn stopping(&mut self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={}", status_line(status)));
    }
    fn reloading(&mut self, status: &str) {
        self.send(&format!("RELOADING=1\nSTATUS={}", status_line(status)));
    }
}

/// Half the watchdog timeout systemd gave, when it is meant for `pid`.
fn watchdog_period(usec: Option<&str>, for_pid: Option<&str>, pid: u32) -> Option<Duration> {
    if for_pid.is_some_and(|p| p.trim().parse::<u32>().ok() != Some(pid)) {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn alive_when_frames_finish_or_inference_waits_not_when_one_frame_hangs() {
        let t0 = Instant::now();
        let mut live = Liveness::new(ms(1000), t0);
        assert_eq!(live.check(t0 + ms(999), 5, false), None, "not due");
        assert_eq!(live.check(t0 + ms(1000), 5, true), Some(true), "progress");
        assert_eq!(live.check(t0 + ms(1500), 9, true), None);
        // No frame at all (camera away): idle, alive.
        assert_eq!(live.check(t0 + ms(2000), 5, false), Some(true));
        assert_eq!(live.check(t0 + ms(3000), 5, false), Some(true));
        // A frame taken and never finished: not alive, period after period.
        assert_eq!(live.check(t0 + ms(4000), 5, true), Some(false));
        assert_eq!(live.check(t0 + ms(5000), 5, true), Some(false));
        // It finished after all.
        assert_eq!(live.check(t0 + ms(6000), 6, true), Some(true));
    }

    #[test]
    fn the_watchdog_period_is_half_the_timeout_and_only_for_this_process() {
        assert_eq!(watchdog_period(Some("30000000"), None, 7), Some(ms(15_000)));
        assert_eq!(
            watchdog_period(Some("30000000"), Some("7"), 7),
            Some(ms(15_000))
        );
        assert_eq!(watchdog_period(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_period(Some("0"), None, 7), None);
        assert_eq!(watchdog_period(Some("soon"), None, 7), None);
        assert_eq!(watchdog_period(None, None, 7), None);
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("luciole-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let mut notify = SdNotify::connect(path.to_str().unwrap(), None).unwrap();
        notify.ready("waiting for camera /dev/video0:\nnot there");
        assert_eq!(
            receive(&server),
            "READY=1\nSTATUS=waiting for camera /dev/video0: not there"
        );
        notify.alive();
        assert_eq!(receive(&server), "WATCHDOG=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("luciole-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&address).unwrap();
        let mut notify = SdNotify::connect(&format!("@{name}"), None).unwrap();
        notify.stopping("stopping on signal");
        assert_eq!(receive(&server), "STOPPING=1\nSTATUS=stopping on signal");
        std::fs::remove_dir_all(&dir).unwrap();

        let err = SdNotify::connect("relative", None).unwrap_err();
        assert!(
            err.to_string().contains("NOTIFY_SOCKET=\"relative\""),
            "{err}"
        );
    }
}
