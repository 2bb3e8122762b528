# /etc/fstab of the appliance (image-build/rootfs/etc/fstab, one source):
# the data partition (outbox, the pole's configuration over /etc/luciole,
# RAUC's status and the boot check's record) and the boot partition, which
# holds the boot loader's slot selection. Only the partition labels differ
# per board (LUCIOLE_*_PARTLABEL, conf/distro/luciole.conf). Two additions
# for oe-core's read-only root: the tmpfs that volatile-binds lays over
# the state, cache and spool directories (Debian's image has no such
# overlays), and the outbox's bind mount ordered after the overlay of the
# state directory, which would otherwise hide it.

FILESEXTRAPATHS:prepend:luciole-distro := "${LUCIOLE_TOPDIR}/image-build/rootfs/etc:"

do_install:append:luciole-distro() {
    sed -e "s#^PARTLABEL=data \\( *[^ ]* *[^ ]* *\\)\\([^ ]*\\)#PARTLABEL=${LUCIOLE_DATA_PARTLABEL} \\1\\2${LUCIOLE_DATA_MOUNT_EXTRA}#" \
        -e 's#^PARTLABEL=boot #PARTLABEL=${LUCIOLE_BOOT_PARTLABEL} #' \
        -e 's#^\(/data/luciole .*x-systemd.requires-mounts-for=/data\)#\1,x-systemd.after=var-volatile-lib.service#' \
        ${UNPACKDIR}/fstab >${D}${sysconfdir}/fstab
    printf '%s\n' "# oe-core's volatile storage (volatile-binds)" \
        "tmpfs           ${localstatedir}/volatile  tmpfs  defaults,nosuid,nodev  0  0" >>${D}${sysconfdir}/fstab
    grep -q "x-systemd.after=var-volatile-lib.service" ${D}${sysconfdir}/fstab ||
        bbfatal "image-build/rootfs/etc/fstab: no /data/luciole bind mount line to order"
    grep -q "^PARTLABEL=${LUCIOLE_DATA_PARTLABEL} " ${D}${sysconfdir}/fstab ||
        bbfatal "image-build/rootfs/etc/fstab: no PARTLABEL=data line to adapt"
    # Mount points: the root file system is read-only, systemd cannot make them.
    install -d ${D}/data ${D}/boot/efi ${D}${localstatedir}/lib/luciole
}

FILES:${PN}:append:luciole-distro = " /data /boot/efi ${localstatedir}/lib/luciole"
