/*
 * The seed article's "POSIX shared memory + memcpy" example, on shmpipe.
 *
 * The original maps one page with shm_open + mmap, forks, and has the parent
 * memcpy a string in while the child memcpys it out. Nothing orders the two
 * (the child may read before the parent writes), nothing says how long the
 * data is, and a second message would overwrite the first. Here the page
 * becomes a ring: the message has a length, the child waits until it has
 * arrived (sleeping on a futex, no polling), and it learns when the parent is
 * done (SHMPIPE_DISCONNECTED) or died (SHMPIPE_PEER_DIED).
 *
 * Build and run (after `capi/install.sh`, see capi/README.md):
 *   cc -std=c99 -Wall capi/examples/parent_child.c \
 *      $(pkg-config --cflags --libs shmpipe-static) -o parent_child && ./parent_child
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmpipe.h"

static int fail(const char *what, shmpipe_status s) {
    fprintf(stderr, "%s: %s (%s)\n", what, shmpipe_status_str(s), shmpipe_last_error_message());
    return 1;
}

int main(void) {
    /* An anonymous ring (a sealed memfd) that the child inherits: no name to
       clean up. For two unrelated processes, see producer.c / consumer.c. */
    shmpipe_options opts;
    shmpipe_options_default(&opts);
    opts.capacity = 4096;
    shmpipe_pair *pair;
    shmpipe_status s = shmpipe_pair_anonymous(&opts, &pair);
    if (s != SHMPIPE_OK) return fail("shmpipe_pair_anonymous", s);

    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) { /* child: the reader */
        shmpipe_consumer *rx;
        s = shmpipe_pair_into_consumer(pair, &rx);
        if (s != SHMPIPE_OK) return fail("shmpipe_pair_into_consumer", s);
        char buf[32];
        size_t len;
        while ((s = shmpipe_recv(rx, buf, sizeof buf - 1, &len)) == SHMPIPE_OK) {
            buf[len] = '\0';
            printf("child read: %s\n", buf);
        }
        if (s != SHMPIPE_DISCONNECTED) return fail("shmpipe_recv", s);
        shmpipe_consumer_free(rx);
        return 0;
    }

    /* parent: the writer */
    shmpipe_producer *tx;
    s = shmpipe_pair_into_producer(pair, &tx);
    if (s != SHMPIPE_OK) return fail("shmpipe_pair_into_producer", s);
    s = shmpipe_send(tx, "shared data", strlen("shared data"));
    if (s != SHMPIPE_OK) return fail("shmpipe_send", s);
    shmpipe_producer_free(tx); /* the child sees the end after the message */
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
