# U-Boot script of a Luciole Raspberry Pi: picks the root file system slot
# as RAUC's uboot backend expects (BOOT_ORDER, BOOT_<slot>_LEFT), instead
# of meta-raspberrypi's single-root script.

FILESEXTRAPATHS:prepend:luciole-distro := "${THISDIR}/files:"
SRC_URI:luciole-distro = "file://luciole-boot.cmd.in"

do_compile:prepend:luciole-distro() {
    cp ${UNPACKDIR}/luciole-boot.cmd.in ${UNPACKDIR}/boot.cmd.in
}
