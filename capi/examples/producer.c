/*
 * Producer half of a two-process demo: sends COUNT messages into the named
 * ring NAME, writing each in place (a zero-copy claim), then closes the ring.
 *
 * Run the two halves (the consumer creates the ring; the producer waits up to
 * 5 s for it to appear):
 *   ./consumer /demo &
 *   ./producer /demo 1000000
 * Build: cc producer.c $(pkg-config --cflags --libs shmpipe-static) (see capi/README.md).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmpipe.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: producer NAME COUNT\n");
        return 2;
    }
    uint64_t count = strtoull(argv[2], NULL, 10);
    shmpipe_producer *tx;
    shmpipe_status s;
    for (int tries = 0;; tries++) {
        s = shmpipe_producer_open(argv[1], NULL, &tx);
        if (s != SHMPIPE_NOT_FOUND || tries == 500) break;
        struct timespec pause = {0, 10 * 1000 * 1000}; /* the consumer is not up yet */
        nanosleep(&pause, NULL);
    }
    if (s != SHMPIPE_OK) {
        fprintf(stderr, "open %s: %s\n", argv[1], shmpipe_last_error_message());
        return 2;
    }
    for (uint64_t seq = 0; seq < count; seq++) {
        void *slot;
        s = shmpipe_claim(tx, sizeof seq, &slot); /* waits while the ring is full */
        if (s != SHMPIPE_OK) break;
        memcpy(slot, &seq, sizeof seq);
        s = shmpipe_commit(tx, sizeof seq);
        if (s != SHMPIPE_OK) break;
    }
    if (s != SHMPIPE_OK) {
        fprintf(stderr, "send: %s\n", shmpipe_last_error_message());
        shmpipe_producer_free(tx);
        return 1;
    }
    return shmpipe_producer_free(tx) == SHMPIPE_OK ? 0 : 1;
}
