# U-Boot script of a Luciole Raspberry Pi: picks the root file system slot
# as RAUC's uboot backend expects (BOOT_ORDER, BOOT_<slot>_LEFT), instead
# of meta-raspberrypi's single-root script.

FILESEXTRAPATHS:prepend:luciole := "${THISDIR}/files:"
SRC_URI:luciole = "file://luciole-boot.cmd.in"

do_compile:prepend:luciole() {
    cp ${UNPACKDIR}/luciole-boot.cmd.in ${UNPACKDIR}/boot.cmd.in
}
