SUMMARY = "RAUC boot selection on the Jetson through NVIDIA's A/B boot control"
DESCRIPTION = "RAUC's custom boot loader backend for Luciole on Jetson: the \
firmware (UEFI) pairs each boot chain slot with a root file system slot \
(APP, APP_b); this script maps RAUC's questions and orders onto nvbootctrl."
HOMEPAGE = "https://example.invalid/luciole"
SECTION = "luciole"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://rauc-tegra-bootloader"
S = "${UNPACKDIR}"

PACKAGE_ARCH = "${MACHINE_ARCH}"

INHIBIT_DEFAULT_DEPS = "1"
do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -D -m 0755 ${S}/rauc-tegra-bootloader ${D}${libexecdir}/luciole/rauc-tegra-bootloader
}

FILES:${PN} += "${libexecdir}/luciole/rauc-tegra-bootloader"
# nvbootctrl, without nv_update_verifier (tegra-redundant-boot), which
# would mark every boot successful before the daemon proves itself.
RDEPENDS:${PN} = "tegra-redundant-boot-base"
COMPATIBLE_MACHINE = "(tegra)"
