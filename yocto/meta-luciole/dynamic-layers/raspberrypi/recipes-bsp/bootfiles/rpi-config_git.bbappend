# config.txt for a Luciole pole: the overlays of the board's profile
# (hw/rpi4.toml, hw/rpi5.toml: the `overlays` entries that are not
# comments), so that the PWM channel the daemon drives (the profile's
# `dimmer` output) is routed to its header pin, and the analogue audio,
# which shares that PWM block, is off.

FILESEXTRAPATHS:prepend:luciole-distro := "${LUCIOLE_TOPDIR}/hw:"
SRC_URI:append:luciole-distro = " ${@'file://%s.toml' % d.getVar('LUCIOLE_BOARD') if d.getVar('LUCIOLE_BOARD') else ''}"

do_deploy:append:luciole-distro() {
    if [ -n "${LUCIOLE_BOARD}" ]; then
        profile=${UNPACKDIR}/${LUCIOLE_BOARD}.toml
        echo "# Luciole: board profile hw/${LUCIOLE_BOARD}.toml" >>$CONFIG
        echo "dtparam=audio=off" >>$CONFIG
        # Each quoted entry of `overlays = [ ... ]`, without its comment.
        sed -n '/^overlays = \[/,/^\]/ s/^ *"\([^#"][^"]*\)",\{0,1\}$/\1/p' $profile |
            sed -e 's/ *#.*$//' -e 's/ *$//' >${WORKDIR}/luciole-overlays.txt
        grep -q '^dtoverlay=pwm' ${WORKDIR}/luciole-overlays.txt ||
            bbfatal "hw/${LUCIOLE_BOARD}.toml: no dtoverlay=pwm entry in overlays"
        cat ${WORKDIR}/luciole-overlays.txt >>$CONFIG
    fi
}
