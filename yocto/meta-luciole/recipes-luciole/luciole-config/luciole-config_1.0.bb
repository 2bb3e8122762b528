SUMMARY = "Luciole's default configuration for this board"
DESCRIPTION = "/etc/luciole/luciole.toml: the appliance image's default \
(image-build/rootfs/etc/luciole/luciole.toml, one source for both ways of \
building the system) with the lamp outputs of the board's profile in hw/. \
A pole's own configuration, written on the data partition, replaces it."
HOMEPAGE = "https://example.invalid/luciole"
SECTION = "luciole"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

FILESEXTRAPATHS:prepend := "${LUCIOLE_TOPDIR}/image-build/rootfs/etc/luciole:${LUCIOLE_TOPDIR}/hw:"
# The board profile (hw/<name>.toml) of this machine (LUCIOLE_BOARD,
# conf/distro/luciole.conf); a machine without one gets no [lighting] (the
# daemon then counts and drives no lamp).
SRC_URI = "file://luciole.toml \
    file://lighting.toml.in \
    ${@'file://%s.toml' % d.getVar('LUCIOLE_BOARD') if d.getVar('LUCIOLE_BOARD') else ''} \
"

S = "${UNPACKDIR}"

PACKAGE_ARCH = "${MACHINE_ARCH}"

INHIBIT_DEFAULT_DEPS = "1"
do_configure[noexec] = "1"

do_compile() {
    cp ${S}/luciole.toml ${B}/luciole.toml.out
    if [ -n "${LUCIOLE_BOARD}" ]; then
        # The outputs the fragment names must exist in the profile.
        for output in relay dimmer; do
            grep -q "^\[outputs\.$output\]" ${S}/${LUCIOLE_BOARD}.toml ||
                bbfatal "hw/${LUCIOLE_BOARD}.toml: no [outputs.$output], which lighting.toml.in names"
        done
        sed -e 's/@BOARD@/${LUCIOLE_BOARD}/g' ${S}/lighting.toml.in >>${B}/luciole.toml.out
    fi
}

do_install() {
    install -D -m 0644 ${B}/luciole.toml.out ${D}${sysconfdir}/luciole/luciole.toml
}

FILES:${PN} += "${sysconfdir}/luciole/luciole.toml"
CONFFILES:${PN} += "${sysconfdir}/luciole/luciole.toml"
