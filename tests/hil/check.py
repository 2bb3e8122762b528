#!/usr/bin/env python3
"""Host-side checks of one HIL boot (standard library only).

Reads the guest's serial log, extracts the blocks that tests/hil/init.sh printed between
@@HIL-BEGIN/@@HIL-END markers into the output directory, and checks them. Prints one
`FAIL: <reason>` line per failed assertion and `ok: ...` / `info: ...` lines otherwise; exits 1 if
anything failed, 0 if all held.

    check.py --arch x86_64 --out DIR [--formats "YUYV NV12"] [--frames 60] [--probe] serial.log
    check.py --png FILE [--y 300]     decode a PNG and print the colour-bar samples (debugging)
"""
import argparse
import base64
import gzip
import json
import os
import re
import struct
import sys
import zlib

# vivid's default test pattern is "75% Colorbar": eight vertical bars of equal width, in this
# order. Levels measured from vivid (Debian 6.1 kernel) and converted to RGB by BT.601:
# 75 % of full scale is 191. (In YUYV vivid sends Y/Cb/Cr = 180/128/128, 162/44/142, 131/156/44,
# 112/72/58, 84/184/198, 65/100/212, 35/212/114, 16/128/128, limited range.)
BARS = [
    ("white75", (191, 191, 191)),
    ("yellow", (191, 191, 0)),
    ("cyan", (0, 191, 191)),
    ("green", (0, 191, 0)),
    ("magenta", (191, 0, 191)),
    ("red", (191, 0, 0)),
    ("blue", (0, 0, 191)),
    ("black", (0, 0, 0)),
]
TOLERANCE = 16
GREY_TOLERANCE = 6  # a limited-range misreading is off by 9..16 on most bars
SAMPLE_Y = 300  # below vivid's on-screen text at 640x480
MIN_FRAMES = 50
MIN_FPS = 20.0
SLACK_US = 50_000


# ------------------------------------------------------------------------------------ PNG
class PngError(Exception):
    pass


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    if pb <= pc:
        return b
    return c


def decode_png(data):
    """Returns (width, height, colour_type, bit_depth, channels, rows); rows are bytearrays of
    samples (8-bit only: bit depth 16 is reduced to its high byte)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise PngError("not a PNG (bad signature)")
    pos, idat, ihdr = 8, [], None
    while pos < len(data):
        if pos + 8 > len(data):
            raise PngError("truncated chunk header")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise PngError("truncated chunk %r" % ctype)
        crc, = struct.unpack_from(">I", data, pos + 8 + length)
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise PngError("CRC mismatch in chunk %r" % ctype)
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IEND":
            break
        pos += 12 + length
    if ihdr is None:
        raise PngError("no IHDR")
    width, height, depth, ctype, comp, filt, interlace = ihdr
    if interlace:
        raise PngError("interlaced PNG not supported by this checker")
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(ctype)
    if channels is None or depth not in (8, 16) or ctype == 3:
        raise PngError("unsupported colour type %d / bit depth %d" % (ctype, depth))
    bpp = channels * depth // 8
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != height * (stride + 1):
        raise PngError("image data is %d bytes, expected %d" % (len(raw), height * (stride + 1)))
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ftype == 0:
            pass
        elif ftype == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif ftype == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 0xFF
        elif ftype == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif ftype == 4:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                upleft = prev[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + paeth(left, prev[i], upleft)) & 0xFF
        else:
            raise PngError("bad filter type %d in row %d" % (ftype, y))
        rows.append(line)
        prev = line
    if depth == 16:
        rows = [bytearray(r[0::2]) for r in rows]
    return width, height, ctype, depth, channels, rows


def rgb_at(png, x, y, r=2):
    """Mean RGB of a (2r+1)^2 square around (x, y)."""
    width, height, ctype, depth, ch, rows = png
    acc = [0, 0, 0]
    n = 0
    for yy in range(y - r, y + r + 1):
        for xx in range(x - r, x + r + 1):
            px = rows[yy][xx * ch:(xx + 1) * ch]
            rgb = (px[0], px[0], px[0]) if ch in (1, 2) else (px[0], px[1], px[2])
            for i in range(3):
                acc[i] += rgb[i]
            n += 1
    return tuple(round(a / n) for a in acc)


def bar_samples(png, y=SAMPLE_Y):
    width = png[0]
    bw = width // len(BARS)
    return [rgb_at(png, i * bw + bw // 2, y) for i in range(len(BARS))]


def luma(rgb):
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


# ------------------------------------------------------------------------------------ log
class Log:
    def __init__(self, path):
        text = open(path, "rb").read().decode("utf-8", "replace").replace("\r", "")
        self.facts = []  # list of word lists
        self.blocks = {}  # name -> (is_b64, [lines])
        cur = None
        for line in text.split("\n"):
            # markers can follow garbage on the same line (firmware escapes, kernel messages)
            k = line.find("@@HIL")
            tag = line[k:] if k >= 0 else None
            if tag is not None and tag.startswith("@@HIL-BEGIN "):
                words = tag.split()
                cur = words[1]
                self.blocks[cur] = (len(words) > 2 and words[2] == "b64", [])
            elif tag is not None and tag.startswith("@@HIL-END "):
                cur = None
            elif cur is not None:
                self.blocks[cur][1].append(line)
            elif tag is not None and tag.startswith("@@HIL "):
                self.facts.append(tag.split()[1:])

    def fact(self, *prefix):
        """Last fact whose first words equal prefix, or None."""
        found = None
        for f in self.facts:
            if f[:len(prefix)] == list(prefix):
                found = f
        return found

    def kv(self, fact, key):
        if not fact:
            return None
        for w in fact:
            if w.startswith(key + "="):
                return w[len(key) + 1:]
        return None

    def text(self, name):
        b = self.blocks.get(name)
        if b is None:
            return None
        return "\n".join(b[1]).strip("\n")

    def binary(self, name):
        b = self.blocks.get(name)
        if b is None or not b[0]:
            return None
        return base64.b64decode("".join(l.strip() for l in b[1]))


class Checker:
    def __init__(self):
        self.failures = []

    def fail(self, msg):
        self.failures.append(msg)
        print("FAIL: " + msg)

    def ok(self, msg):
        print("ok: " + msg)

    def check(self, cond, good, bad):
        if cond:
            self.ok(good)
        else:
            self.fail(bad)
        return cond


def parse_summary(text):
    """The single JSON summary line of luciole's stdout (the last line that is a JSON object)."""
    if not text:
        return None
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def parse_jsonl(text):
    out, bad = [], 0
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            bad += 1
    return out, bad


def num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def strictly_increasing(values):
    return all(b > a for a, b in zip(values, values[1:]))


def check_frames_common(c, tag, frames, fmt):
    """Per-frame fields common to both runs. Returns True if the records are usable."""
    missing = [k for k in ("index", "sequence", "timestamp_us", "width", "height", "format", "hash", "stream")
               if frames and any(k not in f for f in frames)]
    if missing:
        c.fail("%s: frames.jsonl records lack field(s) %s (first record: %s)" % (tag, ",".join(missing), json.dumps(frames[0])))
        return False
    c.check([f["index"] for f in frames] == list(range(len(frames))),
            "%s: index runs 0..%d" % (tag, len(frames) - 1),
            "%s: index is not 0,1,2,... (%s)" % (tag, [f["index"] for f in frames][:10]))
    sizes = {(f["width"], f["height"]) for f in frames}
    c.check(sizes == {(640, 480)}, "%s: every frame 640x480" % tag, "%s: frame sizes %s, expected 640x480" % (tag, sorted(sizes)))
    formats = {f["format"] for f in frames}
    c.check(formats == {fmt}, "%s: every frame in %s" % (tag, fmt), "%s: frame formats %s, expected %s" % (tag, sorted(formats), fmt))
    badhash = [f["hash"] for f in frames if not (isinstance(f["hash"], str) and re.fullmatch(r"[0-9a-f]{16}", f["hash"]))]
    c.check(not badhash, "%s: hashes are 16 hex digits" % tag, "%s: malformed hash(es), e.g. %r" % (tag, badhash[:2]))
    return True


def measured_fps(frames):
    if len(frames) < 2:
        return 0.0
    span = (frames[-1]["timestamp_us"] - frames[0]["timestamp_us"]) / 1e6
    return (len(frames) - 1) / span if span > 0 else float("inf")


def check_run1(c, log, out, fmt, want_frames):
    tag = "run1 %s" % fmt
    run = log.fact("run1", fmt)
    if run is None:
        c.fail("%s: the guest never ran this capture (no 'run1 %s' fact)" % (tag, fmt))
        return
    stderr = log.text("run1-%s-stderr" % fmt) or ""
    rc = log.kv(run, "rc")
    if not c.check(rc == "0", "%s: luciole exit 0 (%s ms)" % (tag, log.kv(run, "ms")),
                   "%s: luciole exited %s; stderr tail: %s" % (tag, rc, " | ".join(stderr.splitlines()[-3:]))):
        pass
    summary = parse_summary(log.text("run1-%s-stdout" % fmt))
    if summary is None:
        c.fail("%s: no JSON summary line on stdout (stdout: %r)" % (tag, (log.text("run1-%s-stdout" % fmt) or "")[:200]))
        summary = {}
    else:
        print("info: %s summary %s" % (tag, json.dumps(summary)))
        for k in ("frames", "format", "width", "height", "fps_requested", "fps_negotiated", "fps_measured", "dropped", "reconnects", "outage_ms"):
            if k not in summary:
                c.fail("%s: summary lacks field %r" % (tag, k))
        c.check(num(summary.get("frames")) is not None and summary["frames"] >= min(MIN_FRAMES, want_frames),
                "%s: summary frames %s (asked %d)" % (tag, summary.get("frames"), want_frames),
                "%s: summary frames %s < %d" % (tag, summary.get("frames"), min(MIN_FRAMES, want_frames)))
        c.check(summary.get("format") == fmt, "%s: summary format %s" % (tag, fmt),
                "%s: summary format %r, expected %s" % (tag, summary.get("format"), fmt))
        c.check((summary.get("width"), summary.get("height")) == (640, 480), "%s: summary 640x480" % tag,
                "%s: summary size %sx%s" % (tag, summary.get("width"), summary.get("height")))
        fn = num(summary.get("fps_negotiated"))
        c.check(fn is not None and abs(fn - 25.0) < 0.01, "%s: fps_negotiated 25" % tag,
                "%s: fps_negotiated %r, expected 25" % (tag, summary.get("fps_negotiated")))
        fr = num(summary.get("fps_requested"))
        c.check(fr is not None and abs(fr - 25.0) < 0.01, "%s: fps_requested 25" % tag,
                "%s: fps_requested %r, expected 25" % (tag, summary.get("fps_requested")))
        c.check(summary.get("reconnects") == 0, "%s: no reconnect" % tag,
                "%s: reconnects %r in a plain capture" % (tag, summary.get("reconnects")))

    text = log.text("run1-%s-frames.jsonl" % fmt)
    if text:
        open(os.path.join(out, "run1-%s-frames.jsonl" % fmt), "w").write(text + "\n")
    frames, bad = parse_jsonl(text)
    if bad:
        c.fail("%s: %d frames.jsonl line(s) are not JSON" % (tag, bad))
    need = min(MIN_FRAMES, want_frames)
    if not c.check(len(frames) >= need, "%s: %d frame records" % (tag, len(frames)),
                   "%s: %d frame records in frames.jsonl, need >= %d" % (tag, len(frames), need)):
        if not frames:
            return
    if num(summary.get("frames")) is not None and summary["frames"] != len(frames):
        c.fail("%s: summary says %s frames, frames.jsonl has %d" % (tag, summary["frames"], len(frames)))
    if not check_frames_common(c, tag, frames, fmt):
        return
    seqs = [f["sequence"] for f in frames]
    gaps = sum(b - a - 1 for a, b in zip(seqs, seqs[1:]) if b > a + 1)
    c.check(strictly_increasing(seqs), "%s: sequence strictly increasing %d..%d (%d skipped)" % (tag, seqs[0], seqs[-1], gaps),
            "%s: sequence not strictly increasing: %s" % (tag, seqs[:20]))
    ts = [f["timestamp_us"] for f in frames]
    c.check(strictly_increasing(ts), "%s: timestamps increasing" % tag, "%s: timestamps not increasing" % tag)
    streams = {f["stream"] for f in frames}
    c.check(streams == {0}, "%s: one stream" % tag, "%s: stream values %s in a plain capture" % (tag, sorted(streams)))
    distinct = len({f["hash"] for f in frames})
    c.check(distinct >= 0.8 * len(frames), "%s: %d/%d distinct frame hashes" % (tag, distinct, len(frames)),
            "%s: only %d/%d distinct frame hashes (frames should differ)" % (tag, distinct, len(frames)))
    fps = measured_fps(frames)
    cpu = " ".join(w for w in run if w.split("=")[0] in ("usr", "sys", "idle", "pgfault"))
    c.check(fps >= MIN_FPS, "%s: %.2f fps from kernel timestamps" % (tag, fps),
            "%s: %.2f fps from kernel timestamps, need >= %.0f (%d frames dropped; guest during the capture, 1/100 s: %s)"
            % (tag, fps, MIN_FPS, seqs[-1] - seqs[0] + 1 - len(seqs), cpu))

    png_fact = log.fact("run1-png", fmt)
    data = log.binary("run1-%s-png" % fmt)
    if not data:
        c.fail("%s: no PNG came back from the guest (%s)" % (tag, " ".join(png_fact or [])))
        return
    pngname = os.path.join(out, "run1-%s-%s" % (fmt, os.path.basename(png_fact[2]) if png_fact and len(png_fact) > 2 else "frame.png"))
    open(pngname, "wb").write(data)
    if png_fact:
        pngs = log.kv(png_fact, "pngs")
        if pngs is not None and summary.get("frames") is not None and int(pngs) != summary["frames"]:
            c.fail("%s: %s PNG files written for %s frames" % (tag, pngs, summary["frames"]))
    check_png(c, tag, data, fmt, pngname)


def check_png(c, tag, data, fmt, name):
    try:
        png = decode_png(data)
    except (PngError, zlib.error) as e:
        c.fail("%s: PNG %s does not decode: %s" % (tag, name, e))
        return
    width, height, ctype, depth = png[:4]
    c.check((width, height) == (640, 480), "%s: PNG 640x480" % tag, "%s: PNG is %dx%d" % (tag, width, height))
    c.check(ctype == 2 and depth == 8, "%s: PNG is RGB8" % tag,
            "%s: PNG colour type %d bit depth %d, expected RGB8 (type 2, depth 8)" % (tag, ctype, depth))
    if (width, height) != (640, 480):
        return
    got = bar_samples(png)
    print("info: %s bar colours at y=%d: %s" % (tag, SAMPLE_Y, got))
    if fmt == "GREY":
        check_grey_bars(c, tag, got, name)
        return
    bad = ["%s %s vs %s" % (n, rgb, want) for (n, want), rgb in zip(BARS, got)
           if any(abs(g - w) > TOLERANCE for g, w in zip(rgb, want))]
    c.check(not bad, "%s: 75%% colour bars correct at y=%d" % (tag, SAMPLE_Y),
            "%s: colour bars wrong at y=%d: %s (PNG %s)" % (tag, SAMPLE_Y, "; ".join(bad), name))


def grey_models():
    """Expected grey levels of the eight bars in a GREY capture.

    vivid draws GREY as the Rec.709 luma of the gamma-encoded bar colours, full range
    (white 75% = 191, blue = 14), while it reports quantization DEFAULT, which the V4L2 rules
    map to limited range for a luma format. luciole reads GREY with a default quantization as
    full range (as monochrome sensors deliver it), so the PNG must carry Y unchanged; a
    converter that expanded (Y-16)*255/219 would show white 204 and blue clipped to 0.
    """
    full = [0.2126 * r + 0.7152 * g + 0.0722 * b for _, (r, g, b) in BARS]
    return {"full-range luma (R=G=B=Y)": full}


def check_grey_bars(c, tag, got, name):
    tol = GREY_TOLERANCE
    grey = [rgb[0] for rgb in got]
    notgrey = [rgb for rgb in got if max(rgb) - min(rgb) > 2]
    if notgrey:
        c.fail("%s: GREY capture gave coloured pixels %s (PNG %s)" % (tag, notgrey, name))
    lum = grey
    ordered = all(b <= a for a, b in zip(lum, lum[1:])) and strictly_increasing(lum[:6][::-1])
    c.check(ordered, "%s: grey bars ordered by luma %s" % (tag, lum),
            "%s: grey bars not ordered by luma (white > yellow > cyan > green > magenta > red >= blue >= black): %s (PNG %s)" % (tag, lum, name))
    fits = [m for m, want in grey_models().items() if all(abs(g - w) <= tol for g, w in zip(grey, want))]
    models = "; ".join("%s %s" % (m, [round(w) for w in want]) for m, want in grey_models().items())
    c.check(bool(fits), "%s: grey levels %s match %s" % (tag, grey, fits[0] if fits else ""),
            "%s: grey levels %s do not match +-%d: %s (PNG %s)" % (tag, grey, tol, models, name))


def check_run2(c, log, out, fmt, want_frames):
    tag = "run2"
    for key in ("unbind", "rmmod", "insmod"):
        f = log.fact(key)
        c.check(f is not None and f[1] == "ok", "%s: %s" % (tag, " ".join(f)) if f else "",
                "%s: %s did not succeed (%s)" % (tag, key, " ".join(f) if f else "never ran"))
    f = log.fact("run2-capturing-at-unbind")
    c.check(f is not None and f[1] == "yes", "%s: capture was running when the camera went away" % tag,
            "%s: capture was not running when the camera was unbound (%s)" % (tag, " ".join(f or ["no fact"])))
    f = log.fact("video0-back")
    c.check(f is not None and f[1] != "never", "%s: /dev/video0 came back" % tag, "%s: /dev/video0 did not come back" % tag)
    run = log.fact("run2")
    stderr = log.text("run2-stderr") or ""
    if stderr:
        open(os.path.join(out, "run2-stderr.log"), "w").write(stderr + "\n")
    if run is None:
        c.fail("%s: no result from the reconnect capture" % tag)
        return
    rc = log.kv(run, "rc")
    c.check(rc == "0", "%s: luciole exit 0 (%s ms)" % (tag, log.kv(run, "ms")),
            "%s: luciole exited %s; stderr tail: %s" % (tag, rc, " | ".join(stderr.splitlines()[-3:])))
    summary = parse_summary(log.text("run2-stdout"))
    if summary is None:
        c.fail("%s: no JSON summary line on stdout (stdout: %r)" % (tag, (log.text("run2-stdout") or "")[:200]))
        summary = {}
    else:
        print("info: %s summary %s" % (tag, json.dumps(summary)))
        rec = num(summary.get("reconnects"))
        c.check(rec is not None and rec >= 1, "%s: summary reconnects %s" % (tag, rec),
                "%s: summary reconnects %r, expected >= 1" % (tag, summary.get("reconnects")))
        om = num(summary.get("outage_ms"))
        c.check(om is not None and om > 0, "%s: outage_ms %s" % (tag, om),
                "%s: outage_ms %r, expected > 0" % (tag, summary.get("outage_ms")))
        c.check(summary.get("frames") == want_frames, "%s: summary frames %s" % (tag, summary.get("frames")),
                "%s: summary frames %r, expected %d" % (tag, summary.get("frames"), want_frames))
    low = stderr.lower()
    c.check("camera lost" in low, "%s: 'camera lost' logged" % tag, "%s: no 'camera lost' line in stderr" % tag)
    c.check("camera reconnected" in low, "%s: 'camera reconnected' logged" % tag,
            "%s: no 'camera reconnected' line in stderr" % tag)
    if "camera lost" in low and "camera reconnected" in low:
        c.check(low.index("camera lost") < low.index("camera reconnected"), "%s: loss logged before reconnection" % tag,
                "%s: 'camera reconnected' logged before 'camera lost'" % tag)
    nonjson = [l for l in stderr.splitlines() if l.strip() and not l.strip().startswith("{")]
    if nonjson:
        c.fail("%s: stderr lines that are not JSON with --log-format json: %r" % (tag, nonjson[:2]))
    text = log.text("run2-frames.jsonl")
    if text:
        open(os.path.join(out, "run2-frames.jsonl"), "w").write(text + "\n")
    frames, bad = parse_jsonl(text)
    if bad:
        c.fail("%s: %d frames.jsonl line(s) are not JSON" % (tag, bad))
    if not frames:
        c.fail("%s: no frame records" % tag)
        return
    if not check_frames_common(c, tag, frames, fmt):
        return
    streams = [f["stream"] for f in frames]
    c.check(len(set(streams)) > 1, "%s: frames from streams %s" % (tag, sorted(set(streams))),
            "%s: all frames from stream(s) %s, expected more than one" % (tag, sorted(set(streams))))
    c.check(streams[0] == 0 and all(b in (a, a + 1) for a, b in zip(streams, streams[1:])),
            "%s: stream numbers start at 0 and step by 1" % tag,
            "%s: stream numbers do not go 0,1,2 in order: %s" % (tag, sorted(set(streams))))
    for s in sorted(set(streams)):
        seqs = [f["sequence"] for f in frames if f["stream"] == s]
        c.check(strictly_increasing(seqs), "%s: stream %s: %d frames, sequence %d..%d increasing" % (tag, s, len(seqs), seqs[0], seqs[-1]),
                "%s: stream %s sequence not strictly increasing: %s" % (tag, s, seqs[:20]))
    # Kernel timestamps are CLOCK_MONOTONIC; the guest's facts use /proc/uptime (the same clock in
    # a VM that never suspends, 10 ms resolution): stream 0 must end before the unbind and
    # stream 1 begin after the new vivid was inserted.
    unbind, insmod = log.fact("unbind"), log.fact("insmod")
    try:
        # unbind: start and end of the write to .../unbind; insmod: when it returned
        t_unbind, t_insmod = int(unbind[3]) * 1000, int(insmod[2]) * 1000
    except (TypeError, IndexError, ValueError):
        t_unbind = t_insmod = None
    if t_unbind is not None and len(set(streams)) > 1:
        last0 = max(f["timestamp_us"] for f in frames if f["stream"] == 0)
        first1 = min(f["timestamp_us"] for f in frames if f["stream"] == 1)
        c.check(last0 <= t_unbind + SLACK_US and first1 >= t_insmod - SLACK_US,
                "%s: stream 0 ends at %.2f s, before the unbind completed at %.2f s; stream 1 starts at %.2f s, after the insmod at %.2f s"
                % (tag, last0 / 1e6, t_unbind / 1e6, first1 / 1e6, t_insmod / 1e6),
                "%s: frame times do not fit the outage: stream 0 ends %.2f s (unbind %.2f s), stream 1 starts %.2f s (insmod %.2f s)"
                % (tag, last0 / 1e6, t_unbind / 1e6, first1 / 1e6, t_insmod / 1e6))


# ------------------------------------------------------------------------------------ lighting
LIGHT_STEPS = {
    "setup": "load gpio-sim and luciole-pwm-sim, create chip luciole-sim (line 3 lamp-relay, pull-up)",
    "selftest": "read-back paths with the kernel's own interfaces (pull on the line, pwm sysfs to sim_state)",
    "L1": "--level 30: relay 1, pwm0 1000000/300000 normal enabled",
    "L2": "SIGTERM: safe state (duty = period, enabled), exit 0, line released to its pull (1)",
    "L3": "--level 0: relay driven 0 against the pull-up, duty 0",
    "L4": "SIGKILL: relay back to its pull (1), pwm keeps the last applied state",
    "L5": "--safe: duty = period, enabled, exit 0",
    "L6": "polarity inversed, --level 30: sim_state shows inversed, period 1000000, duty per luciole",
    "L7": "relay chip no-such-chip: non-zero exit naming no-such-chip",
    "D1": "luciole run (vivid camera + lamp) at night with frames flowing: relay on, pwm0 at 30 %",
    "D2": "camera unbound: no frame for stale_s (2 s) -> pwm0 at the rated 100 % (fail-on)",
    "D3": "camera bound again: back to 30 %",
    "D4": "SIGTERM: exit 0, safe state (100 %)",
}


def pwm_fields(v):
    """'0,1000000,300000,normal,1' -> (period, duty, polarity, enabled) or None."""
    parts = (v or "").split(",")
    if len(parts) != 5 or not all(p.isdigit() for p in (parts[1], parts[2], parts[4])):
        return None
    return int(parts[1]), int(parts[2]), parts[3], parts[4] == "1"


def json_lines(text):
    out = []
    for line in (text or "").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def check_report(c, tag, obj, level, relay, duty, period=1_000_000, polarity="normal"):
    """One JSON line of `luciole light`."""
    if obj is None:
        c.fail("%s: no JSON line on stdout" % tag)
        return
    want = {"level_pct": level, "relay": relay, "duty_ns": duty, "period_ns": period, "polarity": polarity}
    bad = {k: obj.get(k) for k, v in want.items()
           if not (obj.get(k) == v or (isinstance(v, (int, float)) and num(obj.get(k)) is not None
                                       and abs(obj.get(k) - v) < 1e-6))}
    c.check(not bad, "%s: stdout %s" % (tag, json.dumps(obj, sort_keys=True)),
            "%s: stdout %s differs from %s in %s" % (tag, json.dumps(obj, sort_keys=True), json.dumps(want), sorted(bad)))


def check_light(c, log, out):
    for name in [b for b in log.blocks if b.startswith("light-")]:
        open(os.path.join(out, name + ".txt"), "w").write((log.text(name) or "") + "\n")
    facts = {}
    for step in LIGHT_STEPS:
        f = log.fact("light", step)
        facts[step] = f
        if f is None:
            c.fail("light %s (%s): step did not run" % (step, LIGHT_STEPS[step]))
            # later steps cannot be judged when setup or the self-test failed
            if step in ("setup",):
                return
            continue
        c.check(log.kv(f, "result") == "ok", "light %s: %s (%s)" % (step, LIGHT_STEPS[step], " ".join(f[2:])),
                "light %s (%s): %s" % (step, LIGHT_STEPS[step], " ".join(f[2:])))
    if log.fact("light", "done") is None:
        c.fail("light: the phase did not reach its end")

    kv = lambda step, key: log.kv(facts.get(step), key)
    # L1/L2: one run, two JSON lines (level, then safe state on SIGTERM)
    l1 = json_lines(log.text("light-L1-stdout"))
    check_report(c, "light L1", l1[0] if l1 else None, 30, "on", 300_000)
    dbg = kv("L1", "debugfs") or ""
    c.check("_out_" in dbg, "light L1: the kernel shows the relay line requested as an output: %s" % dbg,
            "light L1: relay line not held as an output by luciole (debugfs: %r)" % dbg)
    c.check(kv("L2", "rc") == "0", "light L2: exit 0 on SIGTERM", "light L2: exit status %s on SIGTERM" % kv("L2", "rc"))
    c.check(len(l1) == 2, "light L2: two JSON lines (level, safe state)",
            "light L2: %d JSON lines on stdout, expected 2 (level, safe state)" % len(l1))
    if len(l1) >= 2:
        check_report(c, "light L2", l1[1], 100, "on", 1_000_000)
    for step in ("L2", "L4"):
        dbg = kv(step, "debugfs") or ""
        c.check(dbg and "|" not in dbg, "light %s: the relay line is released after the exit (%s)" % (step, dbg),
                "light %s: the relay line is still requested after the exit (debugfs: %r)" % (step, dbg))
    # L3: level 0
    l3 = json_lines(log.text("light-L3-stdout"))
    check_report(c, "light L3", l3[0] if l3 else None, 0, "off", 0)
    # L4: after SIGKILL, record what the kernel kept
    p4 = pwm_fields(kv("L4", "pwm"))
    print("info: light L4: after SIGKILL the relay line reads %s (its pull), the PWM controller holds %s"
          % (kv("L4", "relay"), kv("L4", "pwm")))
    # L5: --safe
    l5 = json_lines(log.text("light-L5-stdout"))
    c.check(kv("L5", "rc") == "0", "light L5: --safe exits 0", "light L5: --safe exit status %s" % kv("L5", "rc"))
    check_report(c, "light L5", l5[0] if l5 else None, 100, "on", 1_000_000)
    # L6: inversed polarity; the duty cycle follows luciole's convention, reported in its JSON line
    l6 = json_lines(log.text("light-L6-stdout"))
    p6 = pwm_fields(kv("L6", "pwm"))
    if l6 and p6:
        check_report(c, "light L6", l6[0], 30, "on", l6[0].get("duty_ns"), polarity="inversed")
        c.check(p6[1] == l6[0].get("duty_ns") and p6[0] == 1_000_000 and p6[2] == "inversed" and p6[3],
                "light L6: controller holds period %d duty %d %s enabled, as luciole reported" % p6[:3],
                "light L6: controller holds %s, luciole reported %s" % (kv("L6", "pwm"), json.dumps(l6[0])))
        print("info: light L6: inversed polarity at 30 %%: duty_ns %s (duty = level x period: %s)"
              % (p6[1], "yes" if p6[1] == 300_000 else "no"))
    else:
        c.fail("light L6: no JSON line or no controller state (pwm=%s)" % kv("L6", "pwm"))
    c.check(kv("L6", "rc") == "0", "light L6: exit 0 on SIGTERM", "light L6: exit status %s on SIGTERM" % kv("L6", "rc"))
    # L7: bad chip
    err7 = log.text("light-L7-stderr") or ""
    c.check(kv("L7", "rc") not in (None, "0", "124") and "no-such-chip" in err7,
            "light L7: exit %s, stderr names no-such-chip: %s" % (kv("L7", "rc"), err7.strip().splitlines()[-1][:200] if err7.strip() else ""),
            "light L7: exit %s, stderr %r" % (kv("L7", "rc"), err7[-300:]))
    if p4 is None:
        c.fail("light L4: no controller state after SIGKILL (%s)" % kv("L4", "pwm"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch")
    ap.add_argument("--out", default=".")
    ap.add_argument("--formats", default="YUYV NV12 RGB3 GREY")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--reconnect-frames", type=int, default=120)
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--no-camera", action="store_true", help="the guest skipped the camera runs")
    ap.add_argument("--no-light", action="store_true", help="the guest skipped the lighting phase")
    ap.add_argument("--png")
    ap.add_argument("--y", type=int, default=SAMPLE_Y)
    ap.add_argument("log", nargs="?")
    a = ap.parse_args()

    if a.png:
        png = decode_png(open(a.png, "rb").read())
        print("%dx%d colour type %d depth %d" % png[:4])
        print(bar_samples(png, a.y))
        return 0

    log = Log(a.log)
    os.makedirs(a.out, exist_ok=True)
    for f in log.facts:
        print("guest: " + " ".join(f))
    c = Checker()
    boot = log.fact("boot")
    if boot is None:
        c.fail("the guest /init never started (no boot marker on the serial console)")
    if log.fact("done") is None:
        c.fail("the guest did not reach the end of /init (no done marker)")
    dm = log.text("dmesg")
    if dm:
        open(os.path.join(a.out, "dmesg.txt"), "w").write(dm + "\n")
    v = log.fact("video0")
    if not c.check(v is not None and v[1] == "ok", "vivid: /dev/video0 is %s" % (" ".join(v[2:]) if v else ""),
                   "vivid: /dev/video0 never appeared (%s)" % (" ".join(v or ["no fact"]))):
        return 1

    if a.probe:
        data = log.binary("frame.gz")
        if data:
            raw = gzip.decompress(data)
            open(os.path.join(a.out, "frame.raw"), "wb").write(raw)
            print("info: probe frame %d bytes in %s" % (len(raw), os.path.join(a.out, "frame.raw")))
        return 1 if c.failures else 0

    formats = a.formats.split()
    if not a.no_camera:
        for fmt in formats:
            check_run1(c, log, a.out, fmt, a.frames)
        check_run2(c, log, a.out, formats[0], a.reconnect_frames)
    if not a.no_light:
        check_light(c, log, a.out)
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
