# Lighting phase of the HIL guest (busybox sh, sourced by /init after the camera runs).
#
# Loads gpio-sim (the kernel's GPIO simulator, built out of tree) and luciole-pwm-sim (our
# simulated PWM controller), creates a simulated GPIO chip "luciole-sim" whose line 3 is named
# "lamp-relay" and pulled up (a released relay line reads 1 = lamp on, fail-on wiring), then drives
# them with `luciole light` and reads the state back through the simulators:
#   relay: /sys/bus/gpio/devices/<chip>/sim_gpio3/value (what the simulated pin carries)
#   dimmer: /sys/devices/platform/luciole-pwm-sim/sim_state (the controller's latched registers)
# Every step prints `@@HIL light <step> result=ok|fail ...`; check.py asserts them.
# Uses fact/begin/end/emit_text/uptime_ms from /init.

LIGHT_TIMEOUT=${HIL_LIGHT_TIMEOUT:-200} # tenths of a second per poll
SIMDIR=/lib/modules/hil/sim
PWMSIM=/sys/devices/platform/luciole-pwm-sim/sim_state
CFG=/etc/luciole/hil

light_fail() { fact light "$1" result=fail "$2"; }

# poll TENTHS CMD...: run CMD every 0.1 s until it succeeds, for at most TENTHS/10 s of guest
# time (a deadline, not a count: under TCG each check itself takes a while); status 1 on timeout.
poll() {
    _end=$(($(uptime_ms) + $1 * 100)); shift
    until "$@"; do
        [ "$(uptime_ms)" -ge "$_end" ] && return 1
        sleep 0.1
    done
}
relay() { cat "$GPIODEV/sim_gpio3/value" 2>/dev/null; }
pwm0() { sed -n '1{s/ /,/g;p}' "$PWMSIM" 2>/dev/null; } # "0,period,duty,polarity,enabled"
# until_state COND: poll COND (a shell expression) until it holds or the luciole run ($LPID) ended
until_state() { poll "$LIGHT_TIMEOUT" eval "$1 || ! alive \$LPID"; eval "$1"; }
relay_is() { [ "$(relay)" = "$1" ]; }
pwm0_is() { [ "$(pwm0)" = "0,$1" ]; }
both_are() { relay_is "$1" && pwm0_is "$2"; }
pwm0_matches() { case "$(pwm0)" in 0,$1) return 0 ;; esac; return 1; } # shell pattern
# the debugfs line of the relay (requested or not, consumer, direction, value)
relay_debug() { grep -E '^ *gpio-[0-9]+ +\(lamp-relay' /sys/kernel/debug/gpio 2>/dev/null | sed 's/  */ /g;s/^ //' | tr ' ' '_'; }
lines_of() { grep -c '^{' "$1" 2>/dev/null; }
emit_run() { # step: stdout and the stderr tail of a luciole light run
    emit_text "light-$1-stdout" "/tmp/light-$1.out"
    tail -n 20 "/tmp/light-$1.err" >"/tmp/light-$1.err.tail" 2>/dev/null
    emit_text "light-$1-stderr" "/tmp/light-$1.err.tail"
}
# start STEP ARGS...: luciole light in the background, PID in $LPID
start() {
    _s=$1; shift
    luciole --log-format json light "$@" >"/tmp/light-$_s.out" 2>"/tmp/light-$_s.err" &
    LPID=$!
}
# alive PID: running and not a zombie
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat"; }
yesno() { if "$@"; then echo yes; else echo no; fi; }
# stop PID SIGNAL: signal it, wait for it (SIGKILL after 30 s) and set $LRC
stop() {
    kill -"$2" "$1" 2>/dev/null
    (
        _i=0
        while alive "$1" && [ "$_i" -lt 300 ]; do sleep 0.1; _i=$((_i + 1)); done
        if alive "$1"; then kill -KILL "$1"; echo "@@HIL light-killed $1 after 30 s"; fi
    ) &
    _wd=$!
    LRC=0; wait "$1" || LRC=$?
    wait "$_wd"
}
# has_json STEP: the run's stdout has at least one JSON line (or the run ended)
has_json() { grep -q '^{' "/tmp/light-$1.out" 2>/dev/null; }

light_phase() {
    # ---------------------------------------------------------------- setup
    t=$(uptime_ms)
    for m in gpio-sim luciole-pwm-sim; do
        insmod "$SIMDIR/$m.ko" || { light_fail setup "insmod=$m"; return 1; }
    done
    mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
    G=/sys/kernel/config/gpio-sim/luciole
    mkdir "$G" "$G/gpio-bank0" "$G/gpio-bank0/line3" &&
        echo 8 >"$G/gpio-bank0/num_lines" && echo luciole-sim >"$G/gpio-bank0/label" &&
        echo lamp-relay >"$G/gpio-bank0/line3/name" && echo 1 >"$G/live" ||
        { light_fail setup "gpio-sim-configfs"; return 1; }
    # Find the chip by its label (arm64 virt has a gpiochip of its own), cross-checked with the
    # name gpio-sim reports in configfs.
    chip=$(awk '/^gpiochip[0-9]+:/ && / luciole-sim:/ { sub(":", "", $1); print $1 }' /sys/kernel/debug/gpio)
    [ -n "$chip" ] || chip=$(cat "$G/gpio-bank0/chip_name")
    GPIODEV=/sys/bus/gpio/devices/$chip
    [ "$(cat "$G/gpio-bank0/chip_name")" = "$chip" ] && [ -d "$GPIODEV/sim_gpio3" ] ||
        { light_fail setup "chip=$chip configfs=$(cat "$G/gpio-bank0/chip_name")"; return 1; }
    [ -r "$PWMSIM" ] || { light_fail setup "no-$PWMSIM"; return 1; }
    pwmchip=$(basename "$(ls -d /sys/devices/platform/luciole-pwm-sim/pwm/pwmchip* 2>/dev/null | head -n 1)")
    [ -n "$pwmchip" ] || { light_fail setup "no-pwmchip"; return 1; }
    echo pull-up >"$GPIODEV/sim_gpio3/pull"
    fact light setup result=ok "gpiochip=$chip" "pwmchip=$pwmchip" "relay=$(relay)" "pwm=$(pwm0)" "ms=$(($(uptime_ms) - t))"
    emit_text light-debugfs-gpio /sys/kernel/debug/gpio

    # ---------------------------------------------------------------- simulator self-test
    # The read-back paths, exercised with the kernel's own interfaces (no luciole): the pull
    # shows on the line, and what the pwm sysfs applies shows in sim_state.
    P=/sys/class/pwm/$pwmchip
    r=ok
    echo pull-down >"$GPIODEV/sim_gpio3/pull"; poll 20 relay_is 0 || r=fail
    echo pull-up >"$GPIODEV/sim_gpio3/pull"; poll 20 relay_is 1 || r=fail
    echo 1 >"$P/export" && echo 2000000 >"$P/pwm1/period" && echo 500000 >"$P/pwm1/duty_cycle" &&
        echo inversed >"$P/pwm1/polarity" && echo 1 >"$P/pwm1/enable" || r=fail
    ch1=$(sed -n '2{s/ /,/g;p}' "$PWMSIM")
    [ "$ch1" = "1,2000000,500000,inversed,1" ] || r=fail
    echo 0 >"$P/pwm1/enable"; echo 1 >"$P/unexport"
    fact light selftest "result=$r" "pwm1=$ch1" "pwm0=$(pwm0)" "npwm=$(cat "$P/npwm")" "relay=$(relay)"

    # ---------------------------------------------------------------- 1. --level 30
    t=$(uptime_ms)
    start L1 --config "$CFG/light.toml" --level 30
    r=ok; until_state 'both_are 1 "1000000,300000,normal,1"' || r=fail
    poll 50 eval 'has_json L1 || ! alive $LPID'; has_json L1 || r=fail
    fact light L1 "result=$r" "ms=$(($(uptime_ms) - t))" "relay=$(relay)" "pwm=$(pwm0)" "running=$(yesno alive $LPID)" "debugfs=$(relay_debug)"
    L1PID=$LPID

    # ---------------------------------------------------------------- 2. SIGTERM -> safe state
    t=$(uptime_ms)
    stop "$L1PID" TERM
    r=ok
    [ "$LRC" = 0 ] || r=fail
    poll "$LIGHT_TIMEOUT" both_are 1 "1000000,1000000,normal,1" || r=fail
    fact light L2 "result=$r" "ms=$(($(uptime_ms) - t))" "rc=$LRC" "relay=$(relay)" "pwm=$(pwm0)" "lines=$(lines_of /tmp/light-L1.out)" "debugfs=$(relay_debug)"
    emit_run L1

    # ---------------------------------------------------------------- 3. --level 0
    t=$(uptime_ms)
    start L3 --config "$CFG/light.toml" --level 0
    r=ok; until_state 'relay_is 0 && pwm0_matches "1000000,0,normal,[01]"' || r=fail
    poll 50 eval 'has_json L3 || ! alive $LPID'; has_json L3 || r=fail
    fact light L3 "result=$r" "ms=$(($(uptime_ms) - t))" "relay=$(relay)" "pwm=$(pwm0)" "running=$(yesno alive $LPID)" "debugfs=$(relay_debug)"

    # ---------------------------------------------------------------- 4. SIGKILL (crash)
    t=$(uptime_ms)
    stop "$LPID" KILL
    r=ok
    # the kernel releases the line when the process dies: the pull (fail-on) wins again;
    # the PWM controller keeps the last applied state (nobody disables it)
    poll "$LIGHT_TIMEOUT" relay_is 1 || r=fail
    pwm0_matches "1000000,0,normal,[01]" || r=fail
    fact light L4 "result=$r" "ms=$(($(uptime_ms) - t))" "rc=$LRC" "relay=$(relay)" "pwm=$(pwm0)" "debugfs=$(relay_debug)"
    emit_run L3

    # ---------------------------------------------------------------- 5. --safe
    t=$(uptime_ms)
    LRC=0
    timeout 60 luciole --log-format json light --config "$CFG/light.toml" --safe \
        >/tmp/light-L5.out 2>/tmp/light-L5.err || LRC=$?
    r=ok
    [ "$LRC" = 0 ] || r=fail
    pwm0_is "1000000,1000000,normal,1" || r=fail
    poll "$LIGHT_TIMEOUT" relay_is 1 || r=fail
    fact light L5 "result=$r" "rc=$LRC" "relay=$(relay)" "pwm=$(pwm0)" "ms=$(($(uptime_ms) - t))"
    emit_run L5

    # ---------------------------------------------------------------- 6. inversed polarity
    t=$(uptime_ms)
    start L6 --config "$CFG/light-inversed.toml" --level 30
    r=ok; until_state 'relay_is 1 && pwm0_matches "1000000,*,inversed,1"' || r=fail
    poll 50 eval 'has_json L6 || ! alive $LPID'; has_json L6 || r=fail
    running=$(yesno alive $LPID)
    pwm_level=$(pwm0); relay_level=$(relay)
    stop "$LPID" TERM
    fact light L6 "result=$r" "ms=$(($(uptime_ms) - t))" "relay=$relay_level" "pwm=$pwm_level" "running=$running" "rc=$LRC" "pwm_after=$(pwm0)" "relay_after=$(relay)"
    emit_run L6

    # ---------------------------------------------------------------- 7. bad input
    t=$(uptime_ms)
    LRC=0
    timeout 60 luciole --log-format json light --config "$CFG/light-bad.toml" --level 30 \
        >/tmp/light-L7.out 2>/tmp/light-L7.err || LRC=$?
    r=ok
    [ "$LRC" != 0 ] && [ "$LRC" != 124 ] || r=fail
    grep -q no-such-chip /tmp/light-L7.err || r=fail
    fact light L7 "result=$r" "ms=$(($(uptime_ms) - t))" "rc=$LRC" "relay=$(relay)" "pwm=$(pwm0)"
    emit_run L7

    # ---------------------------------------------------------------- 8. the daemon
    # luciole run with the vivid camera and the lamp (no model: frames alone keep the pipeline
    # fresh). At night with frames flowing: the base level. Camera unbound: no frame for
    # stale_s (2 s) → the rated level (fail-on). Camera bound again → the base level. SIGTERM →
    # the safe state, exit 0.
    t=$(uptime_ms)
    luciole --log-format json run --config "$CFG/light-run.toml" >/tmp/light-D.out 2>/tmp/light-D.err &
    LPID=$!
    r=ok; until_state 'relay_is 1 && pwm0_is "1000000,300000,normal,1"' || r=fail
    fact light D1 "result=$r" "ms=$(($(uptime_ms) - t))" "relay=$(relay)" "pwm=$(pwm0)" "running=$(yesno alive $LPID)"
    t=$(uptime_ms)
    r=ok
    if [ -n "$VIVID_DEV" ] && echo "$VIVID_DEV" >/sys/bus/platform/drivers/vivid/unbind; then
        until_state 'pwm0_is "1000000,1000000,normal,1"' || r=fail
    else
        r=fail
    fi
    fact light D2 "result=$r" "ms=$(($(uptime_ms) - t))" "relay=$(relay)" "pwm=$(pwm0)" "running=$(yesno alive $LPID)" "vivid=$VIVID_DEV"
    t=$(uptime_ms)
    r=ok
    echo "$VIVID_DEV" >/sys/bus/platform/drivers/vivid/bind || r=fail
    until_state 'pwm0_is "1000000,300000,normal,1"' || r=fail
    fact light D3 "result=$r" "ms=$(($(uptime_ms) - t))" "relay=$(relay)" "pwm=$(pwm0)" "running=$(yesno alive $LPID)"
    t=$(uptime_ms)
    stop "$LPID" TERM
    r=ok
    [ "$LRC" = 0 ] || r=fail
    poll "$LIGHT_TIMEOUT" both_are 1 "1000000,1000000,normal,1" || r=fail
    fact light D4 "result=$r" "ms=$(($(uptime_ms) - t))" "rc=$LRC" "relay=$(relay)" "pwm=$(pwm0)"
    emit_run D
    fact light done
}

if [ "$HIL_MODE" = test ] && [ "${HIL_LIGHT:-1}" = 1 ]; then
    light_phase || true
    emit_text light-sim-state-final "$PWMSIM"
fi
