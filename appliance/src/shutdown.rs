//! Clean stop on SIGINT and SIGTERM, and the reload asked by SIGHUP.
//!
//! The signal handler only sets a flag; every loop that can block (capture,
//! reconnect backoff, replay pacing) polls [`Shutdown::requested`] and winds
//! down, so outputs are flushed and devices released in order. The daemon
//! also wires SIGHUP ([`Shutdown::with_reload`]) to a second flag, which
//! stops nothing by itself: the daemon takes it with
//! [`Shutdown::take_reload`], checks the configuration file again and
//! restarts its stages only when the new file is valid.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shared stop flag, set by signals or by the program itself.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Shutdown {
    /// A flag nobody has raised yet and no signal is wired to (tests, tools).
    pub fn new() -> Self {
        Self::default()
    }

    /// A flag raised by SIGINT or SIGTERM.
    pub fn from_signals() -> std::io::Result<Self> {
        let shutdown = Self::new();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, Arc::clone(&shutdown.flag))?;
        }
        Ok(shutdown)
    }

    /// A flag raised by SIGINT or SIGTERM, and a reload flag raised by
    /// SIGHUP (the daemon; tools keep SIGHUP's default).
    pub fn with_reload() -> std::io::Result<Self> {
        let shutdown = Self::from_signals()?;
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&shutdown.reload))?;
        Ok(shutdown)
    }

    /// Asks for a reload of the configuration (what SIGHUP does).
    pub fn request_reload(&self) {
        self.reload.store(true, Ordering::SeqCst);
    }

    /// Whether a reload was asked for since the last [`Shutdown::take_reload`],
    /// clearing the request.
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    /// Asks every loop holding this flag to stop.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps for `duration` unless a stop is asked for first; returns
    /// `false` when the sleep was cut short by a stop.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        loop {
            if self.requested() {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_returns_early_once_a_stop_is_requested() {
        let shutdown = Shutdown::new();
        let other = shutdown.clone();
        let started = Instant::now();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            other.request();
        });
        assert!(!shutdown.sleep(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(5));
        waker.join().unwrap();
    }

    #[test]
    fn a_reload_request_is_taken_once_and_stops_nothing() {
        let shutdown = Shutdown::new();
        let other = shutdown.clone();
        assert!(!shutdown.take_reload());
        other.request_reload();
        assert!(!shutdown.requested());
        assert!(shutdown.take_reload());
        assert!(!shutdown.take_reload());
    }

    #[test]
    fn sleep_runs_to_its_end_without_a_stop() {
        assert!(Shutdown::new().sleep(Duration::from_millis(20)));
    }
}
