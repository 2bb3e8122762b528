SUMMARY = "The Luciole appliance's system files and update acceptance"
DESCRIPTION = "What image-build/rootfs puts on the Debian image, installed \
from the same files: update acceptance after an A/B update (boot-check, its \
unit, update.conf, RAUC's pre-install handler), the reboot an update.install \
asks for and the daemon's D-Bus access to RAUC, the volatile journal and the \
wired network."
HOMEPAGE = "https://example.invalid/luciole"
SECTION = "luciole"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

FILESEXTRAPATHS:prepend := "${LUCIOLE_TOPDIR}/image-build:${THISDIR}/files:"
SRC_URI = "file://rootfs file://luciole-data-init.service"

S = "${UNPACKDIR}/rootfs"

inherit systemd allarch

INHIBIT_DEFAULT_DEPS = "1"
do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -D -m 0755 ${S}/usr/libexec/luciole/boot-check ${D}${libexecdir}/luciole/boot-check
    install -D -m 0755 ${S}/usr/libexec/luciole/rauc-pre-install ${D}${libexecdir}/luciole/rauc-pre-install
    install -D -m 0644 ${S}/usr/lib/systemd/system/luciole-boot-check.service \
        ${D}${systemd_system_unitdir}/luciole-boot-check.service
    install -D -m 0644 ${S}/usr/lib/systemd/system/luciole-reboot.path \
        ${D}${systemd_system_unitdir}/luciole-reboot.path
    install -D -m 0644 ${S}/usr/lib/systemd/system/luciole-reboot.service \
        ${D}${systemd_system_unitdir}/luciole-reboot.service
    install -D -m 0644 ${S}/usr/share/dbus-1/system.d/luciole-rauc.conf \
        ${D}${datadir}/dbus-1/system.d/luciole-rauc.conf
    install -D -m 0644 ${UNPACKDIR}/luciole-data-init.service \
        ${D}${systemd_system_unitdir}/luciole-data-init.service
    install -D -m 0644 ${S}/etc/luciole/update.conf ${D}${sysconfdir}/luciole/update.conf
    install -D -m 0644 ${S}/etc/systemd/journald.conf.d/10-luciole.conf \
        ${D}${sysconfdir}/systemd/journald.conf.d/10-luciole.conf
    install -D -m 0644 ${S}/etc/systemd/network/80-wired.network \
        ${D}${sysconfdir}/systemd/network/80-wired.network
    install -D -m 0644 ${S}/etc/systemd/system/systemd-networkd-wait-online.service.d/10-luciole.conf \
        ${D}${sysconfdir}/systemd/system/systemd-networkd-wait-online.service.d/10-luciole.conf
}

SYSTEMD_SERVICE:${PN} = "luciole-boot-check.service luciole-data-init.service luciole-reboot.path"

FILES:${PN} += "${libexecdir}/luciole \
    ${systemd_system_unitdir}/luciole-boot-check.service \
    ${systemd_system_unitdir}/luciole-data-init.service \
    ${systemd_system_unitdir}/luciole-reboot.path \
    ${systemd_system_unitdir}/luciole-reboot.service \
    ${datadir}/dbus-1/system.d/luciole-rauc.conf \
    ${sysconfdir}/luciole/update.conf \
    ${sysconfdir}/systemd \
"
CONFFILES:${PN} = "${sysconfdir}/luciole/update.conf"
RDEPENDS:${PN} = "rauc"
# RAUC mounts verity bundles (squashfs over dm-verity, through a loop
# device); /etc/luciole is an overlay. Modules where the board's kernel
# builds them as such; nothing to add where they are built in.
RRECOMMENDS:${PN} = " \
    kernel-module-squashfs \
    kernel-module-dm-verity \
    kernel-module-loop \
    kernel-module-overlay \
"
