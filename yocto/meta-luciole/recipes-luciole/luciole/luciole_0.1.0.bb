SUMMARY = "Luciole street-pole camera daemon"
DESCRIPTION = "Counts people and vehicles from a V4L2 camera with a TFLite \
model, drives the pole's lamp over GPIO and PWM, and publishes events over \
MQTT, buffering them on the device while the link is down. No image leaves \
the device."
HOMEPAGE = "https://example.invalid/luciole"
SECTION = "luciole"
LICENSE = "Apache-2.0"
# The workspace declares its licence in Cargo.toml (line 8).
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=8;endline=8;md5=2507bd5f0713f05419cd2f22fa06fe62"

# The v4l crate generates its bindings with bindgen, which loads libclang.
DEPENDS += "clang-native"

# The sources are read from the repository this layer lives in
# (LUCIOLE_TOPDIR, conf/layer.conf): the workspace manifest and lock, the
# daemon crate, the board profiles it compiles in, its systemd files and
# the README it installs as its documentation.
FILESEXTRAPATHS:prepend := "${LUCIOLE_TOPDIR}:"
SRC_URI = "file://Cargo.toml;subdir=luciole \
    file://Cargo.lock;subdir=luciole \
    file://appliance;subdir=luciole \
    file://hw;subdir=luciole \
    file://README.md;subdir=luciole \
"
# Every crate of Cargo.lock, pinned by its sha256 (generated:
# yocto/scripts/cargo-crates-inc; tests/yocto/run checks it).
require luciole-crates.inc

S = "${UNPACKDIR}/luciole"

inherit cargo systemd useradd

# The daemon's user, as luciole.sysusers declares it (oe-core checks the
# two agree when it assembles the image): fixed uid/gid 901, because the
# outbox on the data partition outlives updates; in video (cameras) and
# gpio (the relay's chip and the PWM files, 60-luciole.rules).
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system gpio; --system --gid 901 luciole"
USERADD_PARAM:${PN} = "--system --uid 901 --gid 901 --groups video,gpio \
    --home-dir ${localstatedir}/lib/luciole --no-create-home --shell ${sbindir}/nologin \
    --comment 'Luciole street-pole camera daemon' luciole"

# (bindgen, see DEPENDS)
export LIBCLANG_PATH = "${STAGING_LIBDIR_NATIVE}"
export BINDGEN_EXTRA_CLANG_ARGS = "--sysroot=${STAGING_DIR_TARGET} --target=${TARGET_SYS}"

# Only the daemon's binary (not the tests, benches or examples).
CARGO_BUILD_FLAGS += "--package luciole --bin luciole"
# The workspace's release profile strips the binary (Cargo.toml); oe-core
# strips it itself, keeping the debug symbols in luciole-dbg, and refuses a
# binary stripped before it (QA already-stripped).
export CARGO_PROFILE_RELEASE_STRIP = "false"

# The Raspberry Pi backend (rppal), off by default: every board drives its
# lamp through the GPIO character device and PWM sysfs, which need no
# feature (PACKAGECONFIG:append:pn-luciole = " rpi" to add it).
PACKAGECONFIG ??= ""
PACKAGECONFIG[rpi] = "--features rpi"

do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/appliance/systemd/luciole.service ${D}${systemd_system_unitdir}/luciole.service
    install -D -m 0644 ${S}/appliance/systemd/luciole.sysusers ${D}${nonarch_libdir}/sysusers.d/luciole.conf
    install -D -m 0644 ${S}/appliance/systemd/60-luciole.rules ${D}${nonarch_base_libdir}/udev/rules.d/60-luciole.rules
    install -D -m 0644 ${S}/README.md ${D}${docdir}/luciole/README.md
}

SYSTEMD_SERVICE:${PN} = "luciole.service"

FILES:${PN} += "${nonarch_libdir}/sysusers.d/luciole.conf \
    ${nonarch_base_libdir}/udev/rules.d/60-luciole.rules \
"
# The unit's documentation link points at the README: keep it with the
# daemon rather than in ${PN}-doc.
FILES:${PN}-doc:remove = "${docdir}"
FILES:${PN} += "${docdir}/luciole/README.md"

# The inference runtime is opened at run time (dlopen), the model and the
# board's configuration are data: none shows up as a library dependency.
RDEPENDS:${PN} += "litert luciole-config luciole-model"
