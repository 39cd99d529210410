"""Two processes: streams in order through named rings, pipe() across
os.fork() and multiprocessing, lazy roles, a SIGKILLed producer."""

import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

import shmpipe
from conftest import check_payload, payload, run_python

N = 200_000

PRODUCER = r"""
import sys, shmpipe
name, n = sys.argv[1], int(sys.argv[2])
p = shmpipe.open_producer(name, timeout=30)
for i in range(n):
    p.send(i.to_bytes(8, "little") + bytes([i & 0xFF]) * (i % 256))
p.close()
"""


@pytest.mark.parametrize("variant", ["lockfree", "locked"])
def test_named_ring_200k_in_order(variant, name):
    c = shmpipe.create_consumer(name, capacity=64 * 1024, variant=variant)
    child = run_python(PRODUCER, name, N)
    try:
        count = 0
        for msg in c:  # ends when the producer closes
            check_payload(count, msg)
            count += 1
        assert count == N
    finally:
        child.wait(timeout=60)
    assert child.returncode == 0
    assert c.stats()["messages_received"] == N


def _wait_child(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_pipe_across_fork_200k_in_order():
    p, c = shmpipe.pipe(capacity=64 * 1024)
    pid = os.fork()
    if pid == 0:  # child: the producer
        code = 1
        try:
            c.close()  # never used here: the parent's consumer is unaffected
            for i in range(N):
                p.send(payload(i))
            p.close()
            code = 0
        finally:
            os._exit(code)
    p.close()  # never used in the parent: the stream must go on
    count = 0
    for msg in c:
        check_payload(count, msg)
        count += 1
    assert count == N
    assert _wait_child(pid) == 0


def test_pipe_consumer_in_child():
    p, c = shmpipe.pipe(capacity=4096)
    pid = os.fork()
    if pid == 0:  # child: the consumer
        code = 1
        try:
            del p  # dropped unused
            got = [m for m in c]
            code = 0 if got == [payload(i) for i in range(1000)] else 2
        finally:
            os._exit(code)
    del c  # dropped unused in the parent
    for i in range(1000):
        p.send(payload(i))
    p.close()
    assert _wait_child(pid) == 0


def _mp_producer(p, n):
    for i in range(n):
        p.send(payload(i))
    p.close()


def test_pipe_with_multiprocessing_fork():
    ctx = multiprocessing.get_context("fork")
    p, c = shmpipe.pipe(capacity=16 * 1024)
    proc = ctx.Process(target=_mp_producer, args=(p, 20_000))
    proc.start()
    p.close()
    got = 0
    for msg in c:
        check_payload(got, msg)
        got += 1
    proc.join(timeout=60)
    assert proc.exitcode == 0
    assert got == 20_000


def test_end_used_before_fork_is_refused_in_child():
    p, c = shmpipe.pipe(capacity=4096)
    p.send(b"attached in the parent")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            p.send(b"from the child")
            os.write(w, b"no error")
        except shmpipe.Error as e:
            os.write(w, str(e).encode())
        finally:
            del p  # dropping the inherited end must not close the role
            os._exit(0)
    os.close(w)
    said = os.read(r, 4096).decode()
    os.close(r)
    assert _wait_child(pid) == 0
    assert "attached by process" in said and str(os.getpid()) in said
    p.send(b"still open")
    assert c.recv() == b"attached in the parent"
    assert c.recv() == b"still open"


KILLED = r"""
import sys, shmpipe
name, n = sys.argv[1], int(sys.argv[2])
p = shmpipe.open_producer(name, timeout=30)
for i in range(n):
    p.send(i.to_bytes(8, "little") + bytes([i & 0xFF]) * (i % 256))
print("sent", flush=True)
if n >= 0:
    import time
    time.sleep(3600)
"""

ENDLESS = r"""
import sys, shmpipe
p = shmpipe.open_producer(sys.argv[1], timeout=30)
i = 0
while True:
    p.send(i.to_bytes(8, "little") + bytes([i & 0xFF]) * (i % 256))
    i += 1
"""


@pytest.mark.parametrize("variant", ["lockfree", "locked"])
def test_sigkilled_producer_everything_committed_then_peer_died(variant, name):
    c = shmpipe.create_consumer(name, capacity=1 << 20, variant=variant)
    child = run_python(KILLED, name, 5000, stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"sent\n"  # every send returned
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    got = 0
    with pytest.raises(shmpipe.PeerDied):
        while True:
            check_payload(got, c.recv(timeout=30))
            got += 1
    assert got == 5000
    with pytest.raises(shmpipe.PeerDied):
        c.try_recv()


def test_sigkilled_mid_stream(name):
    c = shmpipe.create_consumer(name, capacity=8192)
    child = run_python(ENDLESS, name)
    try:
        for i in range(3000):
            check_payload(i, c.recv(timeout=30))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    got = 3000
    with pytest.raises(shmpipe.PeerDied):
        while True:  # what it committed before dying, in order, then PeerDied
            check_payload(got, c.recv(timeout=30))
            got += 1
    assert got >= 3000


def test_open_waits_for_the_segment(name):
    child = run_python(
        "import sys, time, shmpipe\n"
        "time.sleep(0.3)\n"
        "p = shmpipe.create_producer(sys.argv[1], capacity=4096)\n"
        "p.send(b'late'); time.sleep(0.5); p.close()\n",
        name,
    )
    try:
        c = shmpipe.open_consumer(name, timeout=30)
        assert c.recv(timeout=30) == b"late"
    finally:
        child.wait(timeout=30)


def test_child_dropping_an_inherited_named_end_keeps_the_name(name):
    p = shmpipe.create_producer(name, capacity=4096)
    c = shmpipe.open_consumer(name)
    pid = os.fork()
    if pid == 0:
        del p, c  # the library would unlink the creator's name on drop
        import gc

        gc.collect()
        os._exit(0)
    assert _wait_child(pid) == 0
    assert os.path.exists("/dev/shm" + name)
    p.send(b"after the child")
    assert c.recv() == b"after the child"
    p.close()
    assert not os.path.exists("/dev/shm" + name)
