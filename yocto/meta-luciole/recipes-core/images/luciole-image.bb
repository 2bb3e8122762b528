SUMMARY = "Luciole street-pole camera: the production image"
DESCRIPTION = "The system a pole runs: systemd, RAUC, the Luciole daemon \
with its model, runtime and board configuration, and the update \
acceptance machinery. Read-only root file system; what survives an update \
lives on the data partition."
HOMEPAGE = "https://example.invalid/luciole"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit core-image

IMAGE_LINGUAS = ""

# The kernel is in the root file system: each RAUC slot carries its own,
# so an update replaces kernel and system together (the boot loaders read
# it from the slot they boot).
IMAGE_INSTALL = " \
    packagegroup-core-boot \
    kernel-image \
    luciole \
    luciole-config \
    luciole-model \
    luciole-system \
    litert \
    rauc \
    ca-certificates \
    ${LUCIOLE_BOARD_PACKAGES} \
"
# Board-specific pieces. The Raspberry Pis: U-Boot's environment tools and
# their fw_env.config (RAUC's uboot backend), and the kernel's modules (PWM,
# USB cameras and dm-verity are modules there). The Jetson: the nvbootctrl
# backend, the USB camera driver, fan control, and mkfs.ext4 for the data
# partition's first boot (x-systemd.makefs).
LUCIOLE_BOARD_PACKAGES ??= ""
LUCIOLE_BOARD_PACKAGES:rpi = "libubootenv-bin u-boot-env kernel-modules"
LUCIOLE_BOARD_PACKAGES:tegra = "luciole-tegra-boot kernel-module-uvcvideo tegra-nvfancontrol e2fsprogs-mke2fs"

# meta-rauc recommends rauc-mark-good, which marks every boot good as soon
# as it completes; on a pole only luciole-boot-check decides, once the
# daemon has proved itself.
BAD_RECOMMENDATIONS += "rauc-mark-good"

IMAGE_FSTYPES:rpi = "ext4 wic.bz2 wic.bmap"
IMAGE_FSTYPES:tegra = "ext4 tegraflash-tar.zst"
IMAGE_ROOTFS_EXTRA_SPACE = "0"
# A slot holds 640 MiB (files/wic/luciole-rpi.wks.in, image-build): a larger
# root file system fails here, not at flashing or at `rauc install`.
IMAGE_ROOTFS_MAXSIZE = "655360"
# The root file system is read-only (the luciole distro's IMAGE_FEATURES).
# The data partition's layout (outbox, /etc/luciole overlay, RAUC's status,
# the boot check's record) is made on first boot, on every board, by
# luciole-data-init.service (luciole-system).
