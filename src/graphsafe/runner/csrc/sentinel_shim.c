/* graphsafe capture sentinel: the CUPTI callback, in C.
 *
 * CUPTI calls this at the entry and exit of every enabled CUDA API call. While a capture is open on the
 * calling thread, a watched call's exit is checked here without Python: its return code for a capture error
 * (900-908), and for launch/copy/set calls the stream it enqueued on. Only when the stream is not capturing
 * (the work ran eagerly and is not in the graph) or a capture error came back is Python called, through
 * `notify`, to build the diagnosis with the Python call site.
 *
 * The parameter-struct offsets come from Python (graphsafe/runner/cupti.py, one source of truth), and
 * cuStreamIsCapturing's address from the loaded driver: this file needs no CUDA or CUPTI header.
 */
#include <pthread.h>
#include <stdint.h>

typedef struct {           /* CUpti_CallbackData, the fields read here */
    int site;              /* CUPTI_API_ENTER = 0, CUPTI_API_EXIT = 1 */
    const char *function_name;
    const void *params;
    void *return_value;
    const char *symbol_name;
} gs_cb_data;

typedef void (*gs_notify_fn)(int domain, uint32_t cbid, uint64_t stream, int rc, const char *symbol,
                             const void *params);
typedef int (*gs_is_capturing_fn)(void *stream, int *status);

typedef struct {
    int16_t indirect;      /* offset of a pointer to the struct holding the stream, or -1 */
    int16_t offset;        /* offset of the stream handle, or -1 for calls watched for their return code only */
    uint8_t ptsz;          /* per-thread-default-stream variant: stream 0 means cudaStreamPerThread */
    uint8_t watched;
} gs_watch;

#define GS_DOMAINS 3
#define GS_MAX_CBID 2048
#define GS_MAX_CAPTURES 32

static gs_watch watch[GS_DOMAINS][GS_MAX_CBID];
static volatile uint64_t capture_thread[GS_MAX_CAPTURES];
static volatile uint64_t capture_stream[GS_MAX_CAPTURES];
static gs_notify_fn notify;
static gs_is_capturing_fn is_capturing;
static __thread int runtime_depth;
static __thread uint64_t depth_generation;
static volatile uint64_t generation = 1;   /* a new subscription: entries seen before it may have no exit */

void gs_configure(gs_notify_fn n, gs_is_capturing_fn f) { notify = n; is_capturing = f; generation++; }

int gs_watch_call(int domain, uint32_t cbid, int indirect, int offset, int ptsz) {
    if (domain < 0 || domain >= GS_DOMAINS || cbid >= GS_MAX_CBID) return -1;
    watch[domain][cbid] = (gs_watch){(int16_t)indirect, (int16_t)offset, (uint8_t)ptsz, 1};
    return 0;
}

typedef int (*gs_enable_fn)(uint32_t enable, void *subscriber, int domain, uint32_t cbid);

/* Enables CUPTI's callback for each watched call only (cuptiEnableCallback, passed in): every other API
 * call of the capture then costs nothing, where enabling whole domains made CUPTI call in for all of them.
 * Returns 0, or the first CUPTI error. */
int gs_enable_watched(void *subscriber, gs_enable_fn enable) {
    for (int d = 0; d < GS_DOMAINS; d++)
        for (uint32_t c = 0; c < GS_MAX_CBID; c++)
            if (watch[d][c].watched) {
                int rc = enable(1, subscriber, d, c);
                if (rc != 0) return rc;
            }
    return 0;
}

int gs_begin(uint64_t thread, uint64_t stream) {
    for (int i = 0; i < GS_MAX_CAPTURES; i++)
        if (capture_thread[i] == 0) { capture_stream[i] = stream; capture_thread[i] = thread; return i; }
    return -1;
}

void gs_end(uint64_t thread) {
    for (int i = 0; i < GS_MAX_CAPTURES; i++)
        if (capture_thread[i] == thread) { capture_thread[i] = 0; capture_stream[i] = 0; }
}

void gs_callback(void *userdata, int domain, uint32_t cbid, const void *data) {
    const gs_cb_data *cb = (const gs_cb_data *)data;
    (void)userdata;
    if ((domain != 1 && domain != 2) || cbid >= GS_MAX_CBID) return;  /* whole domains may be enabled */
    gs_watch w = watch[domain][cbid];
    if (!w.watched) return;
    if (depth_generation != generation) { depth_generation = generation; runtime_depth = 0; }
    if (domain == 2) {                   /* a watched runtime call: the driver calls it makes belong to it */
        if (cb->site == 0) { runtime_depth++; return; }
        if (runtime_depth > 0) runtime_depth--;
    } else if (runtime_depth > 0) {
        return;
    }
    if (cb->site != 1) return;
    uint64_t self = (uint64_t)pthread_self();
    int slot = -1;
    for (int i = 0; i < GS_MAX_CAPTURES; i++)
        if (capture_thread[i] == self) { slot = i; break; }
    if (slot < 0) return;
    int rc = cb->return_value ? *(const int *)cb->return_value : 0;
    if (rc >= 900 && rc <= 908) { notify(domain, cbid, 0, rc, cb->symbol_name, cb->params); return; }
    if (rc != 0 || w.offset < 0 || cb->params == 0) return;
    const char *p = (const char *)cb->params;
    if (w.indirect >= 0) {
        p = *(const char *const *)(p + w.indirect);
        if (p == 0) return;
    }
    uint64_t stream = *(const uint64_t *)(p + w.offset);
    if (stream == capture_stream[slot]) return;
    if (stream == 0 && w.ptsz) stream = 2;   /* cudaStreamPerThread */
    int status = -1;
    if (is_capturing((void *)(uintptr_t)stream, &status) != 0 || status != 0) return;
    notify(domain, cbid, stream, 0, cb->symbol_name, cb->params);
}
