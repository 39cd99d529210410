/*
 * Streaming through the C ABI: the parent (pinned to CPU 0) sends COUNT
 * messages of SIZE bytes with shmpipe_send, a forked child (CPU 1) receives
 * them with shmpipe_recv into a buffer; prints messages per second, measured
 * by the parent from its first send until the child has received the last.
 * The same loop through the Rust API is capi/examples/rust_stream.rs; both
 * use a 1 MiB anonymous ring with the futex strategy. Run both with
 * capi/bench/run.sh.
 *
 * With a third argument `local`, one thread sends and receives each message in
 * turn on an in-process ring: no second CPU, so the difference to the Rust
 * loop is the ABI's own per-call cost (a send plus a receive), also on a
 * machine that is not quiet.
 *
 * usage: abi_stream SIZE COUNT [local]
 */
#define _GNU_SOURCE
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmpipe.h"

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) perror("sched_setaffinity");
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int local(size_t size, uint64_t count) {
    pin(0);
    shmpipe_pair *pair;
    shmpipe_producer *p;
    shmpipe_consumer *c;
    if (shmpipe_pair_in_process(NULL, &pair) != SHMPIPE_OK) return 1;
    if (shmpipe_pair_split(pair, &p, &c) != SHMPIPE_OK) return 1;
    static uint8_t msg[65536], buf[65536];
    size_t len;
    uint64_t bytes = 0;
    double t0 = now();
    for (uint64_t i = 0; i < count; i++) {
        if (shmpipe_send(p, msg, size) != SHMPIPE_OK) return 1;
        if (shmpipe_recv(c, buf, sizeof buf, &len) != SHMPIPE_OK) return 1;
        bytes += len;
    }
    double t = now() - t0;
    shmpipe_producer_free(p);
    shmpipe_consumer_free(c);
    if (bytes != count * size) return 1;
    printf("c-abi-local size=%zu msgs/s=%.0f ns/msg=%.2f\n", size, (double)count / t, t * 1e9 / (double)count);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3 && !(argc == 4 && strcmp(argv[3], "local") == 0)) {
        fprintf(stderr, "usage: abi_stream SIZE COUNT [local]\n");
        return 2;
    }
    size_t size = strtoul(argv[1], NULL, 10);
    uint64_t count = strtoull(argv[2], NULL, 10);
    if (argc == 4) return local(size, count);
    shmpipe_pair *pair;
    if (shmpipe_pair_anonymous(NULL, &pair) != SHMPIPE_OK) {
        fprintf(stderr, "pair: %s\n", shmpipe_last_error_message());
        return 1;
    }
    uint8_t buf[65536];
    memset(buf, 7, sizeof buf);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        pin(1);
        shmpipe_consumer *c;
        if (shmpipe_pair_into_consumer(pair, &c) != SHMPIPE_OK) _exit(1);
        size_t len;
        uint64_t bytes = 0;
        for (uint64_t i = 0; i < count; i++) {
            if (shmpipe_recv(c, buf, sizeof buf, &len) != SHMPIPE_OK) _exit(1);
            bytes += len;
        }
        shmpipe_consumer_free(c);
        _exit(bytes == count * size ? 0 : 1);
    }
    pin(0);
    shmpipe_producer *p;
    if (shmpipe_pair_into_producer(pair, &p) != SHMPIPE_OK) return 1;
    double t0 = now();
    for (uint64_t i = 0; i < count; i++) {
        if (shmpipe_send(p, buf, size) != SHMPIPE_OK) {
            fprintf(stderr, "send: %s\n", shmpipe_last_error_message());
            return 1;
        }
    }
    int st;
    waitpid(pid, &st, 0);
    double t = now() - t0;
    shmpipe_producer_free(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
    printf("c-abi size=%zu msgs/s=%.0f ns/msg=%.2f\n", size, (double)count / t, t * 1e9 / (double)count);
    return 0;
}
