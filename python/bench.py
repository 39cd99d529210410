#!/usr/bin/env python3
"""Python IPC side by side: shmpipe against multiprocessing.Pipe,
multiprocessing.Queue, faster-fifo, iceoryx2 and tachyon-ipc.

Two processes (the receiver is this process, the other is forked with
multiprocessing's "fork" start method), 64 B and 1 KiB messages:

- stream: the child sends COUNT messages back to back; the parent receives
  them. Timed from the first message received to the last.
- roundtrip: the parent sends a message, the child sends it back, COUNT
  times (after a warm-up). Timed per round trip.

Every transport moves the same bytes objects through its ordinary Python
API, one message per call (no batching). A transport whose package is not
installed is listed as skipped with the reason. Run on a quiet machine;
figures from a loaded one mean little.

    python bench.py                      # all transports, both sizes, both modes
    python bench.py --count 200000 --sizes 64 --modes stream
    python bench.py --transports shmpipe,mp.Pipe --json results.json
"""

import argparse
import ctypes
import json
import multiprocessing
import os
import statistics
import sys
import time

CTX = multiprocessing.get_context("fork")


# ---------------------------------------------------------------------------
# Transports. channel(size) runs before the fork and returns an object whose
# tx() / rx() are called in the sending / receiving process after the fork;
# they return an object with send(bytes) / recv() -> bytes-like.


class ShmpipeChannel:
    def __init__(self, size, wait):
        import shmpipe

        self.p, self.c = shmpipe.pipe(capacity=1 << 20, wait=wait)

    def tx(self):
        self.c.close()  # the other process's end: never used here
        return self.p

    def rx(self):
        self.p.close()
        return self.c


class PipeChannel:
    class _Tx:
        def __init__(self, conn):
            self.send = conn.send_bytes

    class _Rx:
        def __init__(self, conn):
            self.recv = conn.recv_bytes

    def __init__(self, size):
        self.r, self.w = CTX.Pipe(duplex=False)

    def tx(self):
        return self._Tx(self.w)

    def rx(self):
        return self._Rx(self.r)


class QueueChannel:
    class _End:
        def __init__(self, q):
            self.send = q.put
            self.recv = q.get

    def __init__(self, size):
        self.q = CTX.Queue()

    def tx(self):
        return self._End(self.q)

    def rx(self):
        return self._End(self.q)


class FasterFifoChannel:
    class _End:
        def __init__(self, q):
            self.send = q.put
            self.recv = q.get

    def __init__(self, size):
        import faster_fifo

        self.q = faster_fifo.Queue(max_size_bytes=1 << 20)

    def tx(self):
        return self._End(self.q)

    def rx(self):
        return self._End(self.q)


class Iceoryx2Channel:
    """Publish-subscribe over a slice of bytes, without safe overflow and with
    RetryUntilDelivered, so nothing is dropped; the receiver polls
    `receive()` (the Python API has no blocking receive on a subscriber)."""

    _n = 0

    def __init__(self, size):
        import iceoryx2  # noqa: F401 - fail early if missing

        Iceoryx2Channel._n += 1
        self.name = f"shmpipe-bench/{os.getpid()}/{Iceoryx2Channel._n}"
        self.size = size
        self.ready = CTX.Event()

    def _service(self):
        import iceoryx2 as iox2

        iox2.set_log_level(iox2.LogLevel.Error)
        node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        service = (
            node.service_builder(iox2.ServiceName.new(self.name))
            .publish_subscribe(iox2.Slice[ctypes.c_uint8])
            .enable_safe_overflow(False)
            .subscriber_max_buffer_size(256)
            .open_or_create()
        )
        return iox2, node, service

    def tx(self):
        iox2, node, service = self._service()
        pub = (
            service.publisher_builder()
            .initial_max_slice_len(self.size)
            .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
            .create()
        )
        self.ready.wait()
        pub.update_connections()

        class Tx:
            keep = (node, service)

            @staticmethod
            def send(data):
                sample = pub.loan_slice_uninit(len(data))
                ctypes.memmove(sample.payload_ptr, data, len(data))
                sample.assume_init().send()

        return Tx()

    def rx(self):
        iox2, node, service = self._service()
        sub = service.subscriber_builder().create()
        self.ready.set()

        class Rx:
            keep = (node, service)

            @staticmethod
            def recv():
                while True:
                    sample = sub.receive()
                    if sample is not None:
                        n = sample.header.number_of_elements
                        data = ctypes.string_at(sample.payload_ptr, n)
                        sample.delete()
                        return data

        return Rx()


class TachyonChannel:
    """tachyon-ipc's SPSC bus (imported as `tachyon`): the sender listens on a
    UNIX socket (creating the shared-memory arena; the listener is the
    producer), the receiver connects; one copy in (`Bus.send`, retried while
    the ring is full: it does not wait) and one out (as its iterator does)."""

    _n = 0

    def __init__(self, size):
        import tachyon  # noqa: F401 - fail early if missing

        TachyonChannel._n += 1
        self.path = f"/tmp/shmpipe-bench-tachyon-{os.getpid()}-{TachyonChannel._n}.sock"
        if os.path.exists(self.path):
            os.unlink(self.path)

    def tx(self):
        import tachyon

        bus = tachyon.Bus.listen(self.path, 1 << 20)  # returns once connected

        send = bus.send
        full = tachyon.TachyonError

        class Tx:
            keep = bus

            @staticmethod
            def send(data):
                # Bus.send raises instead of waiting when the ring is full:
                # retry (busy) until it fits.
                while True:
                    try:
                        return send(data)
                    except full:
                        pass

        return Tx()

    def rx(self):
        import tachyon

        deadline = time.monotonic() + 30
        while True:
            try:
                bus = tachyon.Bus.connect(self.path)
                break
            except Exception:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        raw = bus._bus

        class Rx:
            keep = bus

            @staticmethod
            def recv():
                with raw.acquire_rx() as rx:
                    with memoryview(rx) as m:
                        return m.tobytes()

        return Rx()


def _probe(module, package):
    try:
        __import__(module)
        return None
    except Exception as e:  # noqa: BLE001 - any import failure is a skip reason
        return f"`pip install {package}` failed or was not run ({type(e).__name__}: {e})"


TRANSPORTS = {
    "shmpipe": (lambda size: ShmpipeChannel(size, "futex"), lambda: _probe("shmpipe", "./python")),
    "shmpipe-spin": (lambda size: ShmpipeChannel(size, "spin"), lambda: _probe("shmpipe", "./python")),
    "mp.Pipe": (PipeChannel, lambda: None),
    "mp.Queue": (QueueChannel, lambda: None),
    "faster-fifo": (FasterFifoChannel, lambda: _probe("faster_fifo", "faster-fifo")),
    "iceoryx2": (Iceoryx2Channel, lambda: _probe("iceoryx2", "iceoryx2")),
    "tachyon-ipc": (TachyonChannel, lambda: _probe("tachyon", "tachyon-ipc")),
}


# ---------------------------------------------------------------------------
# The two measurements.


def _stream_sender(ch, msg, count):
    tx = ch.tx()
    send = tx.send
    for _ in range(count):
        send(msg)


def stream(make, size, count):
    msg = bytes(range(256)) * (size // 256) + bytes(size % 256)
    ch = make(size)
    child = CTX.Process(target=_stream_sender, args=(ch, msg, count + 1))
    child.start()
    rx = ch.rx()
    recv = rx.recv
    first = recv()  # the clock starts when the sender is running
    assert len(first) == size
    start = time.perf_counter()
    for _ in range(count):
        m = recv()
    elapsed = time.perf_counter() - start
    assert len(m) == size
    child.join(60)
    return {"msgs_per_s": count / elapsed, "mb_per_s": count * size / elapsed / 1e6}


def _echo(ping, pong, count):
    rx, tx = ping.rx(), pong.tx()
    recv, send = rx.recv, tx.send
    for _ in range(count):
        send(recv())


def roundtrip(make, size, count, warmup=1000):
    msg = bytes(size)
    ping, pong = make(size), make(size)
    child = CTX.Process(target=_echo, args=(ping, pong, count + warmup))
    child.start()
    tx, rx = ping.tx(), pong.rx()
    send, recv = tx.send, rx.recv
    for _ in range(warmup):
        send(msg)
        recv()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(count):
        t0 = clock()
        send(msg)
        recv()
        samples.append(clock() - t0)
    child.join(60)
    samples.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1e3,
        "p99_us": samples[len(samples) * 99 // 100] / 1e3,
        "mean_us": statistics.fmean(samples) / 1e3,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000, help="messages per stream run (default 100000)")
    ap.add_argument("--rt-count", type=int, default=20_000, help="round trips per run (default 20000)")
    ap.add_argument("--sizes", default="64,1024", help="message sizes in bytes (default 64,1024)")
    ap.add_argument("--modes", default="stream,roundtrip", help="stream, roundtrip or both")
    ap.add_argument("--transports", default=",".join(TRANSPORTS), help="comma-separated, from: " + ", ".join(TRANSPORTS))
    ap.add_argument("--json", help="also write the results to this file")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    modes = a.modes.split(",")
    names = a.transports.split(",")
    for n in names:
        if n not in TRANSPORTS:
            ap.error(f"unknown transport {n!r}; choose from {', '.join(TRANSPORTS)}")
    for m in modes:
        if m not in ("stream", "roundtrip"):
            ap.error(f"unknown mode {m!r}; use stream and/or roundtrip")

    results, skipped = [], {}
    for name in names:
        make, probe = TRANSPORTS[name]
        reason = probe()
        if reason is None:
            try:
                make(64)  # the package may import yet not work here
            except Exception as e:  # noqa: BLE001
                reason = f"{type(e).__name__}: {e}"
        if reason is not None:
            skipped[name] = reason
            continue
        for size in sizes:
            for mode in modes:
                print(f"  {name} {mode} {size} B ...", file=sys.stderr, flush=True)
                try:
                    if mode == "stream":
                        r = stream(make, size, a.count)
                    else:
                        r = roundtrip(make, size, a.rt_count)
                except NotImplementedError as e:
                    skipped[name] = str(e)
                    break
                results.append({"transport": name, "mode": mode, "size": size, **r})
            if name in skipped:
                break

    base = {(r["mode"], r["size"]): r for r in results if r["transport"] == "mp.Pipe"}
    print()
    print(f"{'transport':<14} {'mode':<10} {'size':>6}  {'msgs/s':>12} {'MB/s':>9}  {'p50 µs':>8} {'p99 µs':>8}  {'vs mp.Pipe':>10}")
    for r in results:
        b = base.get((r["mode"], r["size"]))
        if r["mode"] == "stream":
            vs = f"{r['msgs_per_s'] / b['msgs_per_s']:.2f}x" if b else "-"
            print(f"{r['transport']:<14} {'stream':<10} {r['size']:>6}  {r['msgs_per_s']:>12,.0f} {r['mb_per_s']:>9,.1f}  {'':>8} {'':>8}  {vs:>10}")
        else:
            vs = f"{b['p50_us'] / r['p50_us']:.2f}x" if b else "-"
            print(f"{r['transport']:<14} {'roundtrip':<10} {r['size']:>6}  {'':>12} {'':>9}  {r['p50_us']:>8.2f} {r['p99_us']:>8.2f}  {vs:>10}")
    for name, reason in skipped.items():
        print(f"{name:<14} skipped: {reason}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "skipped": skipped, "count": a.count, "rt_count": a.rt_count}, f, indent=2)


if __name__ == "__main__":
    main()
