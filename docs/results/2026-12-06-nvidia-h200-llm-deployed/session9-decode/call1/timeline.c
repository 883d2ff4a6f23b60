/* A kernel timeline of any CUDA program, for a machine without Nsight Systems: loaded by the
 * driver through CUDA_INJECTION64_PATH, it enables CUPTI's concurrent-kernel activity records
 * and writes one CSV line a kernel (start_ns,end_ns,graph_id,graph_node_id,grid,block,name) to
 * $TIMELINE_OUT at exit. Graph nodes are traced per node (CUPTI's default graph trace mode). */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *out;
#define BUF (8u << 20)

static void CUPTIAPI requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = (uint8_t *)aligned_alloc(8, BUF);
    *size = BUF;
    *max_records = 0;
}

static void CUPTIAPI completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                               size_t valid) {
    CUpti_Activity *r = NULL;
    (void)ctx; (void)stream; (void)size;
    while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
            CUpti_ActivityKernel10 *k = (CUpti_ActivityKernel10 *)r;
            if (out)
                fprintf(out, "%llu,%llu,%u,%llu,%d,%d,%s\n", (unsigned long long)k->start,
                        (unsigned long long)k->end, k->graphId, (unsigned long long)k->graphNodeId,
                        k->gridX * k->gridY * k->gridZ, k->blockX * k->blockY * k->blockZ,
                        k->name ? k->name : "?");
        }
    }
    free(buffer);
}

static void finish(void) {
    cuptiActivityFlushAll(1);
    if (out) fclose(out);
    out = NULL;
}

int InitializeInjection(void) {
    const char *path = getenv("TIMELINE_OUT");
    out = fopen(path ? path : "timeline.csv", "w");
    if (!out) return 0;
    fprintf(out, "start_ns,end_ns,graph_id,graph_node_id,grid,block,name\n");
    if (cuptiActivityRegisterCallbacks(requested, completed) != CUPTI_SUCCESS) return 0;
    if (cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) return 0;
    atexit(finish);
    return 1;
}
