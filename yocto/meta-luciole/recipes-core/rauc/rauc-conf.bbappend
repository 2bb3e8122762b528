# RAUC's system configuration for a Luciole board: image-build's
# system.conf.in (one source) with this board's compatible string, boot
# selection and partition labels (conf/distro/luciole.conf), and the
# keyring, a CA certificate read at build time from LUCIOLE_RAUC_KEYRING
# (never kept in the layer). Installed in /etc/rauc, where image-build puts
# them and system.conf's keyring path points.

FILESEXTRAPATHS:prepend:luciole-distro := "${LUCIOLE_TOPDIR}/image-build/rootfs/etc/rauc:"
SRC_URI:luciole-distro = "file://system.conf.in"

# Rebuild when the certificate changes (when it exists at parse time).
do_install[file-checksums] += "${@'%s:True' % d.getVar('LUCIOLE_RAUC_KEYRING') if os.path.isfile(d.getVar('LUCIOLE_RAUC_KEYRING') or '') else ''}"

do_install:luciole-distro() {
    [ -n "${LUCIOLE_RAUC_KEYRING}" ] ||
        bbfatal "LUCIOLE_RAUC_KEYRING is not set: give the path of the CA certificate update bundles must chain to (yocto/README.md, Building a board image)"
    [ -r "${LUCIOLE_RAUC_KEYRING}" ] ||
        bbfatal "LUCIOLE_RAUC_KEYRING=${LUCIOLE_RAUC_KEYRING}: not a readable file"
    grep -q "BEGIN CERTIFICATE" "${LUCIOLE_RAUC_KEYRING}" ||
        bbfatal "LUCIOLE_RAUC_KEYRING=${LUCIOLE_RAUC_KEYRING}: no PEM certificate in it"
    install -d ${D}${sysconfdir}/rauc
    sed -e 's#@COMPATIBLE@#${LUCIOLE_RAUC_COMPATIBLE}#' \
        -e 's#^bootloader=.*#${LUCIOLE_RAUC_BOOTLOADER_CONF}#' \
        -e 's#/dev/disk/by-partlabel/rootfs-a#/dev/disk/by-partlabel/${LUCIOLE_ROOTFS_A_PARTLABEL}#' \
        -e 's#/dev/disk/by-partlabel/rootfs-b#/dev/disk/by-partlabel/${LUCIOLE_ROOTFS_B_PARTLABEL}#' \
        ${UNPACKDIR}/system.conf.in >${D}${sysconfdir}/rauc/system.conf
    # grubenv= only means something to the grub backend.
    if [ "${LUCIOLE_RAUC_BOOTLOADER_CONF}" != "bootloader=grub" ]; then
        sed -i -e '/^grubenv=/d' ${D}${sysconfdir}/rauc/system.conf
    fi
    if [ -n "${LUCIOLE_RAUC_BOOTLOADER_HANDLER}" ]; then
        sed -i -e 's#^\[handlers\]#[handlers]\nbootloader-custom-backend=${LUCIOLE_RAUC_BOOTLOADER_HANDLER}#' \
            ${D}${sysconfdir}/rauc/system.conf
    fi
    for key in "compatible=${LUCIOLE_RAUC_COMPATIBLE}" "device=/dev/disk/by-partlabel/${LUCIOLE_ROOTFS_B_PARTLABEL}"; do
        grep -qx "$key" ${D}${sysconfdir}/rauc/system.conf ||
            bbfatal "system.conf.in: could not set $key (has image-build/rootfs/etc/rauc/system.conf.in changed?)"
    done
    install -m 0644 "${LUCIOLE_RAUC_KEYRING}" ${D}${sysconfdir}/rauc/keyring.pem
}

PACKAGE_ARCH:luciole-distro = "${MACHINE_ARCH}"
FILES:${PN}:append:luciole-distro = " ${sysconfdir}/rauc"
