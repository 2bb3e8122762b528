# fw_printenv/fw_setenv (RAUC's uboot backend) find U-Boot's environment
# in uboot.env on the boot partition, which a Luciole pole mounts at
# /boot/efi (image-build/rootfs/etc/fstab).

FILESEXTRAPATHS:prepend:luciole-distro := "${THISDIR}/files:"
SRC_URI:append:luciole-distro = " file://luciole-fw_env.config"

do_install:append:luciole-distro() {
    install -m 0644 ${UNPACKDIR}/luciole-fw_env.config ${D}${sysconfdir}/fw_env.config
}
