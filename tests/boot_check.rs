//! The image's update acceptance rules (`image-build/rootfs/usr/libexec/luciole/boot-check`),
//! each decision on its own: the real script under `sh`, with fake `systemctl` and `rauc`
//! commands and a scratch root (`LUCIOLE_BOOT_CHECK_ROOT`). The same script runs in the
//! booted image under QEMU (`tests/image/run`), where only the ordinary boot, an accepted
//! update, a daemon that keeps failing and an interrupted installation occur; the rules that
//! test cannot reach in reasonable time (the time limit, systemd's start limit, the limits
//! read from `update.conf`) are checked here.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

/// A scratch root for one boot: the files the script reads, and fakes that answer from
/// files under `fake/` and log what they were asked in `fake/calls`.
struct Pole {
    root: PathBuf,
}

impl Pole {
    fn new(name: &str, booted_slot: &str) -> Self {
        let root = scratch(&format!("boot-check-{name}"));
        for dir in ["proc", "etc/luciole", "data/update", "run", "fake", "bin"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let pole = Pole { root };
        pole.write(
            "proc/cmdline",
            &format!("BOOT_IMAGE=/boot/vmlinuz root=PARTLABEL=rootfs-x ro rauc.slot={booted_slot} panic=10\n"),
        );
        pole.write("etc/luciole-release", "VERSION=7\n");
        pole.uptime(40);
        pole.daemon("active", "", 0);
        // Quick polls: a rule that no longer applies ends at the time limit (below) and
        // fails its test's assertions, rather than hanging it.
        pole.write("etc/luciole/update.conf", "HEALTH_POLL_S=0.01\n");
        // Fakes: systemctl answers `show -p X --value luciole.service` from fake/X (and
        // each poll of the restart count moves the clock 10 s on) and logs a reboot; rauc
        // answers `status --output-format=shell` from fake/rauc_status (nothing if absent),
        // and logs mark-good / mark-bad and exits with fake/rauc_rc.
        pole.script(
            "bin/systemctl",
            r#"root="$LUCIOLE_BOOT_CHECK_ROOT"
case "$1" in
show)
    cat "$root/fake/$3"
    if [ "$3" = NRestarts ]; then
        up=$(cut -d. -f1 "$root/proc/uptime")
        echo "$((up + 10)).00 1.00" >"$root/proc/uptime"
    fi ;;
--no-block) echo "systemctl $2" >>"$root/fake/calls" ;;
*) echo "unexpected systemctl $*" >>"$root/fake/calls"; exit 3 ;;
esac"#,
        );
        pole.script(
            "bin/rauc",
            r#"root="$LUCIOLE_BOOT_CHECK_ROOT"
if [ "$1 $2" = "status --output-format=shell" ]; then
    cat "$root/fake/rauc_status" 2>/dev/null
    exit 0
fi
echo "rauc $*" >>"$root/fake/calls"
exit "$(cat "$root/fake/rauc_rc" 2>/dev/null || echo 0)""#,
        );
        pole
    }

    /// A pole booted into slot B, the slot an update to version 7 went to.
    fn updated(name: &str) -> Self {
        let pole = Pole::new(name, "B");
        pole.write("data/update/pending", "B 7\n");
        pole
    }

    /// Runs the boot check and asserts it refused the update (marked bad, rebooted) for a
    /// reason containing `why`: its exit status and the record it wrote.
    fn check_refused(&self, why: &str) -> (i32, String) {
        let (rc, out) = self.check();
        assert_eq!(
            self.calls(),
            ["rauc status mark-bad booted", "systemctl reboot"],
            "{out}"
        );
        let record = self.read("run/luciole-boot-check");
        assert!(record.contains(why), "{out}");
        (rc, record)
    }

    fn write(&self, path: &str, text: &str) {
        std::fs::write(self.root.join(path), text).unwrap();
    }

    /// Adds settings to the pole's `update.conf`.
    fn conf(&self, text: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.root.join("etc/luciole/update.conf"))
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn script(&self, path: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root.join(path);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn uptime(&self, seconds: u32) {
        self.write("proc/uptime", &format!("{seconds}.37 12.00\n"));
    }

    /// What `systemctl show` says of luciole.service.
    fn daemon(&self, active: &str, status: &str, restarts: u32) {
        self.write("fake/ActiveState", &format!("{active}\n"));
        self.write("fake/StatusText", &format!("{status}\n"));
        self.write("fake/NRestarts", &format!("{restarts}\n"));
    }

    /// Runs the boot check: (exit status, its output line).
    fn check(&self) -> (i32, String) {
        let script = repo().join("image-build/rootfs/usr/libexec/luciole/boot-check");
        let path = format!(
            "{}:{}",
            self.root.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = Command::new("sh")
            .arg(&script)
            .env("LUCIOLE_BOOT_CHECK_ROOT", &self.root)
            .env("PATH", path)
            .output()
            .expect("sh runs the boot check");
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.code().unwrap_or(-1), text)
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.root.join(path)).unwrap_or_default()
    }

    fn calls(&self) -> Vec<String> {
        self.read("fake/calls").lines().map(str::to_owned).collect()
    }

    fn exists(&self, path: &str) -> bool {
        self.root.join(path).exists()
    }
}

const HEALTHY: &str = "analysing frames from /dev/video0 (vivid, vivid): 12 analysed";

#[test]
fn an_ordinary_boot_is_marked_good_at_once_and_recorded() {
    let pole = Pole::new("ordinary", "A");
    // Even a daemon not yet up: an ordinary boot was proven before.
    pole.daemon("activating", "", 0);
    let (rc, out) = pole.check();
    assert_eq!(rc, 0, "{out}");
    assert_eq!(pole.calls(), ["rauc status mark-good booted"]);
    let record = pole.read("run/luciole-boot-check");
    assert_eq!(record, "good slot=A version=7 uptime_s=40: ordinary boot\n");
    let history = pole.read("data/update/history");
    assert_eq!(history.lines().count(), 1, "{history}");
    assert!(history.trim_end().ends_with(record.trim_end()), "{history}");
}

#[test]
fn an_update_that_never_came_up_leaves_the_booted_slot_good_and_clears_the_pending_mark() {
    let pole = Pole::new("not-up", "A");
    pole.write("data/update/pending", "B 8\n");
    let (rc, out) = pole.check();
    assert_eq!(rc, 0, "{out}");
    assert_eq!(pole.calls(), ["rauc status mark-good booted"]);
    assert!(
        pole.read("run/luciole-boot-check")
            .contains("the update to slot B (version 8) did not come up; staying on slot A"),
        "{out}"
    );
    assert!(!pole.exists("data/update/pending"));
}

#[test]
fn an_update_is_accepted_only_with_frames_analysed() {
    let pole = Pole::updated("accepted");
    pole.daemon("active", HEALTHY, 0);
    let (rc, out) = pole.check();
    assert_eq!(rc, 0, "{out}");
    assert_eq!(pole.calls(), ["rauc status mark-good booted"]);
    assert!(
        pole.read("run/luciole-boot-check").starts_with(
            "good slot=B version=7 uptime_s=50: update accepted: the daemon is healthy"
        ),
        "{out}"
    );
    assert!(!pole.exists("data/update/pending"));
}

#[test]
fn a_daemon_that_keeps_failing_is_refused_before_the_time_limit() {
    let pole = Pole::updated("restarts");
    // Active between two failures, with no frame analysed: not healthy.
    pole.daemon("active", "starting", 5);
    let (rc, record) =
        pole.check_refused("the daemon failed and was restarted 5 times without becoming healthy");
    assert_eq!(rc, 0, "{record}");
    assert!(record.starts_with("rollback slot=B"), "{record}");
    assert!(pole.read("data/update/history").contains(&record));
    assert!(!pole.exists("data/update/pending"));
}

#[test]
fn a_daemon_systemd_stopped_restarting_is_refused_at_once() {
    let pole = Pole::updated("start-limit");
    pole.daemon("failed", "", 4);
    pole.check_refused("systemd stopped restarting it (after 4 restarts)");
}

#[test]
fn a_daemon_neither_failing_nor_healthy_is_refused_at_the_time_limit() {
    let pole = Pole::updated("timeout");
    // Running, zero frames analysed, past the limit the pole's update.conf sets.
    pole.conf("HEALTH_TIMEOUT_S=120\n");
    pole.daemon(
        "active",
        "analysing frames from /dev/video0 (vivid, vivid): 0 analysed",
        0,
    );
    pole.uptime(121);
    pole.check_refused("the daemon was not healthy within 120 s of boot (state: active");
}

#[test]
fn the_restart_threshold_comes_from_update_conf() {
    for (name, restarts, why) in [
        // Three restarts: under this pole's threshold of 4, so only the time limit refuses it.
        ("threshold", 3, "not healthy within 60 s"),
        // At the threshold, the restarts decide before the time does.
        (
            "threshold-met",
            4,
            "restarted 4 times without becoming healthy",
        ),
    ] {
        let pole = Pole::updated(name);
        pole.conf("HEALTH_TIMEOUT_S=60\nHEALTH_MAX_RESTARTS=4\n");
        pole.daemon("activating", "", restarts);
        pole.uptime(61);
        pole.check_refused(why);
    }
}

#[test]
fn without_a_slot_on_the_command_line_nothing_is_marked() {
    let pole = Pole::new("no-slot", "A");
    pole.write(
        "proc/cmdline",
        "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda2 ro\n",
    );
    let (rc, out) = pole.check();
    assert_eq!(rc, 1, "{out}");
    assert!(pole.calls().is_empty(), "{:?}", pole.calls());
    assert!(
        pole.read("run/luciole-boot-check")
            .contains("no rauc.slot= on the kernel command line"),
        "{out}"
    );
}

#[test]
fn without_a_slot_on_the_command_line_the_slot_rauc_booted_is_used() {
    // The Jetson's firmware names no slot on the command line; RAUC's boot loader
    // backend knows it.
    let pole = Pole::updated("rauc-slot");
    pole.write(
        "proc/cmdline",
        "BOOT_IMAGE=/boot/Image root=PARTUUID=0123 ro\n",
    );
    pole.write(
        "fake/rauc_status",
        "RAUC_SYSTEM_COMPATIBLE='luciole-jetson-orin-nano-devkit'\nRAUC_SYSTEM_BOOTED_BOOTNAME='B'\nRAUC_BOOT_PRIMARY='rootfs.1'\n",
    );
    pole.daemon("active", HEALTHY, 0);
    let (rc, out) = pole.check();
    assert_eq!(rc, 0, "{out}");
    assert_eq!(pole.calls(), ["rauc status mark-good booted"]);
    let record = pole.read("run/luciole-boot-check");
    assert!(record.starts_with("good slot=B "), "{record}");
}

#[test]
fn a_failed_mark_is_an_error_and_not_recorded_as_good() {
    let pole = Pole::new("mark-fails", "A");
    pole.write("fake/rauc_rc", "1\n");
    let (rc, out) = pole.check();
    assert_ne!(rc, 0, "{out}");
    assert!(out.contains("rauc status mark-good booted failed"), "{out}");
    assert!(!pole.exists("run/luciole-boot-check"), "{out}");
}

#[test]
fn update_conf_is_read_for_its_numbers_and_never_run() {
    let pole = Pole::updated("not-run");
    let planted = pole.root.join("planted");
    pole.conf(&format!(
        "HEALTH_TIMEOUT_S=60 # a comment\ntouch {p}\nHEALTH_MAX_RESTARTS=$(touch {p})\n",
        p = planted.display()
    ));
    pole.daemon("activating", "", 3);
    pole.uptime(61);
    // The number was taken (60 s, not the default 300)...
    pole.check_refused("not healthy within 60 s");
    // ... and nothing in the file ran.
    assert!(!planted.exists(), "update.conf was executed");
}
