/*
 * A TFLite external-delegate plugin for the tests: it follows the same
 * convention as Coral's libedgetpu.so.1 and NXP's libvx_delegate.so
 * (exports tflite_plugin_create_delegate / tflite_plugin_destroy_delegate,
 * takes key/value options) and hands back an XNNPACK delegate made by the
 * TFLite C library named in its options. This exercises Luciole's delegate
 * path for real on a machine without an accelerator.
 *
 * Options:
 *   library      path of libtensorflowlite_c.so (already loaded by the host)
 *   num_threads  XNNPACK threads (default 1)
 *
 * Build: cc -shared -fPIC -o libxnnpack_plugin.so xnnpack_delegate_plugin.c -ldl
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* TfLiteXNNPackDelegateOptions of TensorFlow Lite 2.6. */
typedef struct {
    int num_threads;
    _Bool enable_int8_weights_unpacking;
} XnnpackOptions;

typedef void *(*CreateFn)(const XnnpackOptions *);
typedef void (*DeleteFn)(void *);

static DeleteFn delete_delegate;

void *tflite_plugin_create_delegate(char **keys, char **values, size_t count,
                                    void (*report_error)(const char *)) {
    const char *library = NULL;
    XnnpackOptions options = {1, 0};
    char message[512];
    for (size_t i = 0; i < count; i++) {
        if (strcmp(keys[i], "library") == 0) {
            library = values[i];
        } else if (strcmp(keys[i], "num_threads") == 0) {
            options.num_threads = atoi(values[i]);
        } else {
            snprintf(message, sizeof message, "unknown option %s", keys[i]);
            report_error(message);
            return NULL;
        }
    }
    if (library == NULL) {
        report_error("option 'library' (path of libtensorflowlite_c.so) is required");
        return NULL;
    }
    void *handle = dlopen(library, RTLD_NOW | RTLD_NOLOAD);
    if (handle == NULL) {
        handle = dlopen(library, RTLD_NOW);
    }
    if (handle == NULL) {
        snprintf(message, sizeof message, "cannot load %s: %s", library, dlerror());
        report_error(message);
        return NULL;
    }
    CreateFn create = (CreateFn)dlsym(handle, "TfLiteXNNPackDelegateCreate");
    delete_delegate = (DeleteFn)dlsym(handle, "TfLiteXNNPackDelegateDelete");
    if (create == NULL || delete_delegate == NULL) {
        report_error("the library has no TfLiteXNNPackDelegateCreate/Delete");
        return NULL;
    }
    return create(&options);
}

void tflite_plugin_destroy_delegate(void *delegate) {
    if (delegate != NULL && delete_delegate != NULL) {
        delete_delegate(delegate);
    }
}
