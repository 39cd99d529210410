"""Blocking calls release the GIL and can be interrupted with Ctrl-C,
losing nothing. Deadlines here are hang guards, not timing assertions."""

import os
import signal
import threading
import time

import pytest

import shmpipe


@pytest.mark.parametrize("wait", ["futex", "spin", "semaphore"])
def test_gil_released_while_waiting(wait):
    p, c = shmpipe.pipe(capacity=4096, wait=wait)
    entered = threading.Event()
    result = []

    def receiver():
        entered.set()
        try:
            result.append(c.recv(timeout=20))
        except Exception as e:  # noqa: BLE001 - reported below
            result.append(e)

    t = threading.Thread(target=receiver)
    t.start()
    entered.wait()
    time.sleep(0.2)  # let it block in recv
    # Pure-Python work in this thread: impossible while recv holds the GIL,
    # in which case the message below would be sent only after recv timed out.
    work = sum(i * i for i in range(200_000))
    assert work > 0
    p.send(b"made while the other thread waited")
    t.join(timeout=60)
    assert result == [b"made while the other thread waited"]


def test_gil_released_while_send_waits_for_room():
    p, c = shmpipe.pipe(capacity=256)
    while p.try_send(b"x" * 56):
        pass
    done = []
    t = threading.Thread(target=lambda: done.append(p.send(b"y" * 56, timeout=20)))
    t.start()
    time.sleep(0.2)
    assert c.recv() == b"x" * 56  # runs while send waits
    while True:
        m = c.recv(timeout=20)
        if m == b"y" * 56:
            break
    t.join(timeout=60)
    assert done == [None]


def _interrupt_soon(delay=0.2):
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


@pytest.fixture(autouse=True)
def _sigint_raises_keyboard_interrupt():
    """Python turns SIGINT into KeyboardInterrupt only if the process did
    not inherit it ignored, and a shell without job control starts its
    background commands (`cmd &`, nohup) with SIGINT ignored: install the
    handler these tests rely on, and put back what was there."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("variant", ["lockfree", "locked"])
def test_keyboard_interrupt_during_blocking_recv(variant):
    p, c = shmpipe.pipe(capacity=4096, variant=variant)
    timer = _interrupt_soon()
    start = time.monotonic()
    # A timeout long enough never to be reached: without interrupt support
    # this raises Timeout after 30 s instead of KeyboardInterrupt.
    with pytest.raises(KeyboardInterrupt):
        c.recv(timeout=30)
    timer.join()
    assert time.monotonic() - start < 25
    # Nothing lost or half-received: the ring works on, in order.
    p.send(b"one")
    p.send(b"two")
    assert c.recv() == b"one"
    assert c.recv() == b"two"
    assert c.try_recv() is None


def test_keyboard_interrupt_without_timeout():
    p, c = shmpipe.pipe(capacity=4096)
    timer = _interrupt_soon()
    # No timeout at all: if the interrupt were not seen this would hang, so a
    # watchdog thread sends a message after 30 s to unblock it (and fail).
    watchdog = threading.Timer(30, p.send, (b"watchdog",))
    watchdog.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            c.recv()
    finally:
        watchdog.cancel()
        timer.join()
    p.send(b"after")
    assert c.recv() == b"after"


def test_keyboard_interrupt_during_blocking_send_and_peek():
    p, c = shmpipe.pipe(capacity=256)
    sent = []
    i = 0
    while p.try_send(bytes([i]) * 56):
        sent.append(bytes([i]) * 56)
        i += 1
    timer = _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        p.send(b"interrupted" * 5, timeout=30)
    timer.join()
    got = [c.recv() for _ in sent]
    assert got == sent
    assert c.try_recv() is None  # the interrupted message was not sent
    timer = _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        c.peek(timeout=30)
    timer.join()
    p.send(b"z")
    with c.peek() as v:
        assert bytes(v) == b"z"


def test_end_used_by_two_threads_at_once_is_refused():
    p, c = shmpipe.pipe(capacity=4096)
    t = threading.Thread(target=lambda: pytest.raises(shmpipe.Timeout, c.recv, timeout=1))
    t.start()
    time.sleep(0.2)
    with pytest.raises(RuntimeError, match="another thread"):
        c.try_recv()
    t.join()
    p.send(b"ok")
    assert c.recv() == b"ok"
