/*
 * Consumer half of the two-process demo (see producer.c): creates the ring
 * NAME, receives until the producer closes it, checks that the sequence
 * numbers arrive in order, and prints how many arrived.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shmpipe.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: consumer NAME\n");
        return 2;
    }
    shmpipe_options opts;
    shmpipe_options_default(&opts);
    opts.capacity = 1 << 16;
    shmpipe_consumer *rx;
    shmpipe_status s = shmpipe_consumer_create(argv[1], &opts, &rx);
    if (s != SHMPIPE_OK) {
        fprintf(stderr, "create %s: %s\n", argv[1], shmpipe_last_error_message());
        return 2;
    }
    uint64_t n = 0, seq;
    size_t len;
    while ((s = shmpipe_recv(rx, &seq, sizeof seq, &len)) == SHMPIPE_OK) {
        if (len != sizeof seq || seq != n) {
            fprintf(stderr, "message %llu is wrong\n", (unsigned long long)n);
            return 1;
        }
        n++;
    }
    if (s != SHMPIPE_DISCONNECTED) {
        fprintf(stderr, "recv: %s\n", shmpipe_last_error_message());
        return 1;
    }
    printf("received %llu messages\n", (unsigned long long)n);
    shmpipe_consumer_free(rx); /* the creator removes the name */
    return 0;
}
