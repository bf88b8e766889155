/* A stand-in LiteRT external delegate for tests: it loads as a vendor's NPU delegate does
 * (tflite_plugin_create_delegate / tflite_plugin_destroy_delegate) and claims no operator,
 * so every node runs on LiteRT's own CPU kernels. Built by the tests with the C compiler. */
#include <stddef.h>
#include <stdint.h>

typedef struct TfLiteDelegate {
    void *data_;
    int (*Prepare)(void *context, struct TfLiteDelegate *delegate);
    int (*CopyFromBufferHandle)(void *context, struct TfLiteDelegate *delegate, int handle,
                                void *tensor);
    int (*CopyToBufferHandle)(void *context, struct TfLiteDelegate *delegate, int handle,
                              void *tensor);
    void (*FreeBufferHandle)(void *context, struct TfLiteDelegate *delegate, int *handle);
    int64_t flags;
    void *opaque_delegate_builder;
} TfLiteDelegate;

static int prepare(void *context, TfLiteDelegate *delegate) {
    (void)context;
    (void)delegate;
    return 0; /* kTfLiteOk: nothing delegated */
}

static TfLiteDelegate standin = {NULL, prepare, NULL, NULL, NULL, 0, NULL};
static int created = 0;

TfLiteDelegate *tflite_plugin_create_delegate(char **keys, char **values, size_t count,
                                              void (*report_error)(const char *)) {
    (void)keys;
    (void)values;
    (void)count;
    (void)report_error;
    created++;
    return &standin;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate *delegate) { (void)delegate; }
