"""Fast inter-process messages through a single-producer/single-consumer ring
in shared memory (Linux).

- ``pipe()``: an anonymous ring for this process and the processes it forks.
- ``create_producer`` / ``create_consumer`` / ``open_producer`` /
  ``open_consumer``: named rings (``/dev/shm/NAME``) between any processes of
  the same user, including the ``shmpipe`` command line.
- Blocking calls release the GIL; Ctrl-C interrupts them, losing nothing.
"""

import sys
from types import TracebackType
from typing import Iterator, Literal, Optional, Tuple, Type, TypedDict, Union

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__version__: str

DEFAULT_CAPACITY: int
"""Default data-area capacity: 1 MiB."""
MIN_CAPACITY: int
"""Smallest capacity: 64 bytes."""
MAX_CAPACITY: int
"""Largest capacity: 4 GiB."""

WaitStrategy = Literal["futex", "spin", "spin-yield", "semaphore"]
Variant = Literal["lockfree", "locked"]

class Stats(TypedDict):
    """A snapshot of a ring's counters (informational)."""

    capacity: int
    used_bytes: int
    messages_sent: int
    bytes_sent: int
    messages_received: int
    bytes_received: int
    full_waits: int
    empty_waits: int
    producer_wake_syscalls: int
    consumer_wake_syscalls: int
    lock_repairs: int
    producer: str
    """"never", "attached", "closed" (or "invalid(N)")."""
    consumer: str

class Error(Exception):
    """Base class of every error shmpipe raises."""

class Timeout(Error, TimeoutError):
    """The timeout passed before the operation could complete (nothing was sent or taken)."""

class Disconnected(Error):
    """The peer closed its side. A consumer sees this only after it received every message."""

class PeerDied(Error):
    """The peer's process died without closing its side. A consumer sees this only after
    it received every message the peer committed. A new process may take over the role."""

class TooLarge(Error, ValueError):
    """The message is longer than the ring accepts (capacity / 2 - 8 bytes)."""

    len: int
    """The message's length."""
    max: int
    """The largest message the ring accepts."""

class Corrupted(Error):
    """The shared state violates the protocol (a peer wrote a bad value, or the segment was
    damaged). The end stays unusable."""

class InvalidName(Error, ValueError):
    """The segment name is not allowed: '/' followed by 1 to 255 characters, none of them
    '/' or NUL, and not '.' or '..'."""

class InvalidCapacity(Error, ValueError):
    """The capacity is not allowed: a power of two from 64 bytes to 4 GiB."""

class InvalidOption(Error, ValueError):
    """An option (wait strategy, variant, timeout) is not allowed; the message says what is."""

class NotFound(Error, FileNotFoundError):
    """No shared-memory segment of that name exists (the message names it)."""

class RoleTaken(Error):
    """Another live process already is this ring's producer (or consumer)."""

class BufferTooSmall(Error, ValueError):
    """recv_into's buffer is shorter than the next message, which stays in the ring."""

    len: int
    """The message's length."""
    buf_len: int
    """The buffer's length."""

class Producer:
    """The sending end of a ring. One thread at a time; not picklable (pass it to a
    child process by fork)."""

    def send(self, data: Buffer, timeout: Optional[float] = None) -> None:
        """Send one message: any bytes-like object (bytes, bytearray, memoryview, a
        C-contiguous numpy array...). Waits while the ring is full, at most ``timeout``
        seconds (None: as long as it takes), with the GIL released.

        Raises Timeout, Disconnected (the consumer closed), PeerDied, TooLarge (longer
        than ``max_message``), Corrupted. KeyboardInterrupt interrupts the wait; the
        message is then not sent."""
    def try_send(self, data: Buffer) -> bool:
        """Send one message if it fits now: True if sent, False if the ring is full."""
    def close(self) -> None:
        """Close the producer side: the consumer receives every message sent so far,
        then sees the end. The creator of a named ring also removes its name. Closing
        an end this process never used only frees this process's copy. Idempotent."""
    def stats(self) -> Stats:
        """A snapshot of the ring's counters."""
    @property
    def capacity(self) -> int:
        """Data-area size of the ring in bytes."""
    @property
    def max_message(self) -> int:
        """Largest message the ring accepts (capacity / 2 - 8 bytes)."""
    @property
    def wait(self) -> WaitStrategy:
        """The ring's wait strategy."""
    @property
    def variant(self) -> Variant:
        """The ring design."""
    @property
    def name(self) -> Optional[str]:
        """The segment name of a named ring; None for pipe()."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    def __enter__(self) -> "Producer": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Message:
    """A message lent by ``Consumer.peek()``: its bytes stay in the ring's shared memory
    until ``release()``.

    ``memoryview(msg)`` (or any buffer consumer: ``numpy.frombuffer``, ``bytes``) reads
    them in place, read-only. ``with consumer.peek() as view:`` gives such a memoryview
    and releases both the view and the message at the end of the block; using the view
    afterwards raises ValueError. ``release()`` raises BufferError while other views of
    the message are alive. A Message dropped without ``release()`` leaves the message in
    the ring: the next receive returns it again."""

    def release(self) -> None:
        """Free the message's space in the ring. Raises BufferError while views of it
        are alive (nothing is released then). Idempotent."""
    @property
    def released(self) -> bool:
        """Whether the message was released (or its Consumer closed)."""
    def tobytes(self) -> bytes:
        """A copy of the message's bytes. Raises ValueError after release()."""
    def __bytes__(self) -> bytes: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int) -> memoryview: ...
    def __enter__(self) -> memoryview:
        """A read-only memoryview of the message, released with it on exit."""
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

class Consumer:
    """The receiving end of a ring. One thread at a time; not picklable (pass it to a
    child process by fork). Iterating yields messages until the producer closes."""

    def recv(self, timeout: Optional[float] = None) -> bytes:
        """Receive the next message, waiting at most ``timeout`` seconds (None: as long
        as it takes) with the GIL released.

        Raises Timeout; Disconnected once the producer closed and every message was
        received; PeerDied likewise if it died without closing; Corrupted.
        KeyboardInterrupt interrupts the wait; no message is then taken."""
    def try_recv(self) -> Optional[bytes]:
        """The next message if one is waiting, else None."""
    def recv_into(self, buffer: Buffer, timeout: Optional[float] = None) -> int:
        """Copy the next message into the start of ``buffer`` (writable) and return its
        length. A buffer shorter than the message raises BufferTooSmall and leaves the
        message in the ring. Waits and raises as recv() does."""
    def peek(self, timeout: Optional[float] = None) -> Message:
        """Lend the next message without copying it (see Message). Until it is
        released this consumer receives nothing else. Waits and raises as recv() does."""
    def try_peek(self) -> Optional[Message]:
        """Like peek(), but None at once if no message is waiting."""
    def close(self) -> None:
        """Close the consumer side: the producer's sends then raise Disconnected. The
        creator of a named ring also removes its name. Raises BufferError (and closes
        nothing) while views of a peeked Message are alive. Idempotent."""
    def stats(self) -> Stats:
        """A snapshot of the ring's counters."""
    @property
    def capacity(self) -> int:
        """Data-area size of the ring in bytes."""
    @property
    def max_message(self) -> int:
        """Largest message the ring accepts (capacity / 2 - 8 bytes)."""
    @property
    def wait(self) -> WaitStrategy:
        """The ring's wait strategy."""
    @property
    def variant(self) -> Variant:
        """The ring design."""
    @property
    def name(self) -> Optional[str]:
        """The segment name of a named ring; None for pipe()."""
    @property
    def closed(self) -> bool:
        """Whether close() was called."""
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def __enter__(self) -> "Consumer": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...

def create_producer(
    name: str,
    *,
    capacity: int = ...,
    wait: WaitStrategy = "futex",
    variant: Variant = "lockfree",
) -> Producer:
    """Create the named ring ``name`` ("/" followed by 1 to 255 characters: the file
    /dev/shm/NAME; it must not exist) and attach as its producer.

    capacity: data-area bytes, a power of two from 64 to 4 GiB (default 1 MiB; the
    largest message is capacity / 2 - 8). The name is removed when this end closes.
    Raises InvalidName, InvalidCapacity, InvalidOption, or Error (e.g. it exists)."""

def create_consumer(
    name: str,
    *,
    capacity: int = ...,
    wait: WaitStrategy = "futex",
    variant: Variant = "lockfree",
) -> Consumer:
    """Create the named ring ``name`` and attach as its consumer; see create_producer."""

def open_producer(name: str, *, timeout: Optional[float] = None) -> Producer:
    """Attach as the producer of the existing named ring ``name`` (capacity, wait
    strategy and variant come from the segment). With a timeout, wait that long for the
    segment to appear; without one a missing segment raises NotFound at once."""

def open_consumer(name: str, *, timeout: Optional[float] = None) -> Consumer:
    """Attach as the consumer of the existing named ring ``name``; see open_producer."""

def pipe(
    *,
    capacity: int = ...,
    wait: WaitStrategy = "futex",
    variant: Variant = "lockfree",
) -> Tuple[Producer, Consumer]:
    """A ring in anonymous sealed shared memory for this process and the processes it
    forks (os.fork(), multiprocessing with the "fork" start method), returned as
    (sending end, receiving end). Each end takes its role in the process that first
    uses it; each process keeps the end it uses and closes the other (closing an end
    this process never used does not end the stream)."""

def remove(name: str) -> None:
    """Remove the named segment (attached processes keep working). Raises NotFound."""

def max_message_for(capacity: int) -> int:
    """The largest message a ring of ``capacity`` bytes accepts (capacity / 2 - 8)."""
