SUMMARY = "LiteRT (TensorFlow Lite) C API runtime for Luciole's detector"
DESCRIPTION = "libLiteRt.so, Google's LiteRT runtime, taken unchanged from \
the PyPI wheel of ai-edge-litert (models/runtimes.toml names the same \
artefact and checks the same sha256). Luciole opens it at run time."
HOMEPAGE = "https://ai.google.dev/edge/litert"
SECTION = "libs"
LICENSE = "Apache-2.0"
# The wheel carries no licence text; its metadata declares Apache 2.0
# (METADATA line 8).
LIC_FILES_CHKSUM = "file://ai_edge_litert-${PV}.dist-info/METADATA;beginline=8;endline=8;md5=9a6ea5b6c346a830f54cc95f6a2a9245"

# A wheel is a zip archive: fetched under a .zip name so that it unpacks.
LITERT_WHEEL = "ai_edge_litert-${PV}-cp311-cp311-manylinux_2_27_${LITERT_ARCH}"
SRC_URI = "https://files.pythonhosted.org/packages/cp311/a/ai-edge-litert/${LITERT_WHEEL}.whl;downloadfilename=${LITERT_WHEEL}.zip;subdir=wheel"
SRC_URI[sha256sum] = "${LITERT_SHA256}"

LITERT_ARCH = "unsupported"
LITERT_ARCH:aarch64 = "aarch64"
LITERT_ARCH:x86-64 = "x86_64"
LITERT_SHA256 = ""
LITERT_SHA256:aarch64 = "f2f07d27211a6b64ed374733bcbdd78dcf0cdc70de5c5f7d0ce7f198d4890a23"
LITERT_SHA256:x86-64 = "1bed8ccd8dfc4f2ec388bc79cb90920c261a244995ce378d396fb8967b7db640"
# The library itself, as models/runtimes.toml records it.
LITERT_LIB_SHA256 = ""
LITERT_LIB_SHA256:aarch64 = "332b30e12a0708279c44e883639ac4caa435f18f6333fc4f35f8293a90ea9819"
LITERT_LIB_SHA256:x86-64 = "c590f1124053ce6d2ceaef6d1174af15f8103a76872059414d18ff2e9cfaf681"

COMPATIBLE_HOST = "(aarch64|x86_64).*-linux"

S = "${UNPACKDIR}/wheel"

# The default dependencies stay: the library needs libstdc++ and libgcc_s
# (readelf), and oe-core only finds their packages for the automatic
# runtime dependencies when the toolchain is among the recipe's
# dependencies.
do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    echo "${LITERT_LIB_SHA256}  ${S}/ai_edge_litert/libLiteRt.so" | sha256sum -c -
    # luciole.toml names /usr/lib/libLiteRt.so on every architecture.
    install -D -m 0755 ${S}/ai_edge_litert/libLiteRt.so ${D}${nonarch_libdir}/libLiteRt.so
}

# An unversioned library opened with dlopen: it belongs in the main package.
FILES_SOLIBSDEV = ""
FILES:${PN} += "${nonarch_libdir}/libLiteRt.so"
# Prebuilt upstream: shipped as built (stripped, its own link flags).
INSANE_SKIP:${PN} = "already-stripped ldflags dev-so libdir"
