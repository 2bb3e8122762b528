#!/bin/sh
# /init of the fault-injection initramfs (tests/hil/faults; busybox sh). The scenario comes from
# the kernel command line (FAULT=power|final|eio|clock, CYCLE=n). Everything the host checks is
# printed on the serial console:
#   @@HIL key value ...                          single facts
#   @@HIL-BEGIN name ... @@HIL-END name          blocks
#   @@T <wall ms> <boot ms>                      clock ticks (power scenario)
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/sbin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

uptime_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }
# wall clock in ms (busybox date has no %N; adjtimex reads the kernel's time in us)
# (printed as two integers: busybox awk's %d is 32-bit)
wall_ms() { adjtimex | awk '/tv_sec/ { s = $2 } /tv_usec/ { u = $2 } END { printf "%d%03d\n", s, int(u / 1000) }'; }
fact() { echo "@@HIL $*"; }
emit() { # name file
    echo "@@HIL-BEGIN $1"
    [ -f "$2" ] && cat "$2"
    echo "@@HIL-END $1"
}
finish() {
    echo 1 >/proc/sys/kernel/printk
    echo "@@HIL-BEGIN dmesg"
    dmesg | tail -n 60
    echo "@@HIL-END dmesg"
    fact done "$(uptime_ms)"
    sync
    poweroff -f
    sleep 5
}
trap finish EXIT

fact boot "$(uptime_ms)" "$(uname -r)" "fault=$FAULT" "cycle=$CYCLE"
while read -r m; do
    insmod "/lib/modules/faults/$m.ko" 2>/dev/null || fact insmod-failed "$m"
done </lib/modules/faults/order
echo 1 >/proc/sys/kernel/printk

# wait_for TENTHS CMD...: polls CMD every 0.1 s for up to TENTHS tenths of a second
wait_for() {
    n=$1
    shift
    i=0
    until "$@"; do
        i=$((i + 1))
        [ "$i" -ge "$n" ] && return 1
        sleep 0.1
    done
}

mount_data() {
    wait_for 100 test -b /dev/vda || { fact disk missing; exit 1; }
    if mount -t ext4 /dev/vda /data; then
        fact mounted "$(uptime_ms)"
    else
        fact mount-failed
        exit 1
    fi
}

# dump NAME CONFIG: what the outbox holds (`luciole events --all`), with its exit status
dump() {
    rc=0
    luciole events --config "$2" --all >/tmp/events.out 2>/tmp/events.err || rc=$?
    fact events "$1" "rc=$rc"
    emit "events-$1" /tmp/events.out
    emit "events-$1-stderr" /tmp/events.err
}

daemon_up() { grep -q 'outbox open' /tmp/daemon.log 2>/dev/null; }

case "$FAULT" in
power | final)
    mount_data
    if [ -d /data/outbox ]; then
        dump "before-$CYCLE" /etc/hil/power.toml
    else
        fact events "before-$CYCLE" none
    fi
    [ "$FAULT" = final ] && { umount /data; exit 0; }
    luciole --log-format json run --config /etc/hil/power.toml 2>/tmp/daemon.log &
    if ! wait_for 600 daemon_up; then
        fact daemon-failed
        emit daemon-log /tmp/daemon.log
        exit 1
    fi
    fact daemon-up "$(wall_ms)" "$(uptime_ms)"
    # Ticks until the host cuts the power: the last one seen bounds the moment of the cut.
    while :; do
        echo "@@T $(wall_ms) $(uptime_ms)"
        sleep 0.05
    done
    ;;
eio)
    mount_data
    set -- $(cat /sys/block/vda/stat)
    fact disk-stat-mounted "reads=$1" "writes=$5"
    # Supervised like systemd's Restart=always, RestartSec=2: a daemon that exits is restarted.
    (
        n=0
        while [ ! -e /tmp/stop ]; do
            n=$((n + 1))
            luciole --log-format json run --config /etc/hil/eio.toml 2>>/tmp/daemon.log &
            echo $! >/tmp/daemon.pid
            rc=0
            wait $! || rc=$?
            fact daemon-exit "run=$n" "rc=$rc" "$(wall_ms)" "$(uptime_ms)"
            [ -e /tmp/stop ] && break
            sleep 2
        done
    ) &
    super=$!
    wait_for 600 daemon_up || { fact daemon-failed; emit daemon-log /tmp/daemon.log; exit 1; }
    fact daemon-up "$(wall_ms)" "$(uptime_ms)"
    sleep 4
    set -- $(cat /sys/block/vda/stat)
    fact disk-stat-before-arm "reads=$1" "writes=$5"
    fact io-errors-before-arm "$(dmesg | grep -c 'I/O error')"
    # Arm blkdebug: it counts the disk's read requests (O_DIRECT reads bypass the page cache).
    fact arm "$(wall_ms)" "$(uptime_ms)"
    dd if=/dev/vda of=/dev/null bs=4096 count="$EIO_ARM_READS" iflag=direct 2>/dev/null
    fact armed "$(wall_ms)" "$(uptime_ms)"
    if wait_for 300 sh -c "dmesg | grep -q 'I/O error'"; then
        fact first-io-error "$(wall_ms)" "$(uptime_ms)"
    else
        fact first-io-error none
    fi
    # What happens next: a recovered daemon keeps storing events.
    sleep 20
    fact observed "$(wall_ms)" "$(uptime_ms)"
    touch /tmp/stop
    pid=$(cat /tmp/daemon.pid)
    kill -TERM "$pid" 2>/dev/null
    wait_for 300 sh -c "! kill -0 $pid 2>/dev/null" || { fact daemon-stop-timeout; kill -KILL "$pid"; }
    wait "$super" 2>/dev/null
    fact io-errors "$(dmesg | grep -c 'I/O error')"
    fact storage-error-lines "$(grep -c 'outbox storage failed\|event not stored' /tmp/daemon.log)"
    # Use up whatever is left of the error window (direct writes of a scratch file), so that
    # what follows reads the outbox as the daemon left it.
    # One request per dd: dd stops at its first failed write.
    for i in $(seq 1 $((EIO_FAILED_WRITES + 2))); do
        dd if=/dev/zero of=/data/drain bs=4096 count=1 seek="$i" oflag=direct conv=notrunc 2>/dev/null
    done
    rm -f /data/drain
    dump after /etc/hil/eio.toml
    grep -v '"level":"DEBUG"' /tmp/daemon.log | tail -n 120 >/tmp/daemon.tail
    emit daemon-log /tmp/daemon.tail
    dmesg | grep 'I/O error\|EXT4' | head -n 20 >/tmp/io.txt
    emit io-errors /tmp/io.txt
    umount /data
    ;;
clock)
    ifconfig lo 127.0.0.1 up
    mark() { fact mark "$1" "$(wall_ms)" "$(uptime_ms)"; }
    luciole --log-format json run --config /etc/hil/clock.toml 2>/tmp/daemon.log &
    pid=$!
    wait_for 600 daemon_up || { fact daemon-failed; emit daemon-log /tmp/daemon.log; exit 1; }
    mark start
    sleep 3
    # forwards by three days
    mark before-forward
    date -s "@$(($(date +%s) + 3 * 86400))" >/dev/null
    mark after-forward
    sleep 4
    # backwards by five days: two days behind the true time
    mark before-back
    date -s "@$(($(date +%s) - 5 * 86400))" >/dev/null
    mark after-back
    # The broker stays unreachable for the retention time plus 10 s of the boot clock.
    until_ms=$(($(uptime_ms) + RETENTION_S * 1000 + 10000))
    while [ "$(uptime_ms)" -lt "$until_ms" ]; do sleep 1; done
    mosquitto -c /etc/hil/mosquitto.conf 2>/tmp/mosquitto.log &
    wait_for 100 sh -c "netstat -ltn | grep -q '127.0.0.1:1883'" || fact broker-failed
    mosquitto_sub -h 127.0.0.1 -p 1883 -q 1 -v -t 'luciole/#' >/tmp/sub.txt 2>/tmp/sub.err &
    sub=$!
    wait_for 100 grep -q 'New client connected' /tmp/mosquitto.log || fact subscriber-not-seen
    sleep 0.5
    # Now the daemon can resolve the broker's name.
    echo "127.0.0.1 broker.hil" >>/etc/hosts
    mark broker-up
    # Let the backlog go: until a health event says the outbox holds at most one event (60 s at most).
    i=0
    while [ "$i" -lt 12 ]; do
        timeout 5 mosquitto_sub -h 127.0.0.1 -p 1883 -C 1 -t 'luciole/+/+/events/health' >/tmp/health.txt 2>/dev/null
        grep -q '"outbox_depth":[01],' /tmp/health.txt && break
        i=$((i + 1))
    done
    mark drained
    kill -TERM "$pid"
    wait_for 300 sh -c "! kill -0 $pid 2>/dev/null" || { fact daemon-stop-timeout; kill -KILL "$pid"; }
    rc=0
    wait "$pid" || rc=$?
    fact daemon-exit "rc=$rc"
    # mosquitto_sub writes through stdio: it flushes when it ends
    kill -TERM "$sub"
    wait "$sub"
    emit published /tmp/sub.txt
    dump after /etc/hil/clock.toml
    grep -v '"level":"DEBUG"' /tmp/daemon.log | tail -n 60 >/tmp/daemon.tail
    emit daemon-log /tmp/daemon.tail
    tail -n 20 /tmp/mosquitto.log >/tmp/mosquitto.tail
    emit broker-log /tmp/mosquitto.tail
    ;;
*)
    fact unknown-fault "$FAULT"
    ;;
esac
exit 0
