"""Interop with the `shmpipe` command: `shmpipe read` reads a Python
producer's messages, and a Python consumer reads `shmpipe write`."""

import os
import subprocess

import pytest

import shmpipe

DATA = b"".join(i.to_bytes(4, "little") * 3 + b"line %d\n" % i for i in range(50_000))


@pytest.mark.parametrize("reader_first", [True, False])
@pytest.mark.parametrize("variant", ["lockfree", "locked"])
def test_cli_reads_python_producer(cli, name, reader_first, variant, tmp_path):
    # stdout to a file: nothing must wait for this process to read a pipe.
    out_file = open(tmp_path / "out", "wb")
    if reader_first:  # `read` creates the segment; Python opens it
        reader = subprocess.Popen(
            [cli, "read", name, "--variant", variant], stdout=out_file
        )
        p = shmpipe.open_producer(name, timeout=30)
        assert p.variant == variant
    else:  # Python creates it; `read` attaches (and detects the variant)
        p = shmpipe.create_producer(name, capacity=64 * 1024, variant=variant)
        reader = subprocess.Popen([cli, "read", name], stdout=out_file)
    chunks = [DATA[i : i + 1000] for i in range(0, len(DATA), 1000)]
    for chunk in chunks:
        p.send(chunk)
    p.close()
    assert reader.wait(timeout=60) == 0
    out_file.close()
    assert (tmp_path / "out").read_bytes() == DATA
    assert not os.path.exists("/dev/shm" + name)


@pytest.mark.parametrize("writer_first", [True, False])
def test_python_consumer_reads_cli_writer(cli, name, writer_first, tmp_path):
    (tmp_path / "in").write_bytes(DATA)
    stdin = open(tmp_path / "in", "rb")
    if writer_first:  # `write` creates the segment; Python opens it
        writer = subprocess.Popen([cli, "write", name], stdin=stdin)
        c = shmpipe.open_consumer(name, timeout=30)
    else:
        c = shmpipe.create_consumer(name, capacity=64 * 1024)
        writer = subprocess.Popen([cli, "write", name], stdin=stdin)
    stdin.close()
    got = b"".join(c)  # ends when `write` closes the producer side
    assert writer.wait(timeout=60) == 0
    assert got == DATA
    c.close()
