#!/bin/sh
# /init of the HIL initramfs (busybox sh). Loads vivid, runs luciole against /dev/video0 and
# prints everything the host needs between markers on the serial console:
#   @@HIL key value                      single facts
#   @@HIL-BEGIN name [b64] ... @@HIL-END name   blocks (b64: base64 of a binary file)
# It always ends with `poweroff -f`.
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/sbin:/usr/sbin
. /etc/hil.env

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

# Guest CPU ticks (user, system, idle) and page faults, to explain slow captures.
cpu_mark() { set -- $(head -n 1 /proc/stat); CPU_MARK="$2 $4 $5 $(awk '/^pgfault /{print $2}' /proc/vmstat)"; }
cpu_since() { # prints usr=.. sys=.. idle=.. pgfault=.. since the last cpu_mark
    set -- $CPU_MARK $(head -n 1 /proc/stat | cut -d' ' -f3-) $(awk '/^pgfault /{print $2}' /proc/vmstat)
    echo "usr=$(($5 - $1)) sys=$(($7 - $2)) idle=$(($8 - $3)) pgfault=$((${15} - $4))"
}
uptime_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
fact() { echo "@@HIL $*"; }
begin() { echo "@@HIL-BEGIN $*"; }
end() { echo "@@HIL-END $1"; }
emit_text() { # name file
    begin "$1"
    [ -f "$2" ] && cat "$2"
    echo
    end "$1"
}
emit_b64() { # name file
    begin "$1" b64
    [ -f "$2" ] && base64 "$2"
    end "$1"
}
finish() {
    echo 1 >/proc/sys/kernel/printk
    begin dmesg
    dmesg | tail -n 80
    end dmesg
    fact done "$(uptime_ms)"
    sync
    poweroff -f
    sleep 5
}
trap finish EXIT

fact boot "$(uptime_ms)" "$(uname -r)" "$(uname -m)" "cpus=$(grep -c ^processor /proc/cpuinfo)"

# ------------------------------------------------------------------ modules
MODDIR=/lib/modules/hil
VIVID_ARGS="n_devs=1 node_types=0x1"
while read -r m; do
    [ "$m" = vivid ] && continue
    insmod "$MODDIR/$m.ko" || fact insmod-failed "$m"
done <"$MODDIR/order"
mount -t configfs configfs /sys/kernel/config || fact mount-failed configfs

wait_video() { # wait up to $1 tenths of a second for /dev/video0
    i=0
    while [ ! -c /dev/video0 ] && [ "$i" -lt "$1" ]; do sleep 0.1; i=$((i + 1)); done
    [ -c /dev/video0 ]
}

if insmod "$MODDIR/vivid.ko" $VIVID_ARGS && wait_video 100; then
    fact video0 ok "$(cat /sys/class/video4linux/video0/name)"
else
    fact video0 missing
    exit 1
fi

# The platform device and its driver binding, for the reconnect run.
VIVID_DEV=$(ls /sys/bus/platform/drivers/vivid/ 2>/dev/null | grep '^vivid\.' | head -n 1)
fact vivid-platform-device "${VIVID_DEV:-none}" "$(ls /sys/bus/platform/drivers/vivid/ 2>/dev/null | tr '\n' ' ')"
fact video0-device "$(readlink -f /sys/class/video4linux/video0/device)"

# Make the device disappear (unbind + rmmod, retried while a process still holds it open) and
# reappear (insmod again). Facts: unbind result, rmmod attempts and timing, video0 back.
reconnect_cycle() {
    t_unbind=$(uptime_ms)
    if echo "$VIVID_DEV" >/sys/bus/platform/drivers/vivid/unbind; then
        fact unbind ok "$t_unbind" "$(uptime_ms)"
    else
        fact unbind failed "$t_unbind" "$(uptime_ms)"
    fi
    fact video0-after-unbind "$([ -e /dev/video0 ] && echo present || echo gone)"
    n=0
    until rmmod vivid 2>/dev/null; do
        n=$((n + 1))
        if [ "$n" -ge 200 ]; then break; fi
        sleep 0.05
    done
    t_rmmod=$(uptime_ms)
    if grep -q '^vivid ' /proc/modules; then
        fact rmmod failed "attempts=$((n + 1))" "$t_rmmod"
    else
        fact rmmod ok "attempts=$((n + 1))" "$t_rmmod" "after_ms=$((t_rmmod - t_unbind))"
    fi
    if insmod "$MODDIR/vivid.ko" $VIVID_ARGS; then
        fact insmod ok "$(uptime_ms)"
    else
        fact insmod failed "$(uptime_ms)"
    fi
    if wait_video 100; then fact video0-back "$(uptime_ms)"; else fact video0-back never; fi
    VIVID_DEV=$(ls /sys/bus/platform/drivers/vivid/ 2>/dev/null | grep '^vivid\.' | head -n 1)
}

# ------------------------------------------------------------------ probe mode (no luciole)
if [ "$HIL_MODE" = probe ]; then
    ls -l /dev/video* /sys/class/video4linux/ /sys/bus/platform/drivers/vivid/
    cat /proc/modules
    # vivid supports read(): one read returns one frame in the default format.
    t=$(uptime_ms)
    dd if=/dev/video0 of=/tmp/frame bs=16M count=1 2>/tmp/dd.err
    fact frame-read "$(wc -c </tmp/frame)" "ms=$(($(uptime_ms) - t))"
    gzip -c /tmp/frame >/tmp/frame.gz
    emit_b64 frame.gz /tmp/frame.gz
    # reader holding the device open while it disappears
    cat /dev/video0 >/dev/null 2>/tmp/cat.err &
    reader=$!
    sleep 1
    echo 1 >/proc/sys/kernel/printk
    reconnect_cycle
    sleep 0.5
    if kill -0 "$reader" 2>/dev/null; then fact reader still-running; kill "$reader"; else
        wait "$reader"; fact reader exited "rc=$?" "$(cat /tmp/cat.err)"
    fi
    # if rmmod failed because the reader kept it pinned, retry now that it is gone
    if grep -q '^vivid ' /proc/modules && [ ! -e /dev/video0 ]; then
        rmmod vivid && fact rmmod-after-reader-killed ok
        insmod "$MODDIR/vivid.ko" $VIVID_ARGS
    fi
    wait_video 100 && fact video0-final present
    dd if=/dev/video0 of=/tmp/frame2 bs=16M count=1 2>/dev/null
    fact frame-read-after-reconnect "$(wc -c </tmp/frame2)"
    exit 0
fi

if [ "${HIL_CAMERA:-1}" = 0 ]; then
    fact camera skipped
    echo 1 >/proc/sys/kernel/printk
else
# ------------------------------------------------------------------ run 1: capture per format
# printk quiet from here: kernel messages must not cut through the blocks below.
echo 1 >/proc/sys/kernel/printk
# Warm-up: under TCG the first run of a binary also pays for translating its code, which shows as
# dropped frames in whichever capture comes first. Not checked beyond being reported.
mkdir -p /tmp/warmup
t=$(uptime_ms)
rc=0
luciole --log-format json capture --config "/etc/luciole/hil/${HIL_FORMATS%% *}.toml" \
    --frames 10 --out /tmp/warmup >/tmp/warmup.stdout 2>/tmp/warmup.stderr || rc=$?
fact warmup "rc=$rc" "ms=$(($(uptime_ms) - t))" "$(tail -n 1 /tmp/warmup.stdout)"
rm -rf /tmp/warmup
for fmt in $HIL_FORMATS; do
    out=/tmp/run1-$fmt
    mkdir -p "$out/frames"
    t=$(uptime_ms)
    rc=0
    cpu_mark
    luciole --log-format json capture --config "/etc/luciole/hil/$fmt.toml" \
        --frames "$HIL_FRAMES" --out "$out/frames" >"$out/stdout" 2>"$out/stderr" || rc=$?
    fact run1 "$fmt" "rc=$rc" "ms=$(($(uptime_ms) - t))" $(cpu_since)
    emit_text "run1-$fmt-stdout" "$out/stdout"
    emit_text "run1-$fmt-frames.jsonl" "$out/frames/frames.jsonl"
    tail -n 30 "$out/stderr" >"$out/stderr.tail"
    emit_text "run1-$fmt-stderr" "$out/stderr.tail"
    png=$(ls "$out/frames"/frame-*.png 2>/dev/null | sed -n 31p)
    [ -n "$png" ] || png=$(ls "$out/frames"/frame-*.png 2>/dev/null | tail -n 1)
    fact run1-png "$fmt" "${png:-none}" "pngs=$(ls "$out/frames"/frame-*.png 2>/dev/null | wc -l)"
    [ -n "$png" ] && emit_b64 "run1-$fmt-png" "$png"
    rm -rf "$out/frames"
done

# ------------------------------------------------------------------ run 2: reconnect
out=/tmp/run2
mkdir -p "$out/frames"
t0=$(uptime_ms)
fact run2-start "$t0"
luciole --log-format json capture --config "/etc/luciole/hil/${HIL_FORMATS%% *}.toml" \
    --frames "$HIL_RECONNECT_FRAMES" --out "$out/frames" >"$out/stdout" 2>"$out/stderr" &
pid=$!
sleep 2
if kill -0 "$pid" 2>/dev/null; then fact run2-capturing-at-unbind yes; else fact run2-capturing-at-unbind no; fi
reconnect_cycle
rc=0
# bounded wait for the capture (the VM timeout is the last resort)
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 1200 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 "$pid" 2>/dev/null; then fact run2-killed "after 120 s"; kill "$pid"; fi
wait "$pid" || rc=$?
fact run2 "rc=$rc" "ms=$(($(uptime_ms) - t0))"
emit_text run2-stdout "$out/stdout"
emit_text run2-frames.jsonl "$out/frames/frames.jsonl"
tail -n 60 "$out/stderr" >"$out/stderr.tail"
emit_text run2-stderr "$out/stderr.tail"
fi # camera

# ------------------------------------------------------------------ lighting (gpio-sim, pwm-sim)
. /etc/hil/light.sh
exit 0
