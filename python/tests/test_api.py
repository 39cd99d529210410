"""One process: the API, peek's zero-copy view, errors for bad input."""

import array
import gc
import mmap
import os
import struct

import pytest

import shmpipe

VARIANTS = ["lockfree", "locked"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_send_any_buffer_and_receive(variant):
    p, c = shmpipe.pipe(capacity=4096, variant=variant)
    assert (p.capacity, c.capacity) == (4096, 4096)
    assert p.max_message == c.max_message == 4096 // 2 - 8 == shmpipe.max_message_for(4096)
    assert p.variant == c.variant == variant
    assert p.wait == "futex"
    p.send(b"bytes")
    p.send(bytearray(b"bytearray"))
    p.send(memoryview(b"xxmemoryviewxx")[2:-2])
    p.send(array.array("d", [1.5, 2.5]))  # non-byte format: sent as its raw bytes
    p.send(b"")
    assert p.try_send(b"try")
    assert c.recv() == b"bytes"
    assert c.recv(timeout=1) == b"bytearray"
    assert c.try_recv() == b"memoryview"
    assert struct.unpack("dd", c.recv()) == (1.5, 2.5)
    assert c.recv() == b""
    assert c.recv() == b"try"
    assert c.try_recv() is None
    with pytest.raises(TypeError):
        p.send("text is not bytes")
    s = p.stats()
    assert s["messages_sent"] == 6 and s["messages_received"] == 6
    assert s["producer"] == "attached" and s["consumer"] == "attached"


def test_try_send_full_returns_false():
    p, c = shmpipe.pipe(capacity=256)
    sent = 0
    while p.try_send(b"x" * 40):
        sent += 1
    assert sent > 0
    with pytest.raises(shmpipe.Timeout):
        p.send(b"x" * 40, timeout=0.05)
    for _ in range(sent):
        assert c.recv() == b"x" * 40
    assert c.try_recv() is None


def test_recv_into_and_short_buffer_keeps_message():
    p, c = shmpipe.pipe(capacity=4096)
    p.send(b"twelve bytes")
    small = bytearray(4)
    with pytest.raises(shmpipe.BufferTooSmall) as e:
        c.recv_into(small)
    assert isinstance(e.value, ValueError)
    assert (e.value.len, e.value.buf_len) == (12, 4)
    assert "12" in str(e.value) and "4" in str(e.value)
    assert small == bytearray(4)
    buf = bytearray(64)
    n = c.recv_into(buf)  # the message stayed in the ring
    assert buf[:n] == b"twelve bytes"
    p.send(b"into a view")
    view = memoryview(bytearray(32))[8:]
    assert c.recv_into(view, timeout=1) == 11
    assert bytes(view[:11]) == b"into a view"
    p.send(b"abc")
    arr = array.array("B", bytes(8))
    assert c.recv_into(arr) == 3 and arr[:3].tobytes() == b"abc"
    p.send(b"x")
    with pytest.raises((BufferError, TypeError)):
        c.recv_into(b"read-only bytes")
    assert c.recv() == b"x"
    with pytest.raises(shmpipe.Timeout):
        c.recv_into(buf, timeout=0.01)


def test_buffer_layout_both_ways():
    """The Py_buffer structs the module fills (peek's Message) and reads
    (send / recv_into on any exporter) as the running interpreter sees
    them: a field at the wrong offset would show as a wrong shape, stride,
    length, format or flag, or as the wrong bytes."""
    p, c = shmpipe.pipe(capacity=4096)
    body = bytes(range(37))
    p.send(body)
    with c.peek(timeout=1) as v:
        assert v.obj is not None and type(v.obj) is shmpipe.Message
        assert (v.ndim, v.shape, v.strides, v.suboffsets) == (1, (37,), (1,), ())
        assert (v.itemsize, v.format, v.nbytes, v.readonly) == (1, "B", 37, True)
        assert v.c_contiguous and v.f_contiguous and v.contiguous
        assert v.tobytes() == body and v[36] == 36 and bytes(v[5:8]) == b"\x05\x06\x07"
        assert v.cast("B", (37,)).tolist() == list(body)
        with pytest.raises(TypeError):
            v[0] = 1
        del v
    # Reading other exporters' buffers: length is bytes (not items), the
    # pointer is the slice's start, multi-byte items are sent whole.
    ints = array.array("i", [1, -2, 3])
    p.send(ints)
    assert c.recv(timeout=1) == ints.tobytes() and len(ints.tobytes()) == 3 * ints.itemsize
    p.send(memoryview(body)[10:20])
    assert c.recv(timeout=1) == body[10:20]
    with pytest.raises(BufferError):
        p.send(memoryview(body)[::2])  # not contiguous: the exporter refuses
    # Writing into a buffer: from its start, at most its length in bytes.
    p.send(b"\x01\x00\x00\x00\x02\x00\x00\x00")
    out = array.array("i", [7, 7, 7])
    assert c.recv_into(out, timeout=1) == 8
    assert out.tolist() == [1, 2, 7]
    p.send(bytes(13))
    with pytest.raises(shmpipe.BufferTooSmall):
        c.recv_into(out, timeout=1)  # 12 bytes of room
    with pytest.raises(BufferError):
        c.recv_into(memoryview(bytearray(20))[::2])
    with pytest.raises(BufferError, match="not writable"):
        c.recv_into(b"read-only bytes")


@pytest.mark.parametrize("variant", VARIANTS)
def test_peek_is_zero_copy_read_only_and_released_view_raises(variant, name):
    c = shmpipe.create_consumer(name, capacity=4096, variant=variant)
    p = shmpipe.open_producer(name)
    p.send(b"hello, shared memory")
    msg = c.peek(timeout=1)
    assert isinstance(msg, shmpipe.Message)
    assert len(msg) == 20 and not msg.released
    view = memoryview(msg)
    assert view.readonly and view.nbytes == 20 and view.format == "B"
    with pytest.raises(TypeError):
        view[0] = 0  # read-only
    # Zero copy: the view's bytes are the ring's, in the mapping of
    # /dev/shm/NAME. Change them through a second mapping and read them back.
    with open("/dev/shm" + name, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        at = m.find(b"hello, shared memory")
        assert at > 0
        m[at : at + 5] = b"HELLO"
        assert bytes(view[:5]) == b"HELLO"
        m.close()
    # While a view is alive the message cannot be released (the producer
    # would overwrite what it reads) nor the consumer closed.
    with pytest.raises(BufferError):
        msg.release()
    with pytest.raises(BufferError):
        c.close()
    assert not msg.released
    with pytest.raises(shmpipe.Error, match="still held"):
        c.try_recv()
    view.release()
    msg.release()
    assert msg.released
    msg.release()  # idempotent
    with pytest.raises(ValueError):
        memoryview(msg)
    with pytest.raises(ValueError):
        bytes(msg)
    with pytest.raises(ValueError):
        len(msg)
    assert c.try_recv() is None  # released, not delivered again

    p.send(b"in a with block")
    with c.peek() as v:
        assert isinstance(v, memoryview) and v.readonly
        assert bytes(v) == b"in a with block"
        head = v[:2]
        assert bytes(head) == b"in"
        del head  # slices are views too
    with pytest.raises(ValueError):
        v[0]  # the view was released with the message
    assert c.try_recv() is None


def test_release_refused_while_derived_views_live():
    p, c = shmpipe.pipe(capacity=4096)
    p.send(b"abcdef")
    msg = c.peek()
    with pytest.raises(BufferError):
        with msg as v:
            keep = v[1:3]  # a slice outlives the block
    assert bytes(keep) == b"bc"  # still valid: nothing was released
    assert not msg.released
    keep.release()
    msg.release()
    assert msg.released and c.try_recv() is None


def test_unreleased_message_is_received_again():
    p, c = shmpipe.pipe(capacity=4096)
    p.send(b"first")
    p.send(b"second")
    msg = c.peek()
    assert bytes(msg) == b"first"
    del msg
    gc.collect()
    assert c.try_peek().tobytes() == b"first"  # dropped again, unreleased
    gc.collect()
    assert c.recv() == b"first"
    m = c.try_peek()
    assert m.tobytes() == b"second"
    m.release()
    assert c.try_peek() is None
    with pytest.raises(ValueError):
        shmpipe.Message().tobytes()  # not from peek(): holds nothing


def test_iteration_ends_at_close():
    p, c = shmpipe.pipe(capacity=1024)
    for i in range(5):
        p.send(bytes([i]))
    p.close()
    assert p.closed
    assert list(c) == [bytes([i]) for i in range(5)]
    with pytest.raises(shmpipe.Disconnected):
        c.recv()
    with pytest.raises(shmpipe.Error, match="closed"):
        p.send(b"x")
    p.close()  # idempotent


def test_context_managers_close(name):
    with shmpipe.create_producer(name, capacity=1024) as p:
        with shmpipe.open_consumer(name) as c:
            p.send(b"x")
            assert c.recv() == b"x"
        assert c.closed
        with pytest.raises(shmpipe.Disconnected):
            p.send(b"y")
    assert p.closed
    assert not os.path.exists("/dev/shm" + name)  # the creator removed the name


def test_open_detects_the_variant(name):
    c = shmpipe.create_consumer(name, capacity=1024, wait="spin", variant="locked")
    p = shmpipe.open_producer(name)
    assert (p.variant, p.wait, p.capacity) == ("locked", "spin", 1024)
    p.send(b"locked")
    assert c.recv() == b"locked"


@pytest.mark.parametrize("bad", ["", "x", "/", "/a/b", "/.", "/..", "/" + "n" * 256, "/a\0b"])
def test_bad_names(bad):
    with pytest.raises(shmpipe.InvalidName) as e:
        shmpipe.create_producer(bad)
    assert isinstance(e.value, ValueError)
    assert "'/' followed by 1 to 255 characters" in str(e.value)
    with pytest.raises(shmpipe.InvalidName):
        shmpipe.open_consumer(bad)


@pytest.mark.parametrize("bad", [0, 63, 100, 3000, 2**33, -1, -4096, 2**70])
def test_bad_capacities(bad, name):
    with pytest.raises(shmpipe.InvalidCapacity) as e:
        shmpipe.create_producer(name, capacity=bad)
    assert isinstance(e.value, ValueError)
    assert f"invalid capacity {bad} bytes" in str(e.value)
    assert "power of two between 64 and 4294967296 bytes" in str(e.value)
    with pytest.raises(shmpipe.InvalidCapacity):
        shmpipe.pipe(capacity=bad)
    with pytest.raises(TypeError):
        shmpipe.pipe(capacity="1MiB")


def test_bad_options(name):
    with pytest.raises(shmpipe.InvalidOption, match="use spin, spin-yield, futex or semaphore"):
        shmpipe.create_producer(name, wait="sleepy")
    with pytest.raises(shmpipe.InvalidOption, match="use lockfree or locked"):
        shmpipe.pipe(variant="wait-free")
    p, c = shmpipe.pipe(capacity=1024)
    for bad in (-1, float("nan")):
        with pytest.raises(shmpipe.InvalidOption, match="timeout"):
            c.recv(timeout=bad)
        with pytest.raises(shmpipe.InvalidOption, match="timeout"):
            p.send(b"x", timeout=bad)


def test_too_large_names_the_limit():
    p, c = shmpipe.pipe(capacity=1024)
    assert p.max_message == 504
    p.send(b"x" * 504)
    with pytest.raises(shmpipe.TooLarge) as e:
        p.send(b"x" * 505)
    assert (e.value.len, e.value.max) == (505, 504)
    assert "at most 504 bytes" in str(e.value)
    with pytest.raises(shmpipe.TooLarge):
        p.try_send(bytearray(4096))
    assert c.recv() == b"x" * 504


def test_missing_segment_is_named(name):
    with pytest.raises(shmpipe.NotFound) as e:
        shmpipe.open_consumer(name)
    assert isinstance(e.value, FileNotFoundError)
    assert name in str(e.value)
    with pytest.raises(shmpipe.NotFound, match=name):
        shmpipe.open_producer(name, timeout=0.05)
    with pytest.raises(shmpipe.NotFound, match=name):
        shmpipe.remove(name)


def test_existing_name_and_taken_role(name):
    p = shmpipe.create_producer(name, capacity=1024)
    with pytest.raises(shmpipe.Error, match="already exists"):
        shmpipe.create_consumer(name)
    with pytest.raises(shmpipe.RoleTaken, match="producer"):
        shmpipe.open_producer(name)
    p.close()


def test_corrupted_record_header(name):
    c = shmpipe.create_consumer(name, capacity=1024)
    p = shmpipe.open_producer(name)
    p.send(b"ok")
    assert c.recv() == b"ok"
    # Forge the next record's header word (896-byte header, then the data
    # area; the record after "ok" starts at 8 + 8): kind 9 does not exist.
    with open("/dev/shm" + name, "r+b") as f:
        f.seek(896 + 16)
        f.write(struct.pack("<Q", (9 << 32) | 4))
    with pytest.raises(shmpipe.Corrupted):
        c.try_recv()
    with pytest.raises(shmpipe.Corrupted):  # it sticks
        c.recv(timeout=0.01)


def test_exception_hierarchy():
    for cls in (
        shmpipe.Timeout, shmpipe.Disconnected, shmpipe.PeerDied, shmpipe.TooLarge,
        shmpipe.Corrupted, shmpipe.InvalidName, shmpipe.InvalidCapacity,
        shmpipe.InvalidOption, shmpipe.NotFound, shmpipe.RoleTaken, shmpipe.BufferTooSmall,
    ):
        assert issubclass(cls, shmpipe.Error) and cls.__module__ == "shmpipe" and cls.__doc__
    assert issubclass(shmpipe.Timeout, TimeoutError)
    assert issubclass(shmpipe.NotFound, FileNotFoundError)


def test_ends_cannot_be_pickled():
    import pickle

    p, c = shmpipe.pipe(capacity=1024)
    for end in (p, c):
        with pytest.raises(TypeError, match="fork"):
            pickle.dumps(end)


def test_release_refused_while_an_export_of_the_view_lives():
    import pickle

    p, c = shmpipe.pipe(capacity=4096)
    p.send(b"exported")
    msg = c.peek()
    with pytest.raises(BufferError):
        with msg as v:
            pb = pickle.PickleBuffer(v)  # holds a buffer export of the view itself
    assert bytes(pb.raw()) == b"exported"  # still valid: nothing was released
    pb.release()
    v.release()
    msg.release()
    assert msg.released and c.try_recv() is None


def test_entered_but_never_exited_message_does_not_wedge_the_consumer():
    p, c = shmpipe.pipe(capacity=4096)
    p.send(b"kept")
    view = c.peek().__enter__()  # no __exit__
    assert bytes(view) == b"kept"
    del view  # not released either: the Message must not keep it alive
    gc.collect()
    assert c.recv() == b"kept"  # dropped unreleased: received again
    assert c.try_recv() is None


def test_create_over_a_leftover_name_says_what_to_do(name):
    # A producer killed without closing leaves its name behind; creating it
    # again must say how to go on from Python (open_producer or remove).
    first = shmpipe.create_producer(name, capacity=4096)
    with pytest.raises(shmpipe.Error, match=r"already exists.*open_producer.*shmpipe\.remove") as e:
        shmpipe.create_producer(name, capacity=4096)
    assert "open_or_create" not in str(e.value)
    with pytest.raises(shmpipe.Error, match=r"open_consumer"):
        shmpipe.create_consumer(name, capacity=4096)
    first.close()
