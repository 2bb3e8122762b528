#!/usr/bin/env python3
"""Checks the serial logs of tests/hil/faults against the outbox's delivery contract.

    faults_check.py [settings] power --cycles N DIR     DIR/boot-1.log ... boot-N.log, boot-final.log
    faults_check.py [settings] eio DIR                   DIR/boot.log
    faults_check.py [settings] clock DIR                 DIR/boot.log
    faults_check.py --self-test                          the checks against made-up logs

Prints one `ok:` or `FAIL:` line per check and a `SUMMARY:` line; exits 1 if any check failed.
Python standard library only. The contract (docs/events.md, "Delivery guarantees"): ids
contiguous (a gap only where a `dropped` event reports it), in order, no id with two contents,
nothing older than the durability window (`outbox.flush_ms` plus one fsync) lost at a power cut.
"""

import argparse
import datetime
import json
import os
import re
import sys


class Report:
    def __init__(self):
        self.failed = []
        self.lines = []

    def ok(self, cond, what):
        self.lines.append(("ok: " if cond else "FAIL: ") + what)
        if not cond:
            self.failed.append(what)
        return cond

    def note(self, what):
        self.lines.append("   " + what)

    def print(self, summary):
        for line in self.lines:
            print(line)
        print("SUMMARY: " + summary)
        return 1 if self.failed else 0


# ------------------------------------------------------------------ serial log parsing
def read_log(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return [line.rstrip("\r") for line in text.split("\n")]


def facts(lines, key):
    """Every `@@HIL key ...` line, as lists of words after the key."""
    out = []
    for line in lines:
        if line.startswith("@@HIL " + key + " ") or line == "@@HIL " + key:
            out.append(line.split()[2:])
    return out


def fact(lines, key):
    found = facts(lines, key)
    return found[-1] if found else None


def block(lines, name):
    """The lines between `@@HIL-BEGIN name` and `@@HIL-END name` (None if absent)."""
    out = None
    for line in lines:
        if out is None:
            if line == "@@HIL-BEGIN " + name:
                out = []
        elif line == "@@HIL-END " + name:
            return out
        else:
            out.append(line)
    return out


def parse_ms(text):
    """RFC 3339 UTC with milliseconds (the events' `time`) to Unix ms."""
    dt = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return int(round(dt.timestamp() * 1000))


def fmt_ms(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def events_of(lines):
    """`luciole events --all` output: {id: (raw line, event)} in file order."""
    out = {}
    for line in lines or []:
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        out[event["id"]] = (line, event)
    return out


def check_ids(report, events, what, first=None):
    """Ids contiguous from `first` (default: the smallest), except where a `dropped` event reports the gap; returns
    the ids neither present nor reported."""
    ids = sorted(events)
    if ids and first is not None:
        ids = [first] + ids
    reported = set()
    for _, ev in events.values():
        if ev["kind"] == "dropped":
            reported.update(range(ev["data"]["first_id"], ev["data"]["last_id"] + 1))
    missing = [i for i in range(ids[0], ids[-1] + 1) if i not in events and i not in reported] if ids else []
    report.ok(not missing, f"{what}: ids {ids[0] if ids else '-'}..{ids[-1] if ids else '-'} contiguous or reported by `dropped` events"
              + (f" (missing, unreported: {ranges(missing)})" if missing else ""))
    return missing


def ranges(ids):
    out, start, prev = [], None, None
    for i in ids:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(out[:8]) + (" ..." if len(out) > 8 else "")


# ------------------------------------------------------------------ power loss
def check_power(args, report):
    """Each boot k: the outbox as found after cut k-1 (S_k), then the daemon until cut k. S_k must
    be contained, byte for byte, in S_k+1 (what was durable stays durable and keeps its id and
    bytes); the events boot k added (S_k+1 minus S_k) continue the ids and reach up to the
    durability window before the cut. The cut happens after the last tick the host received
    (T_k <= cut), so `T_k - newest surviving event of boot k <= flush_ms + health_ms + fsync
    allowance` is a bound that a lost durable event breaks: the daemon stores a health event
    every health_ms, commits every flush_ms, and an fsync under TCG takes up to the allowance."""
    bound = args.flush_ms + args.health_ms + args.fsync_allowance_ms
    snaps = []
    ticks = []
    for k in range(1, args.cycles + 2):
        name = f"boot-{k}.log" if k <= args.cycles else "boot-final.log"
        path = os.path.join(args.dir, name)
        if not report.ok(os.path.exists(path), f"boot {k}: serial log {name}"):
            return "no log"
        lines = read_log(path)
        ev = fact(lines, "events")
        if k == 1:
            report.ok(ev is not None and ev[1] == "none", f"boot 1: a fresh disk (no outbox yet): {ev}")
            snaps.append({})
        else:
            ok = report.ok(ev is not None and ev[1] == "rc=0", f"boot {k}: `luciole events --all` of what survived cut {k - 1}: {ev}")
            if not ok:
                report.note("stderr: " + " | ".join(block(lines, f"events-before-{k}-stderr") or []))
                return "events failed"
            snaps.append(events_of(block(lines, f"events-before-{k}")))
        if k <= args.cycles:
            t = [int(line.split()[1]) for line in lines if re.match(r"^@@T \d+ \d+$", line)]
            report.ok(bool(fact(lines, "daemon-up")) and len(t) > 0, f"boot {k}: daemon up, {len(t)} ticks before the cut")
            report.ok(any(line.startswith("@@HOST cut") for line in lines), f"boot {k}: power cut by the host")
            report.ok(fact(lines, "done") is None, f"boot {k}: the guest never shut down (a cut, not a poweroff)")
            ticks.append(t[-1] if t else None)
    windows = []
    for k in range(1, args.cycles + 1):
        before, after = snaps[k - 1], snaps[k]
        changed = [i for i in before if i not in after or after[i][0] != before[i][0]]
        report.ok(not changed, f"cut {k}: the {len(before)} event(s) durable before boot {k} are all still there, byte for byte"
                  + (f" (lost or changed: {ranges(sorted(changed))})" if changed else ""))
        new = sorted(i for i in after if i not in before)
        if not report.ok(bool(new), f"cut {k}: boot {k} stored events that survived the cut ({len(new)})"):
            continue
        first = after[new[0]][1]
        expect_first = max(before) + 1 if before else 1
        report.ok(new[0] == expect_first and new == list(range(new[0], new[-1] + 1)),
                  f"cut {k}: boot {k}'s ids continue the outbox's: {new[0]}..{new[-1]} (expected from {expect_first})")
        report.ok(first["kind"] == "status" and first["data"].get("state") == "started",
                  f"cut {k}: boot {k}'s first event is status started ({first['kind']} {first['data'].get('state', '')})")
        newest = max(parse_ms(after[i][1]["time"]) for i in new)
        if ticks[k - 1] is None:
            continue
        lost = ticks[k - 1] - newest
        windows.append(lost)
        report.ok(lost <= bound,
                  f"cut {k}: newest surviving event {fmt_ms(newest)} is {lost} ms before the last tick {fmt_ms(ticks[k - 1])} "
                  f"(at most flush {args.flush_ms} + health {args.health_ms} + fsync allowance {args.fsync_allowance_ms} = {bound} ms)")
    final = snaps[-1]
    if final:
        check_ids(report, final, "final outbox", first=1)
        times = [parse_ms(final[i][1]["time"]) for i in sorted(final)]
        report.ok(all(a <= b for a, b in zip(times, times[1:])), "final outbox: event times never go back along the ids")
        alerts = [ev for _, ev in final.values() if ev["kind"] == "alert"]
        report.ok(not alerts, "final outbox: no alert (outbox_lost_events / outbox_corrupted)"
                  + (": " + "; ".join(f"{a['data']['code']}: {a['data']['message']}" for a in alerts) if alerts else ""))
        dup = {}
        for _, ev in final.values():
            dup.setdefault(ev["kind"], 0)
            dup[ev["kind"]] += 1
        report.note("final outbox kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(dup.items())))
    return (f"{args.cycles} cuts, {len(final)} events kept, ids 1..{max(final) if final else 0}, "
            f"newest survivor {', '.join(str(w) for w in windows)} ms before the last tick (bound {bound} ms)")


# ------------------------------------------------------------------ I/O error
def log_records(lines):
    out = []
    for line in lines or []:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def check_eio(args, report):
    """blkdebug fails a window of the disk's writes (EIO) while the daemon runs. The fixed
    daemon notices that its store is broken, says so with an `alert` event, and stores events
    again (reopening the store, or exiting non-zero and being restarted: the guest restarts it
    like systemd), so that the outbox is not silently disabled."""
    lines = read_log(os.path.join(args.dir, "boot.log"))
    if not report.ok(fact(lines, "daemon-up") is not None, "the daemon started and opened its outbox"):
        report.note("daemon log: " + " | ".join((block(lines, "daemon-log") or [])[-5:]))
        return "no daemon"
    before = fact(lines, "disk-stat-before-arm") or []
    early = fact(lines, "io-errors-before-arm") or ["?"]
    report.ok(early == ["0"], f"no I/O error before blkdebug was armed ({early[0]}; disk {' '.join(before)})")
    first = fact(lines, "first-io-error")
    if not report.ok(first is not None and first[0] != "none",
                     "blkdebug failed the disk's writes after it was armed (kernel: `I/O error, dev vda`)"):
        return "no error injected"
    t_err = int(first[0])
    observed = int(fact(lines, "observed")[0])
    exits = facts(lines, "daemon-exit")
    storage_lines = int((fact(lines, "storage-error-lines") or ["0"])[0])
    crashed = [e for e in exits if e[1] != "rc=0" and int(e[2]) <= observed]
    report.ok(storage_lines > 0 or bool(crashed),
              f"the injected error reached the outbox ({storage_lines} storage error log line(s), "
              f"{len(crashed)} non-zero exit(s)): else this run tested nothing")
    ev = fact(lines, "events")
    if not report.ok(ev is not None and ev[1] == "rc=0", f"`luciole events --all` after the run: {ev}"):
        report.note("stderr: " + " | ".join(block(lines, "events-after-stderr") or []))
        return "events failed"
    events = events_of(block(lines, "events-after"))
    settle_ms = 5000
    later = [i for i, (_, e) in events.items() if parse_ms(e["time"]) >= t_err + settle_ms]
    report.ok(len(later) >= 10,
              f"events stored again after the error: {len(later)} event(s) made from {settle_ms} ms after the first "
              f"I/O error ({fmt_ms(t_err)}) to the end of the run ({fmt_ms(observed)}), need >= 10"
              + ("" if later else f"; the outbox stayed disabled ({storage_lines} storage error log line(s), "
                                  f"daemon exits: {' '.join(e[1] for e in exits) or 'none before the stop'})"))
    alerts = [e for _, e in events.values() if e["kind"] == "alert" and parse_ms(e["time"]) >= t_err - 1000]
    report.ok(bool(alerts), "an `alert` event says the outbox's storage failed"
              + (": " + "; ".join(f"{a['data']['code']}: {a['data']['message']}" for a in alerts)
                 if alerts else " (none stored after the error)"))
    records = log_records(block(lines, "daemon-log"))
    errs = [r for r in records if "storage failed" in json.dumps(r) or "not stored" in json.dumps(r)]
    last_err = max((parse_ms(r["timestamp"][:23] + "Z") for r in errs if "timestamp" in r), default=None)
    if last_err is not None:
        report.ok(last_err <= t_err + 15000,
                  f"storage errors stop within 15 s of the first I/O error (last at {fmt_ms(last_err)}, "
                  f"{(last_err - t_err) / 1000:.1f} s after)")
    if events:
        check_ids(report, {i: v for i, v in events.items()}, "outbox after the run")
        ids = sorted(events)
        gaps = [(a, b) for a, b in zip(ids, ids[1:]) if b != a + 1]
        for a, b in gaps:
            reported = any(e["kind"] == "alert" and i > a for i, (_, e) in events.items())
            report.ok(reported, f"the gap {a + 1}..{b - 1} is followed by an alert")
    return (f"first I/O error at {fmt_ms(t_err)}, {len(later)} events stored after it, "
            f"{len(alerts)} alert(s), daemon exits: {' '.join(e[1] for e in exits) or 'none'}")


# ------------------------------------------------------------------ clock jumps
def check_clock(args, report):
    """Events wait for a broker the daemon cannot reach while the wall clock jumps three days
    forwards, then five days back. Retention must follow the time events were actually held
    (the boot clock): none expires at once after the forward jump, none is kept past retention
    after the backward jump; then everything left is delivered under the contract."""
    lines = read_log(os.path.join(args.dir, "boot.log"))
    marks = {m[0]: (int(m[1]), int(m[2])) for m in facts(lines, "mark")}
    needed = ["start", "before-forward", "after-forward", "before-back", "after-back", "broker-up", "drained"]
    if not report.ok(all(n in marks for n in needed), f"the guest went through every step ({', '.join(marks) or 'none'})"):
        report.note("daemon log: " + " | ".join((block(lines, "daemon-log") or [])[-5:]))
        return "incomplete"
    off = {  # wall - boot clock, per phase
        "A": marks["before-forward"][0] - marks["before-forward"][1],
        "B": marks["after-forward"][0] - marks["after-forward"][1],
        "C": marks["after-back"][0] - marks["after-back"][1],
    }
    spans = {
        "A": (0, marks["before-forward"][1] + 1000),
        "B": (marks["after-forward"][1] - 1000, marks["before-back"][1] + 1000),
        "C": (marks["after-back"][1] - 1000, 10**12),
    }
    report.note(f"offsets wall-boot: A {off['A']} ms, B {off['B'] - off['A']:+} ms from A, C {off['C'] - off['A']:+} ms from A")

    def boot_ms(wall):
        for phase in "ABC":
            b = wall - off[phase]
            if spans[phase][0] <= b <= spans[phase][1]:
                return b
        return None

    published = block(lines, "published") or []
    delivered = {}
    order_ok = True
    dups_bad = []
    last_id = {}
    unmapped = []
    for line in published:
        topic, _, payload = line.partition(" ")
        if "/events/" not in topic:
            continue
        ev = json.loads(payload)
        if ev["id"] in delivered:
            if delivered[ev["id"]][0] != payload:
                dups_bad.append(ev["id"])
            continue
        if ev["id"] <= last_id.get(topic, 0):
            order_ok = False
        last_id[topic] = ev["id"]
        delivered[ev["id"]] = (payload, ev)
        if boot_ms(parse_ms(ev["time"])) is None:
            unmapped.append(ev["id"])
    if not report.ok(bool(delivered), f"the broker received events ({len(delivered)})"):
        report.note("broker log: " + " | ".join(block(lines, "broker-log") or []))
        report.note("daemon log: " + " | ".join((block(lines, "daemon-log") or [])[-8:]))
        return "nothing published"
    report.ok(not dups_bad, "no id delivered with two different contents" + (f" ({ranges(sorted(dups_bad))})" if dups_bad else ""))
    report.ok(order_ok, "ids increase on each topic (duplicates aside)")
    report.ok(not unmapped, "every event's time falls in one phase of the run" + (f" (not: {ranges(sorted(unmapped))})" if unmapped else ""))
    check_ids(report, delivered, "delivered", first=1)
    retention = args.retention_s * 1000
    up = marks["broker-up"][1]
    # Not expired at once: every expiry happened after the youngest expired event was held for the
    # retention time (from the `to` of each `dropped` event to the `dropped` event itself).
    early = []
    expired = 0
    for i, (_, ev) in sorted(delivered.items()):
        if ev["kind"] != "dropped":
            continue
        d = ev["data"]
        expired += d["count"]
        at, youngest = boot_ms(parse_ms(ev["time"])), boot_ms(parse_ms(d["to"]))
        if at is None or youngest is None or at - youngest < retention - 1500:
            early.append(f"ids {d['first_id']}-{d['last_id']} ({d['reason']}) dropped "
                         + (f"{(at - youngest) / 1000:.1f} s after the youngest was made" if at is not None and youngest is not None
                            else "at an unmappable time"))
    report.ok(not early, f"no event dropped before it was held {args.retention_s} s on the boot clock"
              + (": " + "; ".join(early) if early else f" ({expired} expired)"))
    # Not kept forever: nothing delivered had been held longer than retention (+5 s) when the
    # broker came back.
    stale = []
    for i, (_, ev) in sorted(delivered.items()):
        if ev["kind"] == "dropped":
            continue
        b = boot_ms(parse_ms(ev["time"]))
        if b is not None and up - b > retention + 5000:
            stale.append(i)
    report.ok(not stale, f"nothing delivered had waited more than {args.retention_s} + 5 s when the broker came back"
                         + (f" (kept too long: ids {ranges(stale)}, made up to "
                            f"{(up - boot_ms(parse_ms(delivered[stale[0]][1]['time']))) / 1000:.0f} s before)" if stale else ""))
    made_before = [i for i, (_, e) in delivered.items() if (boot_ms(parse_ms(e["time"])) or 0) < up and e["kind"] != "dropped"]
    made_after = [i for i, (_, e) in delivered.items() if (boot_ms(parse_ms(e["time"])) or 0) >= up]
    report.ok(len(made_before) >= 10, f"events queued during the outage were delivered ({len(made_before)})")
    report.ok(len(made_after) >= 1, f"events made after the broker came back were delivered ({len(made_after)})")
    exit_fact = fact(lines, "daemon-exit")
    report.ok(exit_fact == ["rc=0"], f"the daemon stopped cleanly on SIGTERM ({exit_fact})")
    return (f"{len(delivered)} events delivered, {expired} expired, {len(made_before)} queued through jumps of +3 d and -5 d")


# ------------------------------------------------------------------ self-test
def self_test():
    """The checkers against made-up logs. Power: a clean run passes; a lost durable event, a
    rewritten id and a window beyond the bound each fail. Clock: retention on the boot clock
    passes; everything expired at the forward jump fails."""
    import tempfile

    def ev(i, t, kind="health", data=None):
        return json.dumps({"schema": 2, "id": i, "time": fmt_ms(t), "site": "hil", "device": "x", "kind": kind,
                           "data": data if data is not None else {"n": i}}, separators=(",", ":"))

    def boot(k, before, tick, cut=True):
        out = [f"@@HIL boot 1 x fault=power cycle={k}"]
        if before is None:
            out.append(f"@@HIL events before-{k} none")
        else:
            out += [f"@@HIL events before-{k} rc=0", f"@@HIL-BEGIN events-before-{k}", "/data/outbox: n", *before,
                    f"@@HIL-END events-before-{k}"]
        if tick is not None:
            out += ["@@HIL daemon-up 1 1", f"@@T {tick - 100} 1", f"@@T {tick} 2", "@@HOST cut"]
        elif not cut:
            out.append("@@HIL done 9")
        return "\n".join(out) + "\n"

    def run(case):
        t0 = 1_800_000_000_000
        started = {"state": "started"}
        b1 = [ev(1, t0, "status", started)] + [ev(i, t0 + i * 100) for i in range(2, 20)]
        b2 = [ev(20, t0 + 10000, "status", started)] + [ev(i, t0 + 10000 + (i - 20) * 100) for i in range(21, 40)]
        survived1 = list(b1)
        survived2 = b1 + b2
        tick1, tick2 = t0 + 19 * 100 + 300, t0 + 10000 + 19 * 100 + 300
        if case == "lost":
            survived2 = b1[:10] + b1[11:] + b2
        elif case == "rewritten":
            survived2 = b1[:-1] + [ev(19, t0 + 5, "health", {"n": "other"})] + b2
        elif case == "window":
            tick2 = t0 + 10000 + 19 * 100 + 5000
        d = tempfile.mkdtemp(prefix="faults-selftest-")
        for name, text in (("boot-1.log", boot(1, None, tick1)), ("boot-2.log", boot(2, survived1, tick2)),
                           ("boot-final.log", boot(3, survived2, None, cut=False))):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        args = argparse.Namespace(dir=d, cycles=2, flush_ms=50, health_ms=100, fsync_allowance_ms=1000)
        report = Report()
        check_power(args, report)
        return report.failed

    def run_clock(case):
        """A run as the fixed daemon would do it (retention on the boot clock), or as main does."""
        day = 86_400_000
        w0, u0 = 1_800_000_000_000, 10_000
        marks = {"start": (w0, u0), "before-forward": (w0 + 3000, u0 + 3000),
                 "after-forward": (w0 + 3 * day + 3100, u0 + 3100), "before-back": (w0 + 3 * day + 7100, u0 + 7100),
                 "after-back": (w0 - 2 * day + 7200, u0 + 7200), "broker-up": (w0 - 2 * day + 77200, u0 + 77200),
                 "drained": (w0 - 2 * day + 80000, u0 + 80000)}

        def wall(b):  # boot ms to wall ms, by phase
            if b <= u0 + 3000:
                return w0 + (b - u0)
            if b <= u0 + 7100:
                return w0 + 3 * day + (b - u0)
            return w0 - 2 * day + (b - u0)
        made = [u0 + 500 * i for i in range(1, 160)]  # a health event every 500 ms
        out, nid, held = [], 1, []
        for b in made:
            if case == "fixed":
                old = [h for h in held if b - h[1] > 60000]
            else:  # main: the forward jump expires everything queued at once
                old = list(held) if b == u0 + 3500 else []
            if old:
                held = [h for h in held if h not in old]
                d = {"reason": "expired", "count": len(old), "first_id": old[0][0], "last_id": old[-1][0],
                     "from": fmt_ms(wall(old[0][1])), "to": fmt_ms(wall(old[-1][1]))}
                out.append((nid, b, "dropped", d))
                nid += 1
            held.append((nid, b))
            out.append((nid, b, "health", {"n": nid}))
            nid += 1
        dropped_ids = {i for i, _, k, d in out if k == "dropped" for i in range(d["first_id"], d["last_id"] + 1)}
        lines = [f"@@HIL mark {n} {w} {u}" for n, (w, u) in marks.items()] + ["@@HIL daemon-exit rc=0", "@@HIL-BEGIN published"]
        for i, b, kind, data in out:
            if i in dropped_ids:
                continue
            lines.append(f"luciole/hil/x/events/{kind} " + ev(i, wall(b), kind, data))
        lines.append("@@HIL-END published")
        d = tempfile.mkdtemp(prefix="faults-selftest-")
        with open(os.path.join(d, "boot.log"), "w") as f:
            f.write("\n".join(lines) + "\n")
        report = Report()
        check_clock(argparse.Namespace(dir=d, retention_s=60), report)
        return report.failed

    status = 0
    cases = [("power clean", lambda: run("clean"), False), ("power lost", lambda: run("lost"), True),
             ("power rewritten", lambda: run("rewritten"), True), ("power window", lambda: run("window"), True),
             ("clock fixed", lambda: run_clock("fixed"), False), ("clock main", lambda: run_clock("main"), True)]
    for case, fn, should_fail in cases:
        failed = fn()
        good = bool(failed) == should_fail
        status |= not good
        print(("ok: " if good else "FAIL: ") + f"self-test {case}: " + ("; ".join(failed) if failed else "passes"))
    return status


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--flush-ms", type=int, default=50)
    parser.add_argument("--health-ms", type=int, default=100)
    parser.add_argument("--retention-s", type=int, default=60)
    parser.add_argument("--fsync-allowance-ms", type=int, default=1000,
                        help="longest fsync (plus scheduling) allowed under TCG on top of flush_ms")
    parser.add_argument("scenario", nargs="?", choices=["power", "eio", "clock"])
    parser.add_argument("--cycles", type=int, default=4)
    parser.add_argument("dir", nargs="?")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.scenario or not args.dir:
        parser.error("scenario and DIR are required")
    report = Report()
    summary = {"power": check_power, "eio": check_eio, "clock": check_clock}[args.scenario](args, report)
    return report.print(summary)


if __name__ == "__main__":
    sys.exit(main())
