# /etc/fstab of the appliance (image-build/rootfs/etc/fstab, one source):
# the data partition (outbox, the pole's configuration over /etc/luciole,
# RAUC's status and the boot check's record) and the boot partition, which
# holds the boot loader's slot selection. Only the partition labels differ
# per board (LUCIOLE_*_PARTLABEL, conf/distro/luciole.conf).

FILESEXTRAPATHS:prepend:luciole-distro := "${LUCIOLE_TOPDIR}/image-build/rootfs/etc:"

do_install:append:luciole-distro() {
    sed -e "s#^PARTLABEL=data \\( *[^ ]* *[^ ]* *\\)\\([^ ]*\\)#PARTLABEL=${LUCIOLE_DATA_PARTLABEL} \\1\\2${LUCIOLE_DATA_MOUNT_EXTRA}#" \
        -e 's#^PARTLABEL=boot #PARTLABEL=${LUCIOLE_BOOT_PARTLABEL} #' \
        ${UNPACKDIR}/fstab >${D}${sysconfdir}/fstab
    grep -q "^PARTLABEL=${LUCIOLE_DATA_PARTLABEL} " ${D}${sysconfdir}/fstab ||
        bbfatal "image-build/rootfs/etc/fstab: no PARTLABEL=data line to adapt"
    install -d ${D}/data
}

FILES:${PN}:append:luciole-distro = " /data"
