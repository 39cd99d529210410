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
API, one message per call (no batching), and every message is checked: 256
distinct messages (a sequence byte at both ends) are sent in turn, the
receiver compares each one with the one expected, and a round trip's reply
must equal the message sent. A transport whose package is not installed is
listed as skipped with the reason. Run on a quiet machine; figures from a
loaded one mean little.

--vs-rust N: the Rust library's round trip against Python's, interleaved:
N trials, each running bench.py's shmpipe round trip and then the same
round trip in Rust (python/examples/rust_roundtrip.rs, built with cargo if
needed: same ring capacity, wait strategy, sizes, fork, echo child, check,
no CPU pinning on either side), and prints the medians and the Python/Rust
ratio of the time per round trip (timed in blocks of 64 round trips with
one clock read per block, so that Python's costlier clock does not count).

    python bench.py                      # all transports, both sizes, both modes
    python bench.py --count 200000 --sizes 64 --modes stream
    python bench.py --transports shmpipe,mp.Pipe --json results.json
    python bench.py --vs-rust 5          # Python vs Rust round trip, 5 interleaved trials
"""

import argparse
import ctypes
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
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


# What `pip install tachyon-ipc` (0.5.1, a source package) says with GCC 12
# (Debian 12); python/README.md has the clang 19 recipe that builds it.
TACHYON_HINT = (
    "; with GCC < 14 pip stops with \"[tachyon-ipc] Unsupported GCC version: g++ (Debian 12.2.0-14+deb12u1) "
    "12.2.0 / Required: GCC 14+\" (build it with clang 19: see python/README.md)"
)


def _probe(module, package, hint=""):
    try:
        __import__(module)
        return None
    except Exception as e:  # noqa: BLE001 - any import failure is a skip reason
        return f"`pip install {package}` failed or was not run ({type(e).__name__}: {e}){hint}"


TRANSPORTS = {
    "shmpipe": (lambda size: ShmpipeChannel(size, "futex"), lambda: _probe("shmpipe", "./python")),
    "shmpipe-spin": (lambda size: ShmpipeChannel(size, "spin"), lambda: _probe("shmpipe", "./python")),
    "mp.Pipe": (PipeChannel, lambda: None),
    "mp.Queue": (QueueChannel, lambda: None),
    "faster-fifo": (FasterFifoChannel, lambda: _probe("faster_fifo", "faster-fifo")),
    "iceoryx2": (Iceoryx2Channel, lambda: _probe("iceoryx2", "iceoryx2")),
    "tachyon-ipc": (TachyonChannel, lambda: _probe("tachyon", "tachyon-ipc", TACHYON_HINT)),
}


# ---------------------------------------------------------------------------
# The two measurements.


BLOCK = 64  # round trips per clock read in the block-timed phase
RUN_LIMIT = int(os.environ.get("BENCH_RUN_LIMIT", "120"))  # seconds one run may take before it counts as hung


class Hung(Exception):
    pass


class watchdog:
    """Bound one run: after RUN_LIMIT seconds SIGALRM raises Hung in this
    process (a lost message would otherwise leave the receiver waiting
    forever), and the child is killed on the way out whatever happened."""

    def __init__(self, child):
        self.child = child

    def __enter__(self):
        def fire(signum, frame):
            raise Hung(f"no result after {RUN_LIMIT} s (a message lost, or the peer stuck)")

        self.old = signal.signal(signal.SIGALRM, fire)
        signal.alarm(RUN_LIMIT)
        return self

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)
        if exc[0] is None:
            self.child.join(60)
        if self.child.is_alive():
            self.child.kill()
            self.child.join()
        return False


def messages(size):
    """256 distinct messages of `size` bytes: a fixed body with the message's
    number (0..255) in its first and last byte."""
    body = bytes((j * 7 + 3) & 255 for j in range(size))
    if size < 2:
        return [bytes([i])[:size] for i in range(256)]
    return [bytes([i]) + body[1:-1] + bytes([i ^ 0xFF]) for i in range(256)]


def _stream_sender(ch, msgs, count):
    tx = ch.tx()
    send = tx.send
    for i in range(count):
        send(msgs[i & 255])


def stream(make, size, count):
    msgs = messages(size)
    ch = make(size)
    child = CTX.Process(target=_stream_sender, args=(ch, msgs, count + 1))
    child.start()
    with watchdog(child):
        rx = ch.rx()
        recv = rx.recv
        first = recv()  # the clock starts when the sender is running
        bad = int(first != msgs[0])
        start = time.perf_counter()
        for i in range(1, count + 1):
            if recv() != msgs[i & 255]:
                bad += 1
        elapsed = time.perf_counter() - start
    if bad:
        raise RuntimeError(f"{bad} of {count + 1} messages were not the ones sent (or out of order)")
    return {"msgs_per_s": count / elapsed, "mb_per_s": count * size / elapsed / 1e6}


def _echo(ping, pong, count):
    rx, tx = ping.rx(), pong.tx()
    recv, send = rx.recv, tx.send
    for _ in range(count):
        send(recv())


def roundtrip(make, size, count, warmup=1000):
    """Round trips: `count` timed one by one (p50, p99), then `count` more in
    blocks of BLOCK with one clock read per block (block_p50_us: the median
    block's time per round trip). Every reply must equal the message sent."""
    msgs = messages(size)
    blocks = max(1, count // BLOCK)
    ping, pong = make(size), make(size)
    child = CTX.Process(target=_echo, args=(ping, pong, warmup + count + blocks * BLOCK))
    child.start()
    with watchdog(child):
        tx, rx = ping.tx(), pong.rx()
        send, recv = tx.send, rx.recv
        bad = 0
        for i in range(warmup):
            m = msgs[i & 255]
            send(m)
            if recv() != m:
                bad += 1
        samples = []
        clock = time.perf_counter_ns
        for i in range(count):
            m = msgs[i & 255]
            t0 = clock()
            send(m)
            r = recv()
            samples.append(clock() - t0)
            if r != m:
                bad += 1
        per_block = []
        start = clock()
        for _ in range(blocks):
            t0 = clock()
            for i in range(BLOCK):
                m = msgs[i]
                send(m)
                if recv() != m:
                    bad += 1
            per_block.append((clock() - t0) / BLOCK)
        mean = (clock() - start) / (blocks * BLOCK)
    if bad:
        raise RuntimeError(f"{bad} replies differed from the message sent")
    samples.sort()
    per_block.sort()
    return {
        "p50_us": samples[len(samples) // 2] / 1e3,
        "p99_us": samples[len(samples) * 99 // 100] / 1e3,
        "block_p50_us": per_block[len(per_block) // 2] / 1e3,
        "mean_us": mean / 1e3,
    }


# ---------------------------------------------------------------------------
# Python against the Rust library (--vs-rust).

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rust_binary(path):
    """The Rust round-trip program: `path` if given, else built with cargo."""
    if path:
        return path
    cargo = shutil.which("cargo")
    if cargo is None:
        sys.exit("--vs-rust needs cargo on PATH (or --rust-bin PATH to a built python/examples/rust_roundtrip)")
    cmd = [cargo, "build", "--release", "-q", "-p", "shmpipe-python", "--example", "rust_roundtrip"]
    print("  " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "examples", "rust_roundtrip")


def rust_roundtrip(binary, size, count, wait):
    out = subprocess.run(
        [binary, str(size), str(count), wait, "1000", str(BLOCK)],
        capture_output=True, text=True, timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{binary} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def vs_rust(trials, sizes, count, wait, binary, json_path):
    make = lambda size: ShmpipeChannel(size, wait)  # noqa: E731
    runs = {size: {"python": [], "rust": []} for size in sizes}
    for t in range(trials):
        for size in sizes:
            print(f"  trial {t + 1}/{trials}: {size} B python, rust ...", file=sys.stderr, flush=True)
            runs[size]["python"].append(roundtrip(make, size, count))
            runs[size]["rust"].append(rust_roundtrip(binary, size, count, wait))
    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    print()
    print(f"round trip, wait={wait}, {trials} interleaved trials of {count} round trips (medians; µs per round trip)")
    print(f"{'size':>6}  {'python':>8} {'rust':>8} {'ratio':>7}   {'python p50':>10} {'rust p50':>9} {'ratio':>7}")
    summary = []
    for size in sizes:
        py, rs = runs[size]["python"], runs[size]["rust"]
        pb, rb = med(py, "block_p50_us"), med(rs, "block_p50_us")
        p1, r1 = med(py, "p50_us"), med(rs, "p50_us")
        print(f"{size:>6}  {pb:>8.3f} {rb:>8.3f} {pb / rb:>6.2f}x   {p1:>10.3f} {r1:>9.3f} {p1 / r1:>6.2f}x")
        summary.append({"size": size, "python_us": pb, "rust_us": rb, "ratio": pb / rb,
                        "python_p50_us": p1, "rust_p50_us": r1, "p50_ratio": p1 / r1})
    print("(first three columns: timed in blocks of 64 round trips, the target's basis; "
          "p50 columns: each round trip timed by itself, clock cost included)")
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"wait": wait, "count": count, "trials": trials, "summary": summary, "runs": runs}, f, indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=100_000, help="messages per stream run (default 100000)")
    ap.add_argument("--rt-count", type=int, default=20_000, help="round trips per run (default 20000)")
    ap.add_argument("--sizes", default="64,1024", help="message sizes in bytes (default 64,1024)")
    ap.add_argument("--modes", default="stream,roundtrip", help="stream, roundtrip or both")
    ap.add_argument("--transports", default=",".join(TRANSPORTS), help="comma-separated, from: " + ", ".join(TRANSPORTS))
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--vs-rust", type=int, metavar="N", help="instead: N interleaved trials of the shmpipe round trip in Python and in Rust, and their ratio")
    ap.add_argument("--wait", default="futex", help="wait strategy for --vs-rust (default futex)")
    ap.add_argument("--rust-bin", help="for --vs-rust: the built rust_roundtrip example (default: build it with cargo)")
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

    if a.vs_rust is not None:
        if a.vs_rust < 1:
            ap.error("--vs-rust takes a number of trials >= 1")
        vs_rust(a.vs_rust, sizes, a.rt_count, a.wait, rust_binary(a.rust_bin), a.json)
        return

    results, skipped, failed = [], {}, []
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
                except Exception as e:  # noqa: BLE001 - the row fails, the run goes on
                    failed.append({"transport": name, "mode": mode, "size": size, "error": f"{type(e).__name__}: {e}"})
                    continue
                results.append({"transport": name, "mode": mode, "size": size, **r})
            if name in skipped:
                break

    base = {(r["mode"], r["size"]): r for r in results if r["transport"] == "mp.Pipe"}
    print()
    print(f"{'transport':<14} {'mode':<10} {'size':>6}  {'msgs/s':>12} {'MB/s':>9}  {'p50 µs':>8} {'p99 µs':>8} {'blk µs':>8}  {'vs mp.Pipe':>10}")
    for r in results:
        b = base.get((r["mode"], r["size"]))
        if r["mode"] == "stream":
            vs = f"{r['msgs_per_s'] / b['msgs_per_s']:.2f}x" if b else "-"
            print(f"{r['transport']:<14} {'stream':<10} {r['size']:>6}  {r['msgs_per_s']:>12,.0f} {r['mb_per_s']:>9,.1f}  {'':>8} {'':>8} {'':>8}  {vs:>10}")
        else:
            vs = f"{b['p50_us'] / r['p50_us']:.2f}x" if b else "-"
            print(f"{r['transport']:<14} {'roundtrip':<10} {r['size']:>6}  {'':>12} {'':>9}  {r['p50_us']:>8.2f} {r['p99_us']:>8.2f} {r['block_p50_us']:>8.2f}  {vs:>10}")
    if any(r["mode"] == "roundtrip" for r in results):
        print("(round trip: p50/p99 of each round trip timed by itself; blk: median time per round trip "
              "of blocks of 64, one clock read per block)")
    for f in failed:
        print(f"{f['transport']:<14} {f['mode']:<10} {f['size']:>6}  FAILED: {f['error']}")
    for name, reason in skipped.items():
        print(f"{name:<14} skipped: {reason}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"results": results, "failed": failed, "skipped": skipped, "count": a.count, "rt_count": a.rt_count}, f, indent=2)


if __name__ == "__main__":
    main()
