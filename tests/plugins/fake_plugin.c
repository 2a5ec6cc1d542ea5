/* A tachyon plugin written in C, for testing the host's handling of bad plugins:
 *   -DAPI_VERSION=99   claims another plugin API version
 *   -DCRASH            segfaults while exporting
 *   -DNO_ENTRY         is a shared library without the tachyon entry point
 *   -DSPIN             never returns from its export */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef API_VERSION
#define API_VERSION 1
#endif

typedef struct { const uint8_t *ptr; size_t len; } Bytes;
typedef struct { uint8_t *ptr; size_t len; size_t cap; } OwnedBytes;
typedef struct {
    uint32_t api_version, struct_size;
    OwnedBytes (*formats)(void);
    OwnedBytes (*export_)(Bytes, Bytes, Bytes, Bytes);
    void (*free_)(OwnedBytes);
} PluginV1;

static OwnedBytes owned(const char *text) {
    size_t n = strlen(text);
    OwnedBytes b = {malloc(n), n, n};
    memcpy(b.ptr, text, n);
    return b;
}
static OwnedBytes formats(void) { return owned("[{\"name\":\"crashy\",\"description\":\"test plugin\",\"extension\":\"txt\"}]"); }
static OwnedBytes export_(Bytes format, Bytes ir, Bytes options, Bytes path) {
    (void)format; (void)ir; (void)options; (void)path;
#ifdef CRASH
    *(volatile int *)0 = 1;
#endif
#ifdef SPIN
    for (volatile unsigned long i = 0;; i++) {}
#endif
    return owned("{\"ok\":true}");
}
static void free_(OwnedBytes b) { free(b.ptr); }
static const PluginV1 table = {API_VERSION, sizeof(PluginV1), formats, export_, free_};

#ifndef NO_ENTRY
const PluginV1 *tachyon_plugin_v1(void) { return &table; }
#else
const PluginV1 *some_other_symbol(void) { return &table; }
#endif
