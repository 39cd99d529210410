/*
 * The C side of the C API tests (driven by capi/tests/c_api.rs, which builds
 * this file against libshmpipe.a and runs each subcommand):
 *
 *   capi_test stream VARIANT WAIT N   forked producer/consumer, N checksummed messages
 *   capi_test claim VARIANT           claim/commit/abort and their misuse
 *   capi_test peek VARIANT            peek/release and their misuse
 *   capi_test drain VARIANT           drain, its callback, re-entrancy
 *   capi_test errors                  every error status reachable from C
 *   capi_test peer-died VARIANT       producer killed with SIGKILL
 *   capi_test produce NAME N VARIANT  interop: create NAME, print "ready", send N messages
 *   capi_test consume NAME N VARIANT  interop: open NAME, receive and check N messages
 *
 * VARIANT is lockfree or locked; WAIT is spin, spin-yield, futex or semaphore.
 * Exit status 0 when every check passed; otherwise the failed check is
 * printed on stderr. Message i (the same generator as in c_api.rs): an 8-byte
 * little-endian sequence number, filler bytes derived from it, and a 4-byte
 * FNV-1a checksum of everything before it; 12 to 311 bytes long.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmpipe.h"

static const char *prog_cmd = "?";
static unsigned long checks;

#define EXPECT(call, want)                                                        \
    do {                                                                          \
        shmpipe_status s_ = (call);                                               \
        checks++;                                                                 \
        if (s_ != (want)) {                                                       \
            fprintf(stderr, "%s: %s:%d: %s returned %d (%s; %s), expected %s\n",   \
                    prog_cmd, __FILE__, __LINE__, #call, (int)s_,                 \
                    shmpipe_status_str(s_), shmpipe_last_error_message(), #want); \
            exit(1);                                                              \
        }                                                                         \
    } while (0)
#define OK(call) EXPECT(call, SHMPIPE_OK)
#define CHECK(cond)                                                          \
    do {                                                                     \
        checks++;                                                            \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s: %s:%d: check failed: %s\n", prog_cmd,       \
                    __FILE__, __LINE__, #cond);                              \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* ---- the message generator (mirrored in c_api.rs) ---- */

enum { MSG_MAX = 311 };

static size_t msg_len(uint64_t seq) { return 12 + (size_t)((seq * 7919u) % 300u); }

static uint32_t fnv1a(const uint8_t *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/* Fill `out` with message `seq`; returns its length. */
static size_t msg_make(uint64_t seq, uint8_t *out) {
    size_t len = msg_len(seq);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(seq >> (8 * i));
    for (size_t k = 8; k < len - 4; k++) out[k] = (uint8_t)(seq * 131u + k * 7u);
    uint32_t h = fnv1a(out, len - 4);
    for (int i = 0; i < 4; i++) out[len - 4 + i] = (uint8_t)(h >> (8 * i));
    return len;
}

/* Whether `p`/`len` is exactly message `seq`. */
static int msg_check(uint64_t seq, const uint8_t *p, size_t len) {
    uint8_t want[MSG_MAX];
    size_t n = msg_make(seq, want);
    return n == len && memcmp(want, p, len) == 0;
}

/* ---- helpers ---- */

static uint32_t parse_variant(const char *s) {
    if (strcmp(s, "lockfree") == 0) return SHMPIPE_LOCK_FREE;
    if (strcmp(s, "locked") == 0) return SHMPIPE_LOCKED;
    fprintf(stderr, "unknown variant %s (lockfree or locked)\n", s);
    exit(2);
}

static uint32_t parse_wait(const char *s) {
    if (strcmp(s, "spin") == 0) return SHMPIPE_WAIT_SPIN;
    if (strcmp(s, "spin-yield") == 0) return SHMPIPE_WAIT_SPIN_YIELD;
    if (strcmp(s, "futex") == 0) return SHMPIPE_WAIT_FUTEX;
    if (strcmp(s, "semaphore") == 0) return SHMPIPE_WAIT_SEMAPHORE;
    fprintf(stderr, "unknown wait strategy %s\n", s);
    exit(2);
}

static shmpipe_options opts_for(uint32_t variant, uint64_t capacity) {
    shmpipe_options o;
    OK(shmpipe_options_default(&o));
    o.variant = variant;
    o.capacity = capacity;
    return o;
}

static void in_process(uint32_t variant, uint64_t capacity, shmpipe_producer **p,
                       shmpipe_consumer **c) {
    shmpipe_options o = opts_for(variant, capacity);
    shmpipe_pair *pair = NULL;
    OK(shmpipe_pair_in_process(&o, &pair));
    OK(shmpipe_pair_split(pair, p, c));
}

static void unique_name(char *buf, size_t cap, const char *what) {
    static int k;
    snprintf(buf, cap, "/shmpipe-capi-%s-%d-%d", what, (int)getpid(), k++);
}

static int wait_child(pid_t pid) {
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    return st;
}

/* ---- stream: forked producer/consumer through every call kind ---- */

struct drain_ctx {
    uint64_t next;
    int bad;
};

static void drain_check(void *ctx, const void *msg, size_t len) {
    struct drain_ctx *d = (struct drain_ctx *)ctx;
    if (!msg_check(d->next, (const uint8_t *)msg, len)) d->bad = 1;
    d->next++;
}

/* The consumer half: every receive kind in turn; exits 0 if all n arrived intact. */
static void stream_consumer(shmpipe_consumer *c, uint64_t n) {
    uint8_t buf[MSG_MAX];
    struct drain_ctx d = {0, 0};
    uint64_t iter = 0;
    while (d.next < n) {
        size_t len = 0;
        const void *ptr = NULL;
        shmpipe_status s;
        switch (iter++ % 10) {
        case 6:
        case 7:
            OK(shmpipe_peek(c, &ptr, &len));
            CHECK(msg_check(d.next, (const uint8_t *)ptr, len));
            OK(shmpipe_release(c));
            d.next++;
            break;
        case 8: {
            size_t got = 0;
            uint64_t room = n - d.next;
            OK(shmpipe_drain(c, room < 8 ? (size_t)room : 8, drain_check, &d, &got));
            CHECK(!d.bad);
            break;
        }
        case 9:
            s = shmpipe_try_recv(c, buf, sizeof buf, &len);
            if (s == SHMPIPE_EMPTY) break;
            OK(s);
            CHECK(msg_check(d.next, buf, len));
            d.next++;
            break;
        default:
            OK(shmpipe_recv(c, buf, sizeof buf, &len));
            CHECK(msg_check(d.next, buf, len));
            d.next++;
        }
    }
    size_t len = 0;
    EXPECT(shmpipe_recv_timeout(c, buf, sizeof buf, &len, 10000), SHMPIPE_DISCONNECTED);
    shmpipe_stats st;
    OK(shmpipe_consumer_stats(c, &st));
    CHECK(st.messages_received == n);
    OK(shmpipe_consumer_free(c));
}

static void stream_producer(shmpipe_producer *p, uint64_t n) {
    uint8_t buf[MSG_MAX];
    for (uint64_t seq = 0; seq < n; seq++) {
        size_t len = msg_make(seq, buf);
        void *ptr = NULL;
        shmpipe_status s;
        switch (seq % 4) {
        case 2:
            OK(shmpipe_claim(p, len, &ptr));
            memcpy(ptr, buf, len);
            OK(shmpipe_commit(p, len));
            break;
        case 3:
            s = shmpipe_try_send(p, buf, len);
            if (s == SHMPIPE_FULL) s = shmpipe_send(p, buf, len);
            OK(s);
            break;
        default:
            OK(shmpipe_send(p, buf, len));
        }
    }
    shmpipe_stats st;
    OK(shmpipe_producer_stats(p, &st));
    CHECK(st.messages_sent == n);
    OK(shmpipe_producer_free(p));
}

static int cmd_stream(int argc, char **argv) {
    if (argc != 3) return 2;
    shmpipe_options o = opts_for(parse_variant(argv[0]), 1 << 16);
    o.wait = parse_wait(argv[1]);
    uint64_t n = strtoull(argv[2], NULL, 10);
    shmpipe_pair *pair = NULL;
    OK(shmpipe_pair_anonymous(&o, &pair));
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prog_cmd = "stream (consumer)";
        shmpipe_consumer *c = NULL;
        OK(shmpipe_pair_into_consumer(pair, &c));
        stream_consumer(c, n);
        _exit(0);
    }
    shmpipe_producer *p = NULL;
    OK(shmpipe_pair_into_producer(pair, &p));
    stream_producer(p, n);
    int st = wait_child(pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return 0;
}

/* ---- claim/commit/abort ---- */

struct other_thread {
    shmpipe_producer *p;
    shmpipe_status commit, abort;
};

static void *finish_elsewhere(void *arg) {
    struct other_thread *t = (struct other_thread *)arg;
    t->commit = shmpipe_commit(t->p, 1);
    t->abort = shmpipe_abort(t->p);
    return NULL;
}

static int cmd_claim(int argc, char **argv) {
    if (argc != 1) return 2;
    uint32_t variant = parse_variant(argv[0]);
    shmpipe_producer *p;
    shmpipe_consumer *c;
    in_process(variant, 4096, &p, &c);
    uint8_t buf[4096];
    size_t len = 0;
    void *ptr = NULL;
    shmpipe_stats st;

    /* Nothing to finish yet. */
    EXPECT(shmpipe_commit(p, 0), SHMPIPE_MISUSE);
    CHECK(strstr(shmpipe_last_error_message(), "no claim is open") != NULL);
    EXPECT(shmpipe_abort(p), SHMPIPE_MISUSE);

    /* Claim, misuse while it is open, commit a prefix. */
    OK(shmpipe_claim(p, 100, &ptr));
    CHECK(ptr != NULL);
    void *ptr2 = NULL;
    EXPECT(shmpipe_claim(p, 10, &ptr2), SHMPIPE_MISUSE);
    CHECK(strstr(shmpipe_last_error_message(), "a claim is open") != NULL);
    EXPECT(shmpipe_try_claim(p, 10, &ptr2), SHMPIPE_MISUSE);
    EXPECT(shmpipe_send(p, "x", 1), SHMPIPE_MISUSE);
    EXPECT(shmpipe_try_send(p, "x", 1), SHMPIPE_MISUSE);
    EXPECT(shmpipe_producer_stats(p, &st), SHMPIPE_MISUSE);
    EXPECT(shmpipe_commit(p, 101), SHMPIPE_INVALID_ARGUMENT);
    CHECK(strstr(shmpipe_last_error_message(), "at most 100") != NULL);
    if (variant == SHMPIPE_LOCKED) {
        /* The claim holds the ring's lock: only its own thread may finish it. */
        struct other_thread t = {p, SHMPIPE_OK, SHMPIPE_OK};
        pthread_t th;
        CHECK(pthread_create(&th, NULL, finish_elsewhere, &t) == 0);
        CHECK(pthread_join(th, NULL) == 0);
        CHECK(t.commit == SHMPIPE_MISUSE && t.abort == SHMPIPE_MISUSE);
    }
    memset(ptr, 'a', 50);
    OK(shmpipe_commit(p, 50));
    EXPECT(shmpipe_commit(p, 50), SHMPIPE_MISUSE);
    OK(shmpipe_try_recv(c, buf, sizeof buf, &len));
    CHECK(len == 50 && buf[0] == 'a' && buf[49] == 'a');

    /* Abort: nothing arrives, the producer works again. */
    OK(shmpipe_try_claim(p, 10, &ptr));
    memset(ptr, 'b', 10);
    OK(shmpipe_abort(p));
    EXPECT(shmpipe_try_recv(c, buf, sizeof buf, &len), SHMPIPE_EMPTY);
    OK(shmpipe_send(p, "after", 5));
    OK(shmpipe_try_recv(c, buf, sizeof buf, &len));
    CHECK(len == 5 && memcmp(buf, "after", 5) == 0);

    /* An empty claim is an empty message; a timed claim. */
    OK(shmpipe_claim_timeout(p, 0, 100, &ptr));
    OK(shmpipe_commit(p, 0));
    OK(shmpipe_try_recv(c, buf, sizeof buf, &len));
    CHECK(len == 0);

    /* Limits, and claims that cannot be made. */
    size_t max = 0;
    uint64_t cap = 0;
    OK(shmpipe_producer_limits(p, &max, &cap));
    CHECK(max == 2040 && cap == 4096);
    EXPECT(shmpipe_claim(p, max + 1, &ptr), SHMPIPE_TOO_LARGE);
    OK(shmpipe_claim(p, max, &ptr));
    memset(ptr, 'c', max);
    OK(shmpipe_commit(p, max));
    OK(shmpipe_try_recv(c, buf, sizeof buf, &len));
    CHECK(len == max && buf[max - 1] == 'c');
    int sent = 0;
    shmpipe_status s;
    while ((s = shmpipe_try_send(p, buf, 100)) == SHMPIPE_OK) sent++;
    EXPECT(s, SHMPIPE_FULL);
    EXPECT(shmpipe_try_claim(p, 100, &ptr), SHMPIPE_FULL);
    EXPECT(shmpipe_claim_timeout(p, 100, 20, &ptr), SHMPIPE_TIMEOUT);
    OK(shmpipe_producer_stats(p, &st)); /* a failed claim left no claim open */
    CHECK(st.messages_sent == 4 + (uint64_t)sent);
    for (int i = 0; i < sent; i++) OK(shmpipe_try_recv(c, buf, sizeof buf, &len));

    /* Freeing with a claim open aborts it, then closes. */
    OK(shmpipe_claim(p, 8, &ptr));
    memset(ptr, 'd', 8);
    OK(shmpipe_producer_free(p));
    EXPECT(shmpipe_try_recv(c, buf, sizeof buf, &len), SHMPIPE_DISCONNECTED);
    OK(shmpipe_consumer_free(c));
    return 0;
}

/* ---- peek/release ---- */

static int cmd_peek(int argc, char **argv) {
    if (argc != 1) return 2;
    uint32_t variant = parse_variant(argv[0]);
    char name[96];
    unique_name(name, sizeof name, "peek");
    shmpipe_options o = opts_for(variant, 4096);
    shmpipe_producer *p = NULL;
    shmpipe_consumer *c = NULL;
    OK(shmpipe_producer_create(name, &o, &p));
    OK(shmpipe_consumer_open(name, &o, &c));
    const void *ptr = NULL;
    size_t len = 0;
    uint8_t buf[64];
    shmpipe_stats st;

    EXPECT(shmpipe_release(c), SHMPIPE_MISUSE);
    CHECK(strstr(shmpipe_last_error_message(), "no message is peeked") != NULL);
    EXPECT(shmpipe_try_peek(c, &ptr, &len), SHMPIPE_EMPTY);
    EXPECT(shmpipe_peek_timeout(c, &ptr, &len, 20), SHMPIPE_TIMEOUT);
    EXPECT(shmpipe_release(c), SHMPIPE_MISUSE); /* a failed peek peeks nothing */

    OK(shmpipe_send(p, "one", 3));
    OK(shmpipe_send(p, "two!", 4));
    OK(shmpipe_send(p, "three", 5));
    OK(shmpipe_peek(c, &ptr, &len));
    CHECK(len == 3 && memcmp(ptr, "one", 3) == 0);
    const void *ptr2 = NULL;
    size_t len2 = 0;
    EXPECT(shmpipe_try_peek(c, &ptr2, &len2), SHMPIPE_MISUSE);
    CHECK(strstr(shmpipe_last_error_message(), "shmpipe_release it first") != NULL);
    EXPECT(shmpipe_try_recv(c, buf, sizeof buf, &len2), SHMPIPE_MISUSE);
    EXPECT(shmpipe_consumer_stats(c, &st), SHMPIPE_MISUSE);
    size_t n = 0;
    EXPECT(shmpipe_drain(c, 10, drain_check, NULL, &n), SHMPIPE_MISUSE);
    CHECK(memcmp(ptr, "one", 3) == 0); /* still readable */
    OK(shmpipe_release(c));
    EXPECT(shmpipe_release(c), SHMPIPE_MISUSE);
    OK(shmpipe_peek_timeout(c, &ptr, &len, 1000));
    CHECK(len == 4 && memcmp(ptr, "two!", 4) == 0);
    OK(shmpipe_release(c));
    OK(shmpipe_consumer_stats(c, &st));
    CHECK(st.messages_received == 2);

    /* Freeing a consumer with a message peeked keeps the message. */
    OK(shmpipe_try_peek(c, &ptr, &len));
    CHECK(len == 5 && memcmp(ptr, "three", 5) == 0);
    OK(shmpipe_consumer_free(c));
    OK(shmpipe_consumer_open(name, &o, &c));
    OK(shmpipe_try_recv(c, buf, sizeof buf, &len));
    CHECK(len == 5 && memcmp(buf, "three", 5) == 0);
    EXPECT(shmpipe_try_peek(c, &ptr, &len), SHMPIPE_EMPTY);

    /* A peek sees the end of the stream like a receive. */
    OK(shmpipe_producer_free(p));
    EXPECT(shmpipe_peek(c, &ptr, &len), SHMPIPE_DISCONNECTED);
    OK(shmpipe_consumer_free(c));
    EXPECT(shmpipe_remove(name), SHMPIPE_NOT_FOUND); /* the creator unlinked it */
    return 0;
}

/* ---- drain ---- */

struct reentry {
    shmpipe_consumer *c;
    shmpipe_producer *p; /* NULL: do not send from the callback */
    int calls;
    shmpipe_status recv, free_, send;
};

static void reenter(void *ctx, const void *msg, size_t len) {
    struct reentry *r = (struct reentry *)ctx;
    uint8_t buf[16];
    size_t n = 0;
    (void)msg;
    (void)len;
    r->calls++;
    r->recv = shmpipe_try_recv(r->c, buf, sizeof buf, &n);
    r->free_ = shmpipe_consumer_free(r->c);
    if (r->p) r->send = shmpipe_try_send(r->p, "re", 2);
}

static int cmd_drain(int argc, char **argv) {
    if (argc != 1) return 2;
    uint32_t variant = parse_variant(argv[0]);
    shmpipe_producer *p;
    shmpipe_consumer *c;
    in_process(variant, 1 << 16, &p, &c);
    uint8_t buf[MSG_MAX];
    size_t n = 99;

    OK(shmpipe_drain(c, 10, drain_check, NULL, &n)); /* empty: nothing, not an error */
    CHECK(n == 0);
    for (uint64_t seq = 0; seq < 10; seq++) OK(shmpipe_send(p, buf, msg_make(seq, buf)));
    struct drain_ctx d = {0, 0};
    OK(shmpipe_drain(c, 0, drain_check, &d, &n));
    CHECK(n == 0 && d.next == 0);
    OK(shmpipe_drain(c, 4, drain_check, &d, &n));
    CHECK(n == 4 && d.next == 4 && !d.bad);
    OK(shmpipe_drain(c, 100, drain_check, &d, &n));
    CHECK(n == 6 && d.next == 10 && !d.bad);
    shmpipe_stats st;
    OK(shmpipe_consumer_stats(c, &st));
    CHECK(st.messages_received == 10 && st.used_bytes == 0);

    /* Calls on the drained consumer from its callback are refused. In the
       lock-free ring the callback may use the producer of the same ring (the
       locked ring holds its lock during the callbacks, so it is not tried). */
    OK(shmpipe_send(p, "x", 1));
    struct reentry r = {c, variant == SHMPIPE_LOCK_FREE ? p : NULL, 0, SHMPIPE_OK, SHMPIPE_OK,
                        SHMPIPE_OK};
    OK(shmpipe_drain(c, 1, reenter, &r, &n));
    CHECK(n == 1 && r.calls == 1);
    CHECK(r.recv == SHMPIPE_MISUSE && r.free_ == SHMPIPE_MISUSE);
    CHECK(strstr(shmpipe_last_error_message(), "already in a call") != NULL);
    if (r.p) {
        CHECK(r.send == SHMPIPE_OK);
        size_t len = 0;
        OK(shmpipe_try_recv(c, buf, sizeof buf, &len));
        CHECK(len == 2 && memcmp(buf, "re", 2) == 0);
    }

    OK(shmpipe_producer_free(p));
    EXPECT(shmpipe_drain(c, 10, drain_check, &d, &n), SHMPIPE_DISCONNECTED);
    CHECK(n == 0);
    OK(shmpipe_consumer_free(c));
    return 0;
}

/* ---- errors ---- */

/* Map the segment file `name` (in /dev/shm) and run `poke` on its first bytes. */
static void poke_header(const char *name, void (*poke)(uint8_t *)) {
    int fd = shm_open(name, O_RDWR, 0);
    CHECK(fd >= 0);
    uint8_t *h = (uint8_t *)mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(h != MAP_FAILED);
    CHECK(memcmp(h, "SHMPIPE", 8) == 0); /* magic u64 @0, version u32 @8 (DESIGN.md) */
    poke(h);
    munmap(h, 4096);
    close(fd);
}

static void bad_version(uint8_t *h) {
    uint32_t v = 0xffff;
    memcpy(h + 8, &v, 4);
}

static void bad_header_size(uint8_t *h) {
    uint64_t v = 12345; /* header_size u64 @32 */
    memcpy(h + 32, &v, 8);
}

static int cmd_errors(void) {
    shmpipe_options o = opts_for(SHMPIPE_LOCK_FREE, 4096);
    shmpipe_producer *p = NULL;
    shmpipe_consumer *c = NULL;
    shmpipe_pair *pair = NULL;
    uint8_t buf[4096];
    size_t len = 0;
    void *ptr = NULL;
    shmpipe_stats st;
    char name[96];

    /* Static strings. */
    CHECK(strcmp(shmpipe_status_str(SHMPIPE_OK), "success") == 0);
    CHECK(strcmp(shmpipe_status_str(9999), "unknown status") == 0);
    CHECK(strcmp(shmpipe_status_str(-1), "unknown status") == 0);
    CHECK(strlen(shmpipe_status_str(SHMPIPE_BUFFER_TOO_SMALL)) > 10);
    CHECK(strlen(shmpipe_version()) >= 5);

    /* Bad names. */
    EXPECT(shmpipe_producer_create("noslash", &o, &p), SHMPIPE_INVALID_NAME);
    CHECK(p == NULL);
    CHECK(strstr(shmpipe_last_error_message(), "noslash") != NULL);
    EXPECT(shmpipe_consumer_create("/a/b", &o, &c), SHMPIPE_INVALID_NAME);
    EXPECT(shmpipe_producer_open("", &o, &p), SHMPIPE_INVALID_NAME);
    EXPECT(shmpipe_validate_name("/.."), SHMPIPE_INVALID_NAME);
    EXPECT(shmpipe_validate_name("/\xff"), SHMPIPE_INVALID_NAME); /* not UTF-8 */
    OK(shmpipe_validate_name("/fine"));

    /* Bad capacities and options. */
    o.capacity = 100;
    EXPECT(shmpipe_pair_anonymous(&o, &pair), SHMPIPE_INVALID_CAPACITY);
    CHECK(pair == NULL);
    CHECK(strstr(shmpipe_last_error_message(), "power of two") != NULL);
    o.capacity = 0;
    EXPECT(shmpipe_pair_in_process(&o, &pair), SHMPIPE_INVALID_CAPACITY);
    o.capacity = SHMPIPE_MAX_CAPACITY * 2;
    unique_name(name, sizeof name, "cap");
    EXPECT(shmpipe_producer_create(name, &o, &p), SHMPIPE_INVALID_CAPACITY);
    o = opts_for(SHMPIPE_LOCK_FREE, 4096);
    o.wait = 9;
    EXPECT(shmpipe_pair_in_process(&o, &pair), SHMPIPE_INVALID_OPTION);
    CHECK(strstr(shmpipe_last_error_message(), "wait strategy code 9") != NULL);
    o.wait = SHMPIPE_WAIT_FUTEX;
    o.variant = 0;
    EXPECT(shmpipe_pair_in_process(&o, &pair), SHMPIPE_INVALID_OPTION);
    o.variant = SHMPIPE_LOCK_FREE;
    CHECK(shmpipe_max_message_for(4096) == 2040 && shmpipe_max_message_for(8) == 0);

    /* NULL pointers. */
    EXPECT(shmpipe_options_default(NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_producer_create(NULL, &o, &p), SHMPIPE_NULL_POINTER);
    CHECK(strstr(shmpipe_last_error_message(), "`name`") != NULL);
    EXPECT(shmpipe_consumer_open("/x", &o, NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_pair_in_process(&o, NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_send(NULL, "x", 1), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_try_recv(NULL, buf, 1, &len), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_release(NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_commit(NULL, 0), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_pair_into_producer(NULL, &p), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_remove(NULL), SHMPIPE_NULL_POINTER);
    OK(shmpipe_producer_free(NULL));
    OK(shmpipe_consumer_free(NULL));
    OK(shmpipe_pair_free(NULL));
    in_process(SHMPIPE_LOCK_FREE, 4096, &p, &c);
    EXPECT(shmpipe_send(p, NULL, 5), SHMPIPE_NULL_POINTER);
    CHECK(strstr(shmpipe_last_error_message(), "`buf`") != NULL);
    EXPECT(shmpipe_claim(p, 5, NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_producer_stats(p, NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_try_recv(c, buf, sizeof buf, NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_try_recv(c, NULL, 10, &len), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_drain(c, 1, NULL, NULL, &len), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_drain(c, 1, drain_check, NULL, NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_try_peek(c, NULL, &len), SHMPIPE_NULL_POINTER);
    OK(shmpipe_send(p, NULL, 0)); /* an empty message needs no buffer */
    OK(shmpipe_try_recv(c, NULL, 0, &len));
    CHECK(len == 0);

    /* Too large, full, timeouts, empty. */
    EXPECT(shmpipe_send(p, buf, 2041), SHMPIPE_TOO_LARGE);
    CHECK(strstr(shmpipe_last_error_message(), "at most 2040") != NULL);
    EXPECT(shmpipe_try_send(p, buf, 2041), SHMPIPE_TOO_LARGE);
    EXPECT(shmpipe_try_recv(c, buf, sizeof buf, &len), SHMPIPE_EMPTY);
    EXPECT(shmpipe_recv_timeout(c, buf, sizeof buf, &len, 20), SHMPIPE_TIMEOUT);
    CHECK(strcmp(shmpipe_last_error_message(), shmpipe_status_str(SHMPIPE_TIMEOUT)) == 0);
    int sent = 0;
    shmpipe_status s;
    while ((s = shmpipe_try_send(p, buf, 100)) == SHMPIPE_OK) sent++;
    EXPECT(s, SHMPIPE_FULL);
    CHECK(sent == 4096 / 112);
    EXPECT(shmpipe_send_timeout(p, buf, 100, 20), SHMPIPE_TIMEOUT);
    OK(shmpipe_producer_stats(p, &st));
    CHECK(st.used_bytes == (uint64_t)sent * 112 && st.messages_sent == (uint64_t)sent + 1);
    CHECK(st.producer_state == SHMPIPE_ENDPOINT_ATTACHED);
    CHECK(st.consumer_state == SHMPIPE_ENDPOINT_ATTACHED);
    uint32_t peer = 99;
    OK(shmpipe_producer_peer_state(p, &peer));
    CHECK(peer == SHMPIPE_PEER_STATE_ALIVE);
    for (int i = 0; i < sent; i++) OK(shmpipe_try_recv(c, buf, sizeof buf, &len));

    /* Buffer too small: *len is the size needed, the message stays. */
    OK(shmpipe_send(p, "0123456789", 10));
    EXPECT(shmpipe_try_recv(c, buf, 4, &len), SHMPIPE_BUFFER_TOO_SMALL);
    CHECK(len == 10);
    CHECK(strstr(shmpipe_last_error_message(), "at least 10 bytes") != NULL);
    EXPECT(shmpipe_recv(c, NULL, 0, &len), SHMPIPE_BUFFER_TOO_SMALL);
    CHECK(len == 10);
    OK(shmpipe_recv_timeout(c, buf, 10, &len, 1000));
    CHECK(len == 10 && memcmp(buf, "0123456789", 10) == 0);

    /* Disconnected, both ways. */
    OK(shmpipe_send(p, "last", 4));
    OK(shmpipe_producer_free(p));
    OK(shmpipe_consumer_peer_state(c, &peer));
    CHECK(peer == SHMPIPE_PEER_STATE_CLOSED);
    OK(shmpipe_try_recv(c, buf, sizeof buf, &len)); /* drained before the end */
    CHECK(len == 4);
    EXPECT(shmpipe_try_recv(c, buf, sizeof buf, &len), SHMPIPE_DISCONNECTED);
    EXPECT(shmpipe_recv(c, buf, sizeof buf, &len), SHMPIPE_DISCONNECTED);
    OK(shmpipe_consumer_free(c));
    in_process(SHMPIPE_LOCKED, 4096, &p, &c);
    OK(shmpipe_consumer_free(c));
    EXPECT(shmpipe_send(p, "x", 1), SHMPIPE_DISCONNECTED);
    EXPECT(shmpipe_claim(p, 1, &ptr), SHMPIPE_DISCONNECTED);
    OK(shmpipe_producer_free(p));

    /* Named segments: not found, exists, role taken, wrong variant,
       permissions, foreign objects. */
    unique_name(name, sizeof name, "named");
    EXPECT(shmpipe_producer_open(name, &o, &p), SHMPIPE_NOT_FOUND);
    CHECK(shmpipe_last_os_error() == ENOENT);
    EXPECT(shmpipe_remove(name), SHMPIPE_NOT_FOUND);
    OK(shmpipe_producer_create(name, &o, &p));
    EXPECT(shmpipe_consumer_create(name, &o, &c), SHMPIPE_ALREADY_EXISTS);
    CHECK(shmpipe_last_os_error() == EEXIST);
    CHECK(strstr(shmpipe_last_error_message(), "already exists") != NULL);
    CHECK(strstr(shmpipe_last_error_message(), name) != NULL);
    shmpipe_producer *p2 = NULL;
    EXPECT(shmpipe_producer_open(name, &o, &p2), SHMPIPE_ROLE_TAKEN);
    o.variant = SHMPIPE_LOCKED;
    EXPECT(shmpipe_consumer_open(name, &o, &c), SHMPIPE_WRONG_VARIANT);
    o.variant = SHMPIPE_LOCK_FREE;
    OK(shmpipe_consumer_open(name, &o, &c));
    OK(shmpipe_consumer_free(c));
    OK(shmpipe_producer_free(p));

    unique_name(name, sizeof name, "perm");
    o.mode = 0644;
    o.unlink_on_drop = 0;
    OK(shmpipe_producer_create(name, &o, &p));
    o.mode = 0600;
    EXPECT(shmpipe_consumer_open(name, &o, &c), SHMPIPE_UNSAFE_PERMISSIONS);
    o.allow_shared_permissions = 1;
    OK(shmpipe_consumer_open(name, &o, &c));
    o.allow_shared_permissions = 0;
    OK(shmpipe_consumer_free(c));
    OK(shmpipe_producer_free(p));
    poke_header(name, bad_version);
    o.allow_shared_permissions = 1; /* the segment is 0644 */
    EXPECT(shmpipe_consumer_open(name, &o, &c), SHMPIPE_VERSION_MISMATCH);
    CHECK(strstr(shmpipe_last_error_message(), name) != NULL);
    CHECK(shmpipe_last_os_error() == 0);
    o.allow_shared_permissions = 0;
    OK(shmpipe_remove(name));

    unique_name(name, sizeof name, "hdr");
    o.unlink_on_drop = 0;
    OK(shmpipe_producer_create(name, &o, &p));
    OK(shmpipe_producer_free(p));
    poke_header(name, bad_header_size);
    EXPECT(shmpipe_producer_open(name, &o, &p), SHMPIPE_CORRUPTED);
    CHECK(strstr(shmpipe_last_error_message(), "header size") != NULL);
    OK(shmpipe_remove(name));
    o.unlink_on_drop = 1;

    unique_name(name, sizeof name, "foreign");
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    CHECK(fd >= 0);
    o.open_timeout_ms = 30;
    EXPECT(shmpipe_consumer_open(name, &o, &c), SHMPIPE_NOT_INITIALIZED); /* size 0 */
    CHECK(write(fd, "not a ring", 10) == 10);
    EXPECT(shmpipe_consumer_open(name, &o, &c), SHMPIPE_SIZE_MISMATCH);
    memset(buf, 0x5a, sizeof buf);
    CHECK(pwrite(fd, buf, sizeof buf, 0) == (ssize_t)sizeof buf);
    EXPECT(shmpipe_consumer_open(name, &o, &c), SHMPIPE_NOT_SHMPIPE);
    CHECK(strstr(shmpipe_last_error_message(), name) != NULL);
    close(fd);
    OK(shmpipe_remove(name));

    /* An OS error keeps its errno and names the segment: a symlink in
       /dev/shm is refused by shm_open(O_NOFOLLOW) with ELOOP. */
    unique_name(name, sizeof name, "link");
    char path[300];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    CHECK(symlink("/dev/null", path) == 0);
    EXPECT(shmpipe_consumer_open(name, &o, &c), SHMPIPE_IO);
    CHECK(shmpipe_last_os_error() == ELOOP);
    CHECK(strstr(shmpipe_last_error_message(), name) != NULL);
    CHECK(unlink(path) == 0);
    return 0;
}

/* ---- peer died ---- */

static int cmd_peer_died(int argc, char **argv) {
    if (argc != 1) return 2;
    uint32_t variant = parse_variant(argv[0]);
    shmpipe_options o = opts_for(variant, 4096);
    shmpipe_pair *pair = NULL;
    OK(shmpipe_pair_anonymous(&o, &pair));
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        /* Send three, open a claim (locked: holding the lock), then wait to be killed. */
        shmpipe_producer *p = NULL;
        OK(shmpipe_pair_into_producer(pair, &p));
        for (int i = 0; i < 3; i++) OK(shmpipe_send(p, "alive", 5));
        void *ptr = NULL;
        OK(shmpipe_claim(p, 16, &ptr));
        memset(ptr, 'z', 16);
        CHECK(write(ready[1], "r", 1) == 1);
        for (;;) pause();
    }
    shmpipe_consumer *c = NULL;
    OK(shmpipe_pair_into_consumer(pair, &c));
    char r;
    CHECK(read(ready[0], &r, 1) == 1);
    uint32_t peer = 0;
    OK(shmpipe_consumer_peer_state(c, &peer));
    CHECK(peer == SHMPIPE_PEER_STATE_ALIVE);
    CHECK(kill(pid, SIGKILL) == 0);
    int st = wait_child(pid);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    uint8_t buf[64];
    size_t len = 0;
    for (int i = 0; i < 3; i++) {
        OK(shmpipe_recv_timeout(c, buf, sizeof buf, &len, 5000));
        CHECK(len == 5 && memcmp(buf, "alive", 5) == 0);
    }
    EXPECT(shmpipe_recv_timeout(c, buf, sizeof buf, &len, 5000), SHMPIPE_PEER_DIED);
    EXPECT(shmpipe_try_recv(c, buf, sizeof buf, &len), SHMPIPE_PEER_DIED);
    OK(shmpipe_consumer_peer_state(c, &peer));
    CHECK(peer == SHMPIPE_PEER_STATE_DIED);
    shmpipe_stats s;
    OK(shmpipe_consumer_stats(c, &s));
    CHECK(s.messages_received == 3);
    if (variant == SHMPIPE_LOCKED) CHECK(s.lock_repairs >= 1);
    OK(shmpipe_consumer_free(c));
    return 0;
}

/* ---- interoperation with Rust processes ---- */

static int cmd_produce(int argc, char **argv) {
    if (argc != 3) return 2;
    shmpipe_options o = opts_for(parse_variant(argv[2]), 1 << 16);
    o.unlink_on_drop = 0; /* the reader removes it */
    uint64_t n = strtoull(argv[1], NULL, 10);
    shmpipe_producer *p = NULL;
    OK(shmpipe_producer_create(argv[0], &o, &p));
    printf("ready\n");
    fflush(stdout);
    uint8_t buf[MSG_MAX];
    for (uint64_t seq = 0; seq < n; seq++) {
        size_t len = msg_make(seq, buf);
        if (seq % 2) {
            void *ptr = NULL;
            OK(shmpipe_claim(p, len, &ptr));
            memcpy(ptr, buf, len);
            OK(shmpipe_commit(p, len));
        } else {
            OK(shmpipe_send_timeout(p, buf, len, 30000));
        }
    }
    OK(shmpipe_producer_free(p));
    return 0;
}

static int cmd_consume(int argc, char **argv) {
    if (argc != 3) return 2;
    shmpipe_options o = opts_for(parse_variant(argv[2]), 1 << 16);
    uint64_t n = strtoull(argv[1], NULL, 10);
    shmpipe_consumer *c = NULL;
    OK(shmpipe_consumer_open(argv[0], &o, &c));
    uint8_t buf[MSG_MAX];
    for (uint64_t seq = 0; seq < n; seq++) {
        size_t len = 0;
        OK(shmpipe_recv_timeout(c, buf, sizeof buf, &len, 30000));
        CHECK(msg_check(seq, buf, len));
    }
    size_t len = 0;
    EXPECT(shmpipe_recv_timeout(c, buf, sizeof buf, &len, 30000), SHMPIPE_DISCONNECTED);
    OK(shmpipe_consumer_free(c));
    return 0;
}

/* ---- wait sets: many rings, one wait, one fd ---- */

struct late_send {
    shmpipe_producer *p;
    const char *msg;
};

static void *send_later(void *arg) {
    struct late_send *l = arg;
    usleep(30 * 1000);
    OK(shmpipe_send(l->p, l->msg, strlen(l->msg)));
    return NULL;
}

/* Wait once (timeout_ms) and expect exactly one event, for `token`. */
static void expect_one(shmpipe_waitset *ws, int64_t timeout_ms, uint64_t token, uint32_t gone) {
    shmpipe_event ev[4];
    size_t n = 99;
    OK(shmpipe_waitset_wait(ws, ev, 4, timeout_ms, &n));
    CHECK(n == 1);
    CHECK(ev[0].token == token);
    CHECK(ev[0].peer_gone == gone);
}

static void expect_none(shmpipe_waitset *ws) {
    shmpipe_event ev[4];
    size_t n = 99;
    OK(shmpipe_waitset_wait(ws, ev, 4, 0, &n));
    CHECK(n == 0);
}

static int cmd_waitset(int argc, char **argv) {
    if (argc != 1) return 2;
    uint32_t variant = parse_variant(argv[0]);
    shmpipe_waitset *ws = NULL;
    shmpipe_status st = shmpipe_waitset_new(&ws);
    if (st == SHMPIPE_IO && strstr(shmpipe_last_error_message(), "5.16")) {
        fprintf(stderr, "SKIPPED: %s\n", shmpipe_last_error_message());
        return 0;
    }
    OK(st);
    shmpipe_producer *p1, *p2;
    shmpipe_consumer *c1, *c2;
    in_process(variant, 4096, &p1, &c1);
    in_process(variant, 4096, &p2, &c2);
    uint64_t t1, t2, t3;
    OK(shmpipe_waitset_add_consumer(ws, c1, &t1));
    OK(shmpipe_waitset_add_consumer(ws, c2, &t2));
    OK(shmpipe_waitset_add_producer(ws, p2, 8, &t3));
    CHECK(t1 != t2 && t2 != t3 && t1 != t3);
    /* Level-triggered: the producer of an empty ring has room, every time. */
    expect_one(ws, 0, t3, 0);
    expect_one(ws, 0, t3, 0);
    uint32_t removed = 7;
    OK(shmpipe_waitset_remove(ws, t3, &removed));
    CHECK(removed == 1);
    OK(shmpipe_waitset_remove(ws, t3, &removed));
    CHECK(removed == 0);
    expect_none(ws);

    /* A message on ring 1: ready until received. */
    char buf[64];
    size_t len = 0;
    OK(shmpipe_send(p1, "one", 3));
    expect_one(ws, 1000, t1, 0);
    expect_one(ws, 0, t1, 0);
    OK(shmpipe_try_recv(c1, buf, sizeof buf, &len));
    CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
    expect_none(ws);

    /* A blocking wait (no timeout) woken by a send from another thread. */
    pthread_t th;
    struct late_send l1 = {p1, "two"};
    CHECK(pthread_create(&th, NULL, send_later, &l1) == 0);
    expect_one(ws, -1, t1, 0);
    CHECK(pthread_join(th, NULL) == 0);
    OK(shmpipe_try_recv(c1, buf, sizeof buf, &len));
    CHECK(len == 3 && memcmp(buf, "two", 3) == 0);

    /* The fd: not readable while idle, readable after a send, re-armed by
       collecting the events. */
    int fd = -1;
    OK(shmpipe_waitset_fd(ws, &fd));
    CHECK(fd >= 0);
    struct pollfd pf = {fd, POLLIN, 0};
    CHECK(poll(&pf, 1, 50) == 0);
    struct late_send l2 = {p2, "three"};
    CHECK(pthread_create(&th, NULL, send_later, &l2) == 0);
    CHECK(poll(&pf, 1, 10000) == 1 && (pf.revents & POLLIN));
    CHECK(pthread_join(th, NULL) == 0);
    expect_one(ws, 0, t2, 0);
    OK(shmpipe_try_recv(c2, buf, sizeof buf, &len));
    CHECK(len == 5 && memcmp(buf, "three", 5) == 0);
    expect_none(ws);

    /* A closed producer is reported as gone. */
    OK(shmpipe_producer_free(p1));
    expect_one(ws, 5000, t1, 1);
    EXPECT(shmpipe_try_recv(c1, buf, sizeof buf, &len), SHMPIPE_DISCONNECTED);

    /* Bad arguments. */
    shmpipe_event ev;
    size_t n;
    EXPECT(shmpipe_waitset_wait(NULL, &ev, 1, 0, &n), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_waitset_wait(ws, NULL, 1, 0, &n), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_waitset_wait(ws, &ev, 1, 0, NULL), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_waitset_add_consumer(ws, NULL, &t1), SHMPIPE_NULL_POINTER);
    EXPECT(shmpipe_waitset_add_producer(ws, p2, 1u << 20, &t3), SHMPIPE_TOO_LARGE);
    shmpipe_options so = opts_for(variant, 4096);
    so.wait = SHMPIPE_WAIT_SEMAPHORE;
    shmpipe_pair *pair = NULL;
    shmpipe_producer *ps;
    shmpipe_consumer *cs;
    OK(shmpipe_pair_in_process(&so, &pair));
    OK(shmpipe_pair_split(pair, &ps, &cs));
    EXPECT(shmpipe_waitset_add_consumer(ws, cs, &t1), SHMPIPE_INVALID_OPTION);
    OK(shmpipe_waitset_free(NULL));

    OK(shmpipe_waitset_free(ws));
    OK(shmpipe_producer_free(ps));
    OK(shmpipe_consumer_free(cs));
    OK(shmpipe_producer_free(p2));
    OK(shmpipe_consumer_free(c1));
    OK(shmpipe_consumer_free(c2));
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: capi_test stream|claim|peek|drain|errors|peer-died|produce|consume|waitset ...\n");
        return 2;
    }
    prog_cmd = argv[1];
    int rc = 2;
    if (strcmp(argv[1], "stream") == 0) rc = cmd_stream(argc - 2, argv + 2);
    else if (strcmp(argv[1], "claim") == 0) rc = cmd_claim(argc - 2, argv + 2);
    else if (strcmp(argv[1], "peek") == 0) rc = cmd_peek(argc - 2, argv + 2);
    else if (strcmp(argv[1], "drain") == 0) rc = cmd_drain(argc - 2, argv + 2);
    else if (strcmp(argv[1], "errors") == 0) rc = cmd_errors();
    else if (strcmp(argv[1], "peer-died") == 0) rc = cmd_peer_died(argc - 2, argv + 2);
    else if (strcmp(argv[1], "produce") == 0) rc = cmd_produce(argc - 2, argv + 2);
    else if (strcmp(argv[1], "consume") == 0) rc = cmd_consume(argc - 2, argv + 2);
    else if (strcmp(argv[1], "waitset") == 0) rc = cmd_waitset(argc - 2, argv + 2);
    if (rc == 2) {
        fprintf(stderr, "capi_test: bad arguments for %s\n", argv[1]);
        return 2;
    }
    fprintf(stderr, "capi_test %s: %lu checks passed\n", argv[1], checks);
    return rc;
}
