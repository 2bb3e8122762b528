"""One boot of the appliance image under QEMU (TCG), driven from the host.

The VM gets the image's disk (through a copy-on-write overlay, so the cached
image is never changed), the "update stick" (read-only), the UEFI firmware,
a serial console written to a file, and a virtio port for the QEMU guest
agent, through which the test runs commands in the guest. Its only network
is QEMU's restricted user network: the guest can reach nothing but
10.0.2.100:1883, which QEMU forwards, one connection at a time, to a relay
command on the host (a loopback broker).

`-no-reboot`: a reboot inside the guest ends QEMU, and the test starts the
next boot itself, so each boot is seen on its own.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import time


class VmError(Exception):
    pass


class Machine:
    """The fixed parts of every boot of one architecture."""

    def __init__(self, arch, firmware, disk, stick, relay, workdir, memory=1024):
        # A second way out, set by the test when it serves bundles: the guest's
        # 10.0.2.101:443 to this script (a relay to a loopback port on the host).
        self.https_relay = None
        self.arch = arch
        self.firmware = firmware
        self.disk = disk
        self.stick = stick
        self.relay = relay
        self.workdir = workdir
        self.memory = memory

    def command(self, serial_log, agent_socket):
        if self.arch == "x86_64":
            cmd = ["qemu-system-x86_64", "-accel", "tcg", "-M", "q35", "-cpu", "max"]
        elif self.arch == "aarch64":
            cmd = ["qemu-system-aarch64", "-accel", "tcg", "-M", "virt", "-cpu", "cortex-a72"]
        else:
            raise VmError(f"unknown architecture {self.arch}")
        # Two vCPUs, even with the two architectures' VMs side by side on a 2-core machine: a
        # busy guest (an installation: dm-verity, squashfs, RAUC's copy) can then use the core
        # the other, waiting, guest leaves. Side by side, x86_64 installs took 182 s with 2 vCPUs
        # and 472 s with 1; aarch64 284 s and 447 s (docs/performance.md).
        cmd += [
            "-m", str(self.memory), "-smp", "2",
            "-bios", self.firmware,
            "-drive", f"if=none,id=disk,file={self.disk},format=qcow2,cache=unsafe",
            "-device", "virtio-blk-pci,drive=disk,bootindex=0",
            "-drive", f"if=none,id=stick,file={self.stick},format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=stick",
            "-chardev", f"socket,id=qga,path={agent_socket},server=on,wait=off",
            "-device", "virtio-serial-pci",
            "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
            # The only way out: the broker, through the relay on the host.
            "-netdev", f"user,id=net0,restrict=on,guestfwd=tcp:10.0.2.100:1883-cmd:{self.relay}"
                       + (f",guestfwd=tcp:10.0.2.101:443-cmd:{self.https_relay}" if self.https_relay else ""),
            "-device", "virtio-net-pci,netdev=net0",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{serial_log}",
        ]
        return cmd


class Boot:
    """A running QEMU: start, talk to the guest agent, wait for the end."""

    def __init__(self, machine, name):
        self.machine = machine
        self.name = name
        self.serial_log = os.path.join(machine.workdir, f"serial-{name}.log")
        self.agent_socket = os.path.join(machine.workdir, f"qga-{name}.sock")
        self.started = time.monotonic()
        if os.path.exists(self.agent_socket):
            os.unlink(self.agent_socket)
        cmd = machine.command(self.serial_log, self.agent_socket)
        self.qemu_log = open(os.path.join(machine.workdir, f"qemu-{name}.log"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.qemu_log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.sock = None
        self.buf = b""

    def elapsed(self):
        return time.monotonic() - self.started

    def alive(self):
        return self.proc.poll() is None

    def serial(self):
        try:
            with open(self.serial_log, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    # -- guest agent ----------------------------------------------------------------------
    def _send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def _recv(self, deadline):
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                if line.strip():
                    return json.loads(line)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise VmError("guest agent: no answer in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise VmError("guest agent: no answer in time")
            if not chunk:
                raise VmError("guest agent: connection closed")
            self.buf += chunk

    def _call(self, command, arguments=None, timeout=30):
        obj = {"execute": command}
        if arguments is not None:
            obj["arguments"] = arguments
        self._send(obj)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(deadline)
            if "error" in reply:
                raise VmError(f"guest agent: {command}: {reply['error']}")
            if "return" in reply:
                return reply["return"]

    def _sync(self, timeout):
        """guest-sync with a fresh id: skips anything stale in the channel."""
        token = int(time.monotonic() * 1000) % 2_000_000_000
        self.buf = b""
        # 0xFF resets the agent's parser after a half-written request.
        self.sock.sendall(b"\xff")
        self._send({"execute": "guest-sync", "arguments": {"id": token}})
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self._recv(deadline)
            except json.JSONDecodeError:
                continue
            if reply.get("return") == token:
                return

    def wait_agent(self, timeout):
        """Until the guest agent answers (the guest has booted far enough), or VmError."""
        deadline = time.monotonic() + timeout
        last = "not tried"
        while time.monotonic() < deadline:
            if not self.alive():
                raise VmError(f"QEMU ended (status {self.proc.returncode}) before the guest agent answered")
            try:
                if self.sock is None:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(self.agent_socket)
                    self.sock = s
                self._sync(min(5, max(1, deadline - time.monotonic())))
                return
            except (OSError, VmError) as err:
                last = str(err)
                self._drop_socket()
                time.sleep(1)
        raise VmError(f"the guest agent did not answer within {timeout} s ({last})")

    def sh(self, script, timeout=60):
        """Runs `sh -c script` in the guest: (exit status, stdout, stderr)."""
        r = self._call("guest-exec", {"path": "/bin/sh", "arg": ["-c", script], "capture-output": True})
        pid = r["pid"]
        deadline = time.monotonic() + timeout
        while True:
            st = self._call("guest-exec-status", {"pid": pid}, timeout=max(5, deadline - time.monotonic()))
            if st.get("exited"):
                out = base64.b64decode(st.get("out-data", "")).decode(errors="replace")
                err = base64.b64decode(st.get("err-data", "")).decode(errors="replace")
                return st.get("exitcode", -1 if "signal" in st else 0), out, err
            if time.monotonic() > deadline:
                raise VmError(f"guest command did not end within {timeout} s: {script}")
            time.sleep(0.5)

    def spawn(self, script):
        """Starts `sh -c script` in the guest without waiting for it (a reboot: the agent
        itself is stopped on the way)."""
        self._call("guest-exec", {"path": "/bin/sh", "arg": ["-c", script]})

    def out(self, script, timeout=60):
        """stdout of a guest command that must succeed."""
        rc, out, err = self.sh(script, timeout)
        if rc != 0:
            raise VmError(f"guest command failed ({rc}): {script}: {err.strip() or out.strip()}")
        return out.strip()

    def poll(self, script, timeout, every=2.0):
        """Runs script until it exits 0: its stdout, or None at the deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return None
            rc, out, _ = self.sh(script, timeout=60)
            if rc == 0:
                return out.strip()
            time.sleep(every)
        return None

    # -- the end --------------------------------------------------------------------------
    def wait_exit(self, timeout):
        """Waits for QEMU to end (the guest rebooted or powered off): its status, or None."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        """Pulls the plug: SIGKILL to QEMU (a power cut for the guest)."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.close()

    def _drop_socket(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def close(self):
        self._drop_socket()
        self.qemu_log.close()
