SUMMARY = "Luciole update bundle: the root file system of luciole-image, signed"
DESCRIPTION = "A RAUC bundle (verity format, as image-build's) holding \
luciole-image's root file system for the rootfs slot. Signed with the key \
and certificate given at build time; never with keys kept in the layer."
HOMEPAGE = "https://example.invalid/luciole"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

inherit bundle

RAUC_BUNDLE_COMPATIBLE = "${LUCIOLE_RAUC_COMPATIBLE}"
RAUC_BUNDLE_VERSION = "${DISTRO_VERSION}"
RAUC_BUNDLE_DESCRIPTION = "Luciole ${DISTRO_VERSION} for ${MACHINE}"
RAUC_BUNDLE_FORMAT = "verity"

RAUC_BUNDLE_SLOTS = "rootfs"
RAUC_SLOT_rootfs = "luciole-image"
RAUC_SLOT_rootfs[fstype] = "ext4"

# Paths given at build time (local.conf, or kas: yocto/README.md). The
# bundle class stops the build with a clear message when they are unset.
LUCIOLE_RAUC_KEY ??= ""
LUCIOLE_RAUC_CERT ??= ""
RAUC_KEY_FILE = "${LUCIOLE_RAUC_KEY}"
RAUC_CERT_FILE = "${LUCIOLE_RAUC_CERT}"
