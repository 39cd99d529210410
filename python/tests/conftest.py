"""Shared helpers for the shmpipe Python tests."""

import itertools
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import shmpipe

REPO = pathlib.Path(__file__).resolve().parents[2]
_counter = itertools.count()


def unique_name(tag="t"):
    """A segment name no other test (or test run) uses."""
    return f"/shmpipe-py-{tag}-{os.getpid()}-{next(_counter)}"


@pytest.fixture
def name():
    """A fresh segment name, removed after the test if it is still there."""
    n = unique_name()
    yield n
    try:
        shmpipe.remove(n)
    except shmpipe.NotFound:
        pass


@pytest.fixture(scope="session")
def cli():
    """The `shmpipe` command: $SHMPIPE_CLI, or target/release/shmpipe of this
    checkout (built by `cargo build --release -p shmpipe-cli`)."""
    path = os.environ.get("SHMPIPE_CLI") or str(REPO / "target" / "release" / "shmpipe")
    if not os.access(path, os.X_OK):
        found = shutil.which("shmpipe")
        if found is None:
            pytest.fail(
                f"the shmpipe command is not at {path}: build it with "
                "`cargo build --release -p shmpipe-cli` or set SHMPIPE_CLI"
            )
        path = found
    return path


def run_python(code, *args, **kw):
    """Start `python -c code args...` (a fresh interpreter, not a fork)."""
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], **kw)


def payload(i, size=None):
    """Message i: its index (8 bytes, little endian) then filler; sizes vary
    from 8 to 263 bytes unless `size` is given."""
    n = (i % 256) if size is None else size - 8
    return i.to_bytes(8, "little") + bytes([i & 0xFF]) * n


def check_payload(i, msg):
    assert len(msg) >= 8, f"message {i} is {len(msg)} bytes"
    got = int.from_bytes(msg[:8], "little")
    assert got == i, f"expected message {i}, got {got}"
    assert msg == payload(i), f"message {i} has wrong bytes"
