#!/usr/bin/env python3
"""The appliance image, booted and updated under QEMU: every step of issue 12's
boot and update test for one architecture (tests/image/run calls it).

    check.py ARCH IMAGE_FOLDER WORK_FOLDER

IMAGE_FOLDER is what image-build/build made (disk.img, the bundles on
updates.img, the firmware). A Mosquitto broker runs on a free loopback port;
the guest reaches it only through QEMU's restricted network and a relay the
test can cut (the pole's link going down). Steps, in order, each printed as
`IMAGE <arch> <step>: PASS|FAIL <details>`:

  boot        slot A boots; luciole runs as its own user, reports ready and
              analyses frames; the boot check marks the slot good; the root
              file system is read-only and the outbox on the data partition
  security    `systemd-analyze security luciole.service` exposure <= 2.0
  lamp        the daemon drives the simulated relay and dimmer (30 %)
  publish     its events reach the broker
  install     with the link down (events queue), update.raucb is installed
              into slot B
  switch      the reboot boots slot B (version 2), marked good once healthy
  delivered   the events queued before the update arrive after it, with no
              gap in ids
  refused     tampered.raucb and foreign.raucb are refused; nothing changes
  rollback    broken.raucb (a daemon that never becomes healthy) installs,
              boots once, is refused as soon as systemd has had to restart
              the daemon HEALTH_MAX_RESTARTS times (not at the time limit),
              marked bad, and the pole reboots into slot B, its lamp at the
              safe level meanwhile, publishing again
  powercut    QEMU killed while RAUC writes the slot: the pole boots
              its current slot and publishes
  remote      the pole is given [remote] (a key made by `luciole fleet
              keygen` on the host) and [remote.update] (a CA made here), as
              an integrator would, and reloads
  apply       `luciole fleet send config.apply` (partial) rewrites
              /etc/luciole/luciole.toml on the read-only image: confirmed,
              the file is the daemon's, update.conf still root's
  update      `luciole fleet send update.install` with a bundle on a local
              HTTPS server (its certificate from that CA; the first
              transfer is cut, the download resumes with a range request):
              RAUC installs it over D-Bus, the pole reboots itself in the
              window, boots the other slot, the boot check marks it good,
              and every step arrived as an update event

On aarch64 the steps end with `delivered`: boot, the A/B switch and the
queued events are what differ by architecture; the steps after it test the
same scripts and code on both and run on x86_64 only (Check.steps).

It ends with `IMAGE <arch>: PASS` only if every step passed, and the
timings (boot, install, switch, rollback) on a line `IMAGE <arch> times:`.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import Boot, Machine, VmError  # noqa: E402

# Architectures that stop after `delivered` (see Check.steps).
FIRST_STEPS_ONLY = ("aarch64",)

SITE, DEVICE = "image-test", "pole-vm"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    """Mosquitto on a loopback port, and a subscriber writing every message to a file."""

    def __init__(self, work):
        self.work = work
        self.port = free_port()
        conf = os.path.join(work, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
        self.broker = subprocess.Popen(["mosquitto", "-c", conf],
                                       stdout=open(os.path.join(work, "mosquitto.log"), "w"),
                                       stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.broker.poll() is not None:
                    raise RuntimeError(f"mosquitto did not start on port {self.port}")
                time.sleep(0.1)
        self.messages = os.path.join(work, "messages.txt")
        self.sub = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1", "-v",
             "-t", f"luciole/{SITE}/{DEVICE}/#"],
            stdout=open(self.messages, "w"), stderr=subprocess.STDOUT)

    def events(self):
        """Every event received so far: a list of dicts (the envelope), in arrival order."""
        out = []
        try:
            with open(self.messages, errors="replace") as f:
                for line in f:
                    topic, _, payload = line.rstrip("\n").partition(" ")
                    if "/events/" not in topic:
                        continue
                    try:
                        out.append(json.loads(payload))
                    except json.JSONDecodeError:
                        pass
        except FileNotFoundError:
            pass
        return out

    def stop(self):
        for p in (self.sub, self.broker):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


class Link:
    """The pole's link to the broker: a relay QEMU runs per guest connection,
    refusing while a flag file exists. Cutting kills the relays running."""

    def __init__(self, work, port):
        self.flag = os.path.join(work, "link-down")
        self.relay = os.path.join(work, "relay")
        self.mark = f"luciole-image-relay-{os.getpid()}"
        with open(self.relay, "w") as f:
            f.write(f"#!/bin/sh\n# {self.mark}\n[ -e '{self.flag}' ] && exit 0\n"
                    f"exec socat - TCP:127.0.0.1:{port}\n")
        os.chmod(self.relay, 0o755)

    def down(self):
        open(self.flag, "w").close()
        subprocess.run(["pkill", "-f", f"socat - TCP:127.0.0.1:.*"], check=False)

    def up(self):
        if os.path.exists(self.flag):
            os.unlink(self.flag)


class Bundles:
    """The integrator's side: a CA and a server certificate for 10.0.2.101 (made here with
    openssl), the HTTPS bundle server (tests/support/https_server.py, serving the image's
    update.raucb, its first transfer cut), the relay QEMU runs for the guest's 10.0.2.101:443,
    and a key made by `luciole fleet keygen` with the host's binary."""

    def __init__(self, work, image):
        self.work = work
        self.dir = os.path.join(work, "integrator")
        os.makedirs(self.dir, exist_ok=True)
        self.luciole = os.environ.get("LUCIOLE_BIN_x86_64") or shutil.which("luciole") or ""
        if not os.access(self.luciole, os.X_OK):
            raise SystemExit("check.py: the host's luciole binary (LUCIOLE_BIN_x86_64) is needed for "
                             "`luciole fleet`; none found")
        d = self.dir
        self.ca_cert = os.path.join(d, "ca.pem")
        run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", os.path.join(d, "ca.key"), "-out", self.ca_cert, "-days", "2", "-subj", "/CN=Test city CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", os.path.join(d, "server.key"), "-out", os.path.join(d, "server.csr"), "-subj", "/CN=updates")
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=IP:10.0.2.101\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", os.path.join(d, "server.csr"), "-CA", self.ca_cert,
            "-CAkey", os.path.join(d, "ca.key"), "-CAcreateserial", "-out", os.path.join(d, "server.pem"),
            "-days", "2", "-extfile", os.path.join(d, "ext.cnf"))
        bundle = os.path.join(image, "update.raucb")
        self.sha256 = subprocess.run(["sha256sum", bundle], check=True, capture_output=True,
                                     text=True).stdout.split()[0]
        self.log = os.path.join(d, "requests.log")
        open(self.log, "w").close()
        here = os.path.dirname(os.path.abspath(__file__))
        self.server = subprocess.Popen(
            [sys.executable, os.path.join(here, "..", "support", "https_server.py"), "--dir", image,
             "--cert", os.path.join(d, "server.pem"), "--key", os.path.join(d, "server.key"),
             "--log", self.log, "--cut-after", str(8 * 1024 * 1024)],
            stdout=subprocess.PIPE, stderr=open(os.path.join(d, "server.err"), "w"), text=True)
        self.port = int(self.server.stdout.readline())
        self.relay = os.path.join(d, "relay")
        with open(self.relay, "w") as f:
            f.write(f"#!/bin/sh\nexec socat - TCP:127.0.0.1:{self.port}\n")
        os.chmod(self.relay, 0o755)
        self.key = os.path.join(d, "image-test.key")

    def keygen(self):
        """The key's [[remote.keys]] entry."""
        p = subprocess.run([self.luciole, "fleet", "keygen", "--name", "image-test", "--role", "integrator",
                            "--out", self.dir], check=True, capture_output=True, text=True)
        return p.stdout

    def stop(self):
        self.server.kill()
        self.server.wait()


class Run:
    def __init__(self, arch, image, work):
        self.arch = arch
        self.image = image
        self.work = work
        self.failed = []
        self.partial = False
        self.times = {}
        self.boots = 0

    def report(self, step, ok, detail):
        print(f"IMAGE {self.arch} {step}: {'PASS' if ok else 'FAIL'} {detail}", flush=True)
        if not ok:
            self.failed.append(step)
        return ok

    def boot(self, name):
        self.boots += 1
        # Kept so that a step ending in an exception cannot leave its VM running (a guest
        # left behind would reach the next run's broker through the same relay script).
        self.current = Boot(self.machine, f"{self.boots}-{name}")
        return self.current

    def slot_info(self, vm):
        """(booted slot, version) from the guest."""
        slot = vm.out("sed -n 's/.*rauc\\.slot=\\([^ ]*\\).*/\\1/p' /proc/cmdline")
        version = vm.out("sed -n 's/^VERSION=//p' /etc/luciole-release")
        return slot, version

    def boot_check(self, vm, timeout):
        """The boot check's record for this boot: waits for it."""
        return vm.poll("cat /run/luciole-boot-check", timeout)

    def healthy(self, vm, timeout):
        return vm.poll("[ \"$(systemctl show -p ActiveState --value luciole)\" = active ] && "
                       "systemctl show -p StatusText --value luciole | grep -E ': [1-9][0-9]* analysed$'",
                       timeout)

    @staticmethod
    def poll_quiet(vm, script, timeout):
        """vm.poll, but a guest that goes down meanwhile gives None rather than an error."""
        try:
            return vm.poll(script, timeout)
        except VmError:
            return None

    def reboot(self, vm, timeout, after):
        """`systemctl reboot` in the guest; waits for QEMU to end (-no-reboot)."""
        vm.spawn("systemctl reboot")
        if vm.wait_exit(timeout) is None:
            raise VmError(f"the guest did not reboot after {after}")
        vm.close()

    def wait_new_events(self, after_count, timeout, want=1):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ev = self.broker.events()
            if len(ev) >= after_count + want:
                return ev
            time.sleep(1)
        return None

    def main(self):
        overlay = os.path.join(self.work, "disk.qcow2")
        if os.path.exists(overlay):
            os.unlink(overlay)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        os.path.join(self.image, "disk.img"), overlay], check=True)
        self.broker = Broker(self.work)
        self.link = Link(self.work, self.broker.port)
        self.machine = Machine(self.arch, os.path.join(self.image, "firmware"), overlay,
                               os.path.join(self.image, "updates.img"), self.link.relay, self.work)
        self.bundles = Bundles(self.work, self.image)
        self.machine.https_relay = self.bundles.relay
        # Upper bounds for one boot or one installation, generous: the two VMs share 2 cores
        # (an aarch64 installation took 447 s so).
        limit = 900 if self.arch == "aarch64" else 600
        self.current = None
        try:
            self.steps(limit)
        except VmError as err:
            self.report("vm", False, str(err))
        finally:
            if self.current is not None:
                self.current.kill()
            self.broker.stop()
            self.bundles.stop()
        t = " ".join(f"{k}={v:.0f}s" for k, v in self.times.items())
        print(f"IMAGE {self.arch} times: {t}", flush=True)
        if self.failed:
            print(f"IMAGE {self.arch}: FAIL ({', '.join(self.failed)}; logs in {self.work})", flush=True)
            return 1
        if self.partial:
            print(f"IMAGE {self.arch}: PARTIAL (LUCIOLE_IMAGE_ONLY: only some steps ran)", flush=True)
            return 1
        print(f"IMAGE {self.arch}: PASS", flush=True)
        return 0

    def steps(self, limit):
        # ---------------------------------------------------------------- boot (slot A)
        vm = self.boot("factory")
        vm.wait_agent(limit)
        record = self.boot_check(vm, limit)
        slot, version = self.slot_info(vm)
        user = vm.out("ps -o user= -C luciole | sort -u | tr '\\n' ' '")
        ro = vm.out("findmnt -no OPTIONS /")
        outbox_src = vm.out("findmnt -no SOURCE --target /var/lib/luciole/outbox")
        data_dev = vm.out("readlink -f /dev/disk/by-partlabel/data")
        health = self.healthy(vm, limit)
        self.times["boot"] = vm.elapsed()
        ok = (slot == "A" and version == "1" and record is not None and record.startswith("good")
              and user.strip() == "luciole" and ro.split(",")[0] == "ro"
              and outbox_src.startswith(data_dev + "[") and health is not None)
        self.report("boot", ok, f"slot={slot} version={version} user={user.strip()!r} root={ro.split(',')[0]} "
                    f"outbox_on={outbox_src!r} status={health!r} check={record!r} in {vm.elapsed():.0f}s")
        if os.environ.get("LUCIOLE_IMAGE_ONLY") == "remote":
            # For work on the remote steps only (tests/run never sets it): the result is
            # PARTIAL, never PASS.
            self.partial = True
            return self.remote_steps(vm, limit)

        # ---------------------------------------------------------------- security
        rc, out, err = vm.sh("systemd-analyze security --no-pager luciole.service", timeout=120)
        m = re.search(r"Overall exposure level for luciole\.service:\s*([0-9.]+)", out + err)
        score = float(m.group(1)) if m else None
        self.report("security", score is not None and score <= 2.0,
                    f"exposure={score} (limit 2.0)" + ("" if m else f" output: {(out + err)[-300:]!r}"))

        # ---------------------------------------------------------------- lamp
        lamp = vm.poll("chip=$(cat /sys/kernel/config/gpio-sim/luciole/gpio-bank0/chip_name) && "
                       "r=$(cat /sys/bus/gpio/devices/$chip/sim_gpio3/value) && "
                       "p=$(sed -n '1{s/ /,/g;p}' /sys/devices/platform/luciole-pwm-sim/sim_state) && "
                       "echo relay=$r pwm=$p && [ \"$r\" = 1 ] && [ \"$p\" = 0,1000000,300000,normal,1 ]",
                       120)
        self.report("lamp", lamp is not None, f"{lamp or 'relay/dimmer never reached on at 30 %'}")

        # ---------------------------------------------------------------- publish
        ev = self.wait_new_events(0, 120, want=3)
        kinds = sorted({e.get("kind") for e in (ev or [])})
        self.report("publish", ev is not None and "health" in kinds,
                    f"{len(ev or [])} events, kinds {kinds}")

        # ---------------------------------------------------------------- install (link down)
        self.link.down()
        time.sleep(3)
        before = self.broker.events()
        last_id = max((e["id"] for e in before), default=0)
        vm.out("mkdir -p /run/stick && { mountpoint -q /run/stick || mount -o ro /dev/disk/by-label/updates /run/stick; }")
        t0 = time.monotonic()
        rc, out, err = vm.sh("rauc install /run/stick/update.raucb", timeout=limit)
        self.times["install"] = time.monotonic() - t0
        status = vm.out("rauc status --output-format=json")
        st = json.loads(status)
        ok = rc == 0 and st.get("boot_primary") == "rootfs.1"
        self.report("install", ok, f"rc={rc} primary={st.get('boot_primary')} in {self.times['install']:.0f}s "
                    f"{(err or out).strip()[-200:]!r}")
        # Events made from here to the reboot wait in the outbox.
        time.sleep(6)
        t_switch = time.monotonic()
        self.reboot(vm, limit, "the update")

        # ---------------------------------------------------------------- switch (slot B)
        vm = self.boot("updated")
        vm.wait_agent(limit)
        record = self.boot_check(vm, limit)
        self.times["switch"] = time.monotonic() - t_switch
        slot, version = self.slot_info(vm)
        self.report("switch", slot == "B" and version == "2" and record is not None
                    and record.startswith("good") and "update accepted" in record,
                    f"slot={slot} version={version} check={record!r} reboot-to-good {self.times['switch']:.0f}s")

        # ---------------------------------------------------------------- delivered
        self.link.up()
        deadline = time.monotonic() + 120
        ids = []
        while time.monotonic() < deadline:
            ev = self.broker.events()
            ids = sorted({e["id"] for e in ev if e["id"] > last_id})
            boots = {e["id"] for e in ev if e.get("kind") == "status"
                     and e.get("data", {}).get("state") == "started" and e["id"] > last_id}
            # The events made before the update (before the reboot's `started`), then after it.
            if ids and boots and min(ids) == last_id + 1 and min(boots) > last_id + 1 \
                    and ids == list(range(ids[0], ids[-1] + 1)):
                break
            time.sleep(2)
        queued = [i for i in ids if i < min(boots or {0})]
        gapless = bool(ids) and ids == list(range(last_id + 1, ids[-1] + 1))
        self.report("delivered", gapless and len(queued) >= 2,
                    f"{len(queued)} events queued before the update delivered after it (ids {last_id + 1}.."
                    f"{(min(boots) - 1) if boots else '?'}), ids {ids[:1]}..{ids[-1:]} gapless={gapless}")

        if self.arch in FIRST_STEPS_ONLY:
            # The steps below test what is the same on both architectures (RAUC's signature
            # check, the boot check's script and GRUB script, the daemon's remote code, which
            # qemu-user and the emulated-hardware step run for aarch64 too). Under TCG an aarch64
            # installation takes twice as long as on x86_64, so they run on x86_64 only: the
            # image step ends about 15 minutes sooner.
            print(f"IMAGE {self.arch}: refused, rollback, powercut, remote, apply and update run on "
                  "x86_64 only", flush=True)
            return vm

        # ---------------------------------------------------------------- refused
        vm.out("mkdir -p /run/stick && { mountpoint -q /run/stick || mount -o ro /dev/disk/by-label/updates /run/stick; }")
        details = []
        ok = True
        for name in ("tampered", "foreign"):
            rc, out, err = vm.sh(f"rauc install /run/stick/{name}.raucb", timeout=limit)
            st = json.loads(vm.out("rauc status --output-format=json"))
            lines = [ln for ln in (err + out).splitlines()
                     if ln.strip() and not ln.strip().startswith("Installing")]
            why = [ln for ln in lines if re.search(r"(?i)error|fail|verif|signature|hash", ln)]
            msg = (why or lines)[-1:] or [""]
            ok = ok and rc != 0 and st.get("boot_primary") == "rootfs.1"
            details.append(f"{name}: rc={rc} primary={st.get('boot_primary')} {msg[0][-160:]!r}")
        self.report("refused", ok, "; ".join(details))

        # ---------------------------------------------------------------- rollback
        before_count = len(self.broker.events())
        rc, out, err = vm.sh("rauc install /run/stick/broken.raucb", timeout=limit)
        if rc != 0:
            self.report("rollback", False, f"broken.raucb did not install: {(err or out).strip()[-200:]!r}")
            return vm
        t_roll = time.monotonic()
        self.reboot(vm, limit, "installing the broken bundle")
        vm = self.boot("broken")
        vm.wait_agent(limit)
        slot3, version3 = self.slot_info(vm)
        # While the daemon fails, the lamp is at its safe (rated) level: the relay on and the
        # dimmer at 100 %, set by the unit's ExecStopPost after each failed start.
        # The boot check refuses a daemon that keeps failing within seconds: the poll may
        # meet the guest on its way down, which leaves lamp_safe None (a failure).
        lamp_safe = self.poll_quiet(vm, "p=$(sed -n '1{s/ /,/g;p}' /sys/devices/platform/luciole-pwm-sim/sim_state); "
                            "chip=$(cat /sys/kernel/config/gpio-sim/luciole/gpio-bank0/chip_name); "
                            "r=$(cat /sys/bus/gpio/devices/$chip/sim_gpio3/value); echo relay=$r pwm=$p; "
                            "[ \"$r\" = 1 ] && [ \"$p\" = 0,1000000,1000000,normal,1 ]",
                            120)
        ended = vm.wait_exit(limit + 120)
        serial3 = vm.serial()
        vm.close()
        vm = self.boot("rolled-back")
        vm.wait_agent(limit)
        record = self.boot_check(vm, limit)
        self.times["rollback"] = time.monotonic() - t_roll
        slot, version = self.slot_info(vm)
        history = vm.out("cat /data/update/history")
        health = self.healthy(vm, limit)
        ev = self.wait_new_events(before_count, 120, want=2)
        refusal = [h for h in history.splitlines() if "rollback" in h][-1:]
        # Refused because it kept failing, not because the time ran out.
        fast = bool(refusal) and "restart" in refusal[0]
        ok = (slot3 == "A" and version3 == "3" and ended is not None and slot == "B" and version == "2"
              and record is not None and record.startswith("good") and fast
              and health is not None and ev is not None and lamp_safe is not None)
        self.report("rollback", ok,
                    f"broken boot slot={slot3} version={version3} lamp={lamp_safe!r} rebooted={ended is not None}; "
                    f"then slot={slot} version={version} status={health!r} new_events={ev is not None} "
                    f"install-to-back {self.times['rollback']:.0f}s; history: {refusal!r}")
        if ended is None:
            print(serial3[-2000:])

        # ---------------------------------------------------------------- power cut
        vm.out("mkdir -p /run/stick && { mountpoint -q /run/stick || mount -o ro /dev/disk/by-label/updates /run/stick; }")
        vm.out("nohup rauc install /run/stick/update.raucb >/run/install.log 2>&1 &")
        # RAUC says "Copying image to rootfs.N" when it starts writing the slot, and "... done"
        # when it has: the plug is pulled a few seconds into the writing.
        progress = vm.poll("grep -q 'Copying image to' /run/install.log && "
                           "! grep -q 'Copying image to.* done' /run/install.log && "
                           "tail -n 1 /run/install.log", limit, every=0.5)
        time.sleep(5)
        written = vm.sh("grep -c 'Copying image to.* done' /run/install.log", timeout=30)[1].strip()
        vm.kill()
        progress = progress if written == "0" else None
        before_count = len(self.broker.events())
        vm = self.boot("after-power-cut")
        vm.wait_agent(limit)
        record = self.boot_check(vm, limit)
        slot, version = self.slot_info(vm)
        health = self.healthy(vm, limit)
        ev = self.wait_new_events(before_count, 120, want=2)
        self.report("powercut", progress is not None and slot == "B" and version == "2" and record is not None
                    and record.startswith("good") and health is not None and ev is not None,
                    f"killed while RAUC was writing the slot ({progress!r}); then slot={slot} version={version} "
                    f"check={record!r} status={health!r}")
        return self.remote_steps(vm, limit)

    # -------------------------------------------------------------------- remote operations
    def fleet(self, *args, timeout):
        """`luciole fleet ARGS` on the host against the test's broker: (JSON lines, output)."""
        cmd = [self.bundles.luciole, "fleet", args[0], "--broker", f"mqtt://127.0.0.1:{self.broker.port}",
               *args[1:]]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
        return lines, p.stdout + p.stderr

    def send(self, command, *args, timeout):
        return self.fleet("send", "--key", self.bundles.key, "--site", SITE, "--device", DEVICE,
                          "--timeout", str(timeout), "--ttl", "900", *args, command, timeout=timeout + 30)

    def remote_steps(self, vm, limit):
        # ---------------------------------------------------------------- remote (set-up)
        entry = self.bundles.keygen()
        ca = open(self.bundles.ca_cert).read()
        config = (f"\n[remote]\napply_timeout_s = {limit}\n\n{entry}\n"
                  "[remote.update]\nca = \"/etc/luciole/update-ca.pem\"\nmax_mib = 1024\n"
                  "window = \"02:00-05:00\"\n")
        vm.out(f"cat > /etc/luciole/update-ca.pem <<'EOF'\n{ca}EOF\n"
               f"cat >> /etc/luciole/luciole.toml <<'EOF'\n{config}EOF\n"
               "luciole check-config /etc/luciole/luciole.toml && systemctl reload luciole")
        answer = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            lines, text = self.send("status", timeout=10)
            if lines and lines[0].get("ok"):
                answer = lines[0]
                break
            time.sleep(5)
        self.report("remote", answer is not None,
                    f"status over the command channel: {json.dumps((answer or {}).get('result', {}))[:300]}")
        if answer is None:
            print(text[-1000:])
            print(vm.sh("journalctl -u luciole --no-pager | grep -v '\"health\"' | tail -n 30; "
                        "tail -n 20 /etc/luciole/luciole.toml; ls -la /etc/luciole /var/lib/luciole; "
                        "systemctl show -p MainPID luciole; cat /proc/$(systemctl show -p MainPID --value luciole)/mountinfo | grep luciole",
                        timeout=60)[1][-6000:], flush=True)
            return vm

        # ---------------------------------------------------------------- apply
        partial = os.path.join(self.work, "partial.toml")
        with open(partial, "w") as f:
            f.write("[events]\nhealth_interval_ms = 4000\n")
        lines, text = self.send("config.apply", "--arg", "partial=true", "--arg-file", f"config={partial}",
                                timeout=limit)
        owner = vm.out("stat -c '%U %a' /etc/luciole/luciole.toml; stat -c '%U' /etc/luciole/update.conf; "
                       "grep -c '^health_interval_ms = 4000' /etc/luciole/luciole.toml || true")
        o = owner.split()
        ok = (bool(lines) and lines[0].get("ok") is True and len(o) == 4 and o[0] == "luciole"
              and o[2] == "root" and o[3] == "1")
        self.report("apply", ok, f"answer={json.dumps(lines[:1])[:300]} owner/mode, update.conf owner, "
                    f"value present: {owner.split()} {'' if lines else text[-300:]!r}")

        # ---------------------------------------------------------------- update (remote)
        slot_before, _ = self.slot_info(vm)
        before_count = len(self.broker.events())
        start = time.strftime("%H:%M", time.gmtime(time.time() - 60))
        end = time.strftime("%H:%M", time.gmtime(time.time() + 3 * 3600))
        t0 = time.monotonic()
        # Commands are at most once (a clean session): one sent while the pole reconnects (a
        # daemon restarted by its watchdog on a loaded machine) is lost, and sent again here. A
        # `busy` answer means an earlier one started the job (its answer was lost).
        accepted = False
        deadline = time.monotonic() + limit
        while not accepted and time.monotonic() < deadline:
            lines, text = self.send("update.install", "--arg", "url=https://10.0.2.101/update.raucb?token=secret",
                                    "--arg", f"sha256={self.bundles.sha256}", "--arg", f"window={start}-{end}",
                                    timeout=60)
            error = (lines[0].get("error") or {}).get("code") if lines else None
            accepted = bool(lines) and (lines[0].get("ok") is True or error == "busy")
            if not accepted and error not in (None, "timeout"):
                break
        ended = vm.wait_exit(limit * 2) if accepted else None
        vm.close()
        if not accepted or ended is None:
            steps = [e["data"].get("step") for e in self.broker.events()[before_count:] if e.get("kind") == "update"]
            self.report("update", False, f"answer={json.dumps(lines[:1])[:300]} rebooted={ended is not None} "
                        f"steps={steps} {'' if lines else text[-300:]!r}")
            return vm
        vm = self.boot("remote-update")
        vm.wait_agent(limit)
        record = self.boot_check(vm, limit)
        slot, version = self.slot_info(vm)
        deadline = time.monotonic() + limit
        steps = []
        while time.monotonic() < deadline:
            events = self.broker.events()[before_count:]
            updates = [e["data"] for e in events if e.get("kind") == "update"]
            steps = [u["step"] for u in updates]
            if "good" in steps or "failed" in steps:
                break
            time.sleep(3)
        self.times["remote-update"] = time.monotonic() - t0
        requests = open(self.bundles.log).read().splitlines()
        resumed = any("range=bytes=" in r and "status=206" in r for r in requests)
        leaked = any("secret" in json.dumps(e) for e in self.broker.events())
        want = ["downloading", "downloaded", "installing", "installed", "rebooting", "booted", "good"]
        ok = (slot != slot_before and version == "2" and record is not None and record.startswith("good")
              and all(w in steps for w in want) and "failed" not in steps and resumed and not leaked)
        self.report("update", ok, f"slot {slot_before} -> {slot} version={version} check={record!r} steps={steps} "
                    f"resumed={resumed} token_in_events={leaked} requests={requests} "
                    f"order-to-good {self.times['remote-update']:.0f}s")
        return vm


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: check.py ARCH IMAGE_FOLDER WORK_FOLDER")
    arch, image, work = sys.argv[1:]
    for tool in ("qemu-img", "mosquitto", "mosquitto_sub", "socat", "pkill",
                 "qemu-system-x86_64" if arch == "x86_64" else "qemu-system-aarch64"):
        if shutil.which(tool) is None:
            print(f"IMAGE {arch}: FAIL: {tool} not found (tests/setup installs it)")
            return 1
    os.makedirs(work, exist_ok=True)
    return Run(arch, image, work).main()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
