//! Every error a caller can get, with its exact payload: timeouts, orderly
//! disconnection in both directions, `TooLarge`, invalid names, capacities
//! and options, existing and missing segments, damaged or foreign headers
//! (built by hand from the documented offsets, or patched into a real
//! segment), unsafe permissions, half-initialised segments, and role
//! conflicts. Also the `Display` texts and the `io::Read`/`io::Write` byte
//! stream.

#[macro_use]
mod common;

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant};

use common::{
    builder, fill_until_full, make_pair, unique_name, Backing, Builder, ShmName, Variant,
};
use shmpipe::{EndpointState, Error, LockFree, Locked, VariantKind, WaitStrategy};

/// Header offsets, from the documented on-memory format.
const OFF_MAGIC: u64 = 0;
const OFF_VERSION: u64 = 8;
const OFF_VARIANT: u64 = 12;
const OFF_WAIT: u64 = 16;
const OFF_CAPACITY: u64 = 24;
const OFF_HEADER_SIZE: u64 = 32;
const HEADER_SIZE: u64 = 896;
const MAGIC: &[u8; 8] = b"SHMPIPE\0";

const SHORT: Duration = Duration::from_millis(30);

fn variant_code<V: Variant>() -> u32 {
    match VariantKind::of::<V>() {
        VariantKind::Locked => 2,
        VariantKind::LockFree => 1,
    }
}

fn other_variant<V: Variant>() -> VariantKind {
    match VariantKind::of::<V>() {
        VariantKind::Locked => VariantKind::LockFree,
        VariantKind::LockFree => VariantKind::Locked,
    }
}

// ---------------------------------------------------------------------------
// Timeouts

fn recv_timeout_on_empty<V: Variant>() {
    for wait in WaitStrategy::ALL {
        for backing in [Backing::InProcess, Backing::Named] {
            let ctx = format!("{wait}, {backing:?}");
            let b = builder::<V>().capacity(4096).wait(wait);
            let mut e = make_pair(&b, backing).unwrap();
            let mut buf = Vec::new();
            let t = Instant::now();
            let r = e.rx.recv_timeout(&mut buf, SHORT);
            assert!(matches!(r, Err(Error::Timeout)), "{ctx}: {r:?}");
            assert!(t.elapsed() >= SHORT, "{ctx}: returned early");
            let t = Instant::now();
            let r = e.rx.recv_with_timeout(SHORT, |m| m.len());
            assert!(matches!(r, Err(Error::Timeout)), "{ctx}: {r:?}");
            assert!(t.elapsed() >= SHORT, "{ctx}: returned early");
            let r = e.rx.recv_timeout(&mut buf, Duration::ZERO);
            assert!(matches!(r, Err(Error::Timeout)), "{ctx}: {r:?}");
            // The ring still works afterwards.
            e.tx.send(b"after").unwrap();
            assert_eq!(e.rx.recv_timeout(&mut buf, SHORT).unwrap(), 5, "{ctx}");
            assert_eq!(buf, b"after");
            assert!(e.rx.stats().empty_waits >= 3, "{ctx}");
        }
    }
}

fn send_timeout_on_full<V: Variant>() {
    for wait in WaitStrategy::ALL {
        for backing in [Backing::InProcess, Backing::Named] {
            let ctx = format!("{wait}, {backing:?}");
            let b = builder::<V>().capacity(256).wait(wait);
            let mut e = make_pair(&b, backing).unwrap();
            let n = fill_until_full(&mut e.tx, &[7u8; 24]);
            assert!(n > 0, "{ctx}");
            let t = Instant::now();
            let r = e.tx.send_timeout(&[1u8; 24], SHORT);
            assert!(matches!(r, Err(Error::Timeout)), "{ctx}: {r:?}");
            assert!(t.elapsed() >= SHORT, "{ctx}: returned early");
            let t = Instant::now();
            let r = e.tx.claim_timeout(24, SHORT).map(|c| c.len());
            assert!(matches!(r, Err(Error::Timeout)), "{ctx}: {r:?}");
            assert!(t.elapsed() >= SHORT, "{ctx}: returned early");
            assert!(matches!(e.tx.try_send(&[1u8; 24]), Err(Error::Full)));
            // Nothing was lost or added by the failed attempts.
            let mut got = 0;
            e.rx.drain(usize::MAX, |m| {
                assert_eq!(m, [7u8; 24]);
                got += 1;
            })
            .unwrap();
            assert_eq!(got, n, "{ctx}");
            e.tx.send_timeout(&[1u8; 24], SHORT).unwrap();
            assert!(e.tx.stats().full_waits >= 2, "{ctx}");
        }
    }
}

/// A receiver waiting with a long timeout gets a message sent later by
/// another thread (it must be woken, not time out).
fn recv_timeout_gets_late_message<V: Variant>() {
    for wait in WaitStrategy::ALL {
        let b = builder::<V>().capacity(4096).wait(wait);
        let (mut tx, mut rx) = b.in_process().unwrap().split().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            tx.send(b"late").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(tx);
        });
        let mut buf = Vec::new();
        let r = rx.recv_timeout(&mut buf, Duration::from_secs(60));
        assert_eq!(r.unwrap(), 4, "{wait}");
        assert_eq!(buf, b"late");
        let r = rx.recv_timeout(&mut buf, Duration::from_secs(60));
        assert!(matches!(r, Err(Error::Disconnected)), "{wait}: {r:?}");
        t.join().unwrap();
    }
}

// ---------------------------------------------------------------------------
// Disconnection

fn consumer_dropped<V: Variant>() {
    for backing in Backing::ALL {
        for full in [false, true] {
            let ctx = format!("{backing:?}, full ring: {full}");
            let b = builder::<V>().capacity(256);
            let e = make_pair(&b, backing).unwrap();
            let (mut tx, rx) = (e.tx, e.rx);
            if full {
                fill_until_full(&mut tx, b"x");
            }
            drop(rx);
            assert_eq!(tx.stats().consumer, EndpointState::Closed, "{ctx}");
            let disc = |r: Result<(), Error>, what: &str| {
                assert!(
                    matches!(r, Err(Error::Disconnected)),
                    "{ctx}: {what}: {r:?}"
                );
            };
            disc(tx.try_send(b"m"), "try_send");
            disc(tx.send(b"m"), "send");
            disc(tx.send_timeout(b"m", SHORT), "send_timeout");
            disc(tx.try_claim(1).map(drop), "try_claim");
            disc(tx.claim(1).map(drop), "claim");
            disc(tx.claim_timeout(1, SHORT).map(drop), "claim_timeout");
            let w = tx.write(b"m").unwrap_err();
            assert_eq!(w.kind(), std::io::ErrorKind::BrokenPipe, "{ctx}: {w}");
            // Still disconnected on every later call.
            disc(tx.send(b"m"), "send again");
        }
    }
}

fn producer_dropped<V: Variant>() {
    for backing in Backing::ALL {
        let b = builder::<V>().capacity(4096);
        let e = make_pair(&b, backing).unwrap();
        let (mut tx, mut rx) = (e.tx, e.rx);
        let msgs: Vec<Vec<u8>> = (0..7).map(|i| vec![i as u8; i * 13]).collect();
        for m in &msgs {
            tx.send(m).unwrap();
        }
        drop(tx);
        assert_eq!(rx.stats().producer, EndpointState::Closed);
        // Everything committed is still delivered, by every kind of receive.
        let mut buf = Vec::new();
        assert_eq!(rx.try_recv(&mut buf).unwrap(), 0);
        assert_eq!(rx.recv(&mut buf).unwrap(), 13);
        assert_eq!(buf, msgs[1]);
        assert_eq!(rx.recv_with(|m| m.to_vec()).unwrap(), msgs[2]);
        assert_eq!(
            rx.recv_with_timeout(SHORT, |m| m.to_vec()).unwrap(),
            msgs[3]
        );
        assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), msgs[4]);
        let mut rest = Vec::new();
        assert_eq!(rx.drain(10, |m| rest.push(m.to_vec())).unwrap(), 2);
        assert_eq!(rest, &msgs[5..]);
        // Then Disconnected, from every kind of receive, every time.
        for _ in 0..2 {
            let d = |r: Result<usize, Error>, what: &str| {
                assert!(
                    matches!(r, Err(Error::Disconnected)),
                    "{backing:?}: {what}: {r:?}"
                );
            };
            d(rx.try_recv(&mut buf), "try_recv");
            d(rx.recv(&mut buf), "recv");
            d(rx.recv_timeout(&mut buf, SHORT), "recv_timeout");
            d(rx.try_recv_with(|m| m.len()), "try_recv_with");
            d(rx.recv_with(|m| m.len()), "recv_with");
            d(
                rx.recv_with_timeout(SHORT, |m| m.len()),
                "recv_with_timeout",
            );
            d(rx.drain(3, |_| ()), "drain");
        }
        let mut out = [0u8; 4];
        assert_eq!(rx.read(&mut out).unwrap(), 0, "{backing:?}: read at EOF");
    }
}

// ---------------------------------------------------------------------------
// Sizes, names, capacities, options

fn too_large<V: Variant>() {
    for cap in [64u64, 4096, 1 << 20] {
        let max = (cap / 2 - 8) as usize;
        let b = builder::<V>().capacity(cap);
        let (mut tx, mut rx) = b.in_process().unwrap().split().unwrap();
        assert_eq!(tx.max_message(), max);
        let big = vec![0u8; max + 1];
        let tl = |r: Result<(), Error>, len: usize, what: &str| match r {
            Err(Error::TooLarge { len: l, max: m }) if l == len && m == max => {}
            other => panic!("capacity {cap}: {what}: {other:?}"),
        };
        tl(tx.try_send(&big), max + 1, "try_send");
        tl(tx.send(&big), max + 1, "send");
        tl(tx.send_timeout(&big, SHORT), max + 1, "send_timeout");
        tl(tx.try_claim(max + 1).map(drop), max + 1, "try_claim");
        tl(tx.claim(max + 1).map(drop), max + 1, "claim");
        tl(
            tx.claim_timeout(max + 1, SHORT).map(drop),
            max + 1,
            "claim_timeout",
        );
        tl(
            tx.try_claim(usize::MAX).map(drop),
            usize::MAX,
            "try_claim(usize::MAX)",
        );
        tl(
            tx.claim(usize::MAX).map(drop),
            usize::MAX,
            "claim(usize::MAX)",
        );
        // Nothing was sent; exactly `max` bytes fit in the empty ring.
        assert_eq!(tx.stats().messages_sent, 0);
        tx.try_send(&big[..max]).unwrap();
        assert_eq!(rx.try_recv_with(|m| m.len()).unwrap(), max);
        // io::Write sends at most max_message bytes per write.
        assert_eq!(tx.write(&big).unwrap(), max, "capacity {cap}");
        assert_eq!(rx.try_recv_with(|m| m.len()).unwrap(), max);
        let e = Error::TooLarge { len: max + 1, max };
        let s = e.to_string();
        assert!(
            s.contains(&format!("{}", max + 1)) && s.contains(&format!("at most {max} bytes")),
            "{s}"
        );
    }
}

/// Every way to name a segment refuses a bad name with `InvalidName`.
fn invalid_names<V: Variant>() {
    let long = format!("/{}", "n".repeat(256));
    let names = [
        "", "x", "/", "/a/b", "/.", "/..", "a/b", "//", "/a/", &long, "/a\0b", "/\0",
    ];
    let b = builder::<V>().capacity(4096);
    for name in names {
        let check = |r: Result<(), Error>, what: &str| match r {
            Err(Error::InvalidName { name: n, reason }) => {
                assert_eq!(n, name, "{what}");
                assert!(!reason.is_empty());
            }
            other => panic!("{name:?}: {what}: expected InvalidName, got {other:?}"),
        };
        check(shmpipe::validate_name(name).map(drop), "validate_name");
        check(b.create_producer(name).map(drop), "create_producer");
        check(b.create_consumer(name).map(drop), "create_consumer");
        check(b.open_producer(name).map(drop), "open_producer");
        check(b.open_consumer(name).map(drop), "open_consumer");
        check(
            b.open_or_create_producer(name).map(drop),
            "open_or_create_producer",
        );
        check(
            b.open_or_create_consumer(name).map(drop),
            "open_or_create_consumer",
        );
        check(shmpipe::remove(name), "remove");
        check(shmpipe::inspect(name).map(drop), "inspect");
    }
    // The longest valid name works end to end.
    let base = unique_name("long");
    let longest = format!("{base}{}", "z".repeat(256 - base.len()));
    assert_eq!(longest.len(), 256);
    shmpipe::validate_name(&longest).unwrap();
    let mut tx = b.create_producer(&longest).unwrap();
    let mut rx = b.open_consumer(&longest).unwrap();
    tx.send(b"ok").unwrap();
    assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"ok");
    drop(tx);
    assert!(matches!(
        b.open_producer(&longest),
        Err(Error::NotFound { .. })
    ));
}

fn invalid_capacities<V: Variant>() {
    for cap in [0u64, 1, 32, 63, 100, 3000, (1 << 32) + 1, 1 << 33, u64::MAX] {
        let name = ShmName::new("cap");
        let b = builder::<V>().capacity(cap);
        let check = |r: Result<(), Error>, what: &str| match r {
            Err(Error::InvalidCapacity { requested }) => assert_eq!(requested, cap, "{what}"),
            other => panic!("capacity {cap}: {what}: expected InvalidCapacity, got {other:?}"),
        };
        check(b.create_producer(&name).map(drop), "create_producer");
        check(b.create_consumer(&name).map(drop), "create_consumer");
        check(
            b.open_or_create_producer(&name).map(drop),
            "open_or_create_producer",
        );
        check(b.anonymous().map(drop), "anonymous");
        check(b.in_process().map(drop), "in_process");
        assert!(!name.exists(), "capacity {cap}: a segment was left behind");
    }
    // The boundaries that are allowed.
    for cap in [64u64, 128, 1 << 16] {
        builder::<V>().capacity(cap).in_process().unwrap();
    }
    let s = Error::InvalidCapacity { requested: 100 }.to_string();
    assert!(
        s.contains("100")
            && s.contains("power of two")
            && s.contains("64")
            && s.contains("4294967296"),
        "{s}"
    );
}

fn invalid_mode<V: Variant>() {
    for mode in [0o1600, 0o4600, 0o10600] {
        let name = ShmName::new("mode");
        match builder::<V>().mode(mode).create_producer(&name) {
            Err(Error::InvalidOption { reason }) => assert!(reason.contains("0o777"), "{reason}"),
            other => panic!("mode {mode:#o}: {other:?}"),
        }
        assert!(!name.exists());
    }
}

// ---------------------------------------------------------------------------
// Existing, missing and foreign segments

fn create_existing<V: Variant>() {
    let name = ShmName::new("exists");
    let b = builder::<V>().capacity(4096);
    let mut tx = b.create_producer(&name).unwrap();
    let io_exists = |r: Result<(), Error>, what: &str| match r {
        Err(e @ Error::AlreadyExists { .. }) => {
            assert_names(&e, &name, what);
            assert_eq!(
                std::io::Error::from(e).kind(),
                std::io::ErrorKind::AlreadyExists,
                "{what}"
            )
        }
        other => panic!("{what}: {other:?}"),
    };
    io_exists(b.create_producer(&name).map(drop), "create_producer");
    io_exists(b.create_consumer(&name).map(drop), "create_consumer");
    io_exists(
        Builder::<LockFree>::default()
            .create_consumer(&name)
            .map(drop),
        "create_consumer (lock-free)",
    );
    io_exists(
        Builder::<Locked>::default()
            .create_consumer(&name)
            .map(drop),
        "create_consumer (locked)",
    );
    // The failed creates did not disturb the segment.
    let mut rx = b.open_consumer(&name).unwrap();
    tx.send(b"intact").unwrap();
    assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"intact");
}

fn open_missing<V: Variant>() {
    let name = ShmName::new("missing");
    let b = builder::<V>();
    let enoent = |r: Result<(), Error>, what: &str| match r {
        Err(Error::NotFound { name: n }) => assert_eq!(n, name.as_str(), "{what}"),
        other => panic!("{what}: {other:?}"),
    };
    enoent(b.open_producer(&name).map(drop), "open_producer");
    enoent(b.open_consumer(&name).map(drop), "open_consumer");
    enoent(shmpipe::inspect(&name).map(drop), "inspect");
    enoent(shmpipe::remove(&name), "remove");
    assert!(!name.exists());
}

/// A real segment of variant `V` (4 KiB, lock-free or locked), left on
/// disk with no endpoint attached, for patching.
fn closed_segment<V: Variant>(name: &ShmName) {
    let tx = builder::<V>()
        .capacity(4096)
        .unlink_on_drop(false)
        .create_producer(name)
        .unwrap();
    drop(tx);
}

fn patch(name: &ShmName, off: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(name.path()).unwrap();
    f.write_all_at(bytes, off).unwrap();
}

fn set_size(name: &ShmName, size: u64) {
    let f = OpenOptions::new().write(true).open(name.path()).unwrap();
    f.set_len(size).unwrap();
}

/// Open `name` as producer and as consumer (and with `inspect`); all must
/// fail as `check` says.
fn open_fails<V: Variant>(
    name: &ShmName,
    b: &Builder<V>,
    what: &str,
    check: impl Fn(&Error) -> bool,
) {
    for (role, r) in [
        ("open_producer", b.open_producer(name).map(drop)),
        ("open_consumer", b.open_consumer(name).map(drop)),
        (
            "open_or_create_consumer",
            b.open_or_create_consumer(name).map(drop),
        ),
    ] {
        match r {
            Err(e) if check(&e) => assert_names(&e, name, &format!("{what}: {role}")),
            other => panic!("{what}: {role}: {other:?}"),
        }
    }
}

/// An open-time error names its segment, in its field and in its message.
fn assert_names(e: &Error, name: &str, what: &str) {
    let field = match e {
        Error::NotShmpipe { name, .. }
        | Error::VersionMismatch { name, .. }
        | Error::WrongVariant { name, .. }
        | Error::SizeMismatch { name, .. }
        | Error::Io { name, .. } => name.as_deref(),
        Error::NotFound { name } | Error::AlreadyExists { name } => Some(name.as_str()),
        _ => return,
    };
    assert_eq!(field, Some(name), "{what}: {e:?}");
    assert!(e.to_string().contains(name), "{what}: {e}");
}

fn bad_headers<V: Variant>() {
    let b = builder::<V>().open_timeout(Duration::from_millis(50));
    let fresh = || {
        let name = ShmName::new("hdr");
        closed_segment::<V>(&name);
        // Baseline: the unpatched segment opens (and is left closed again).
        drop(b.open_consumer(&name).unwrap());
        name
    };

    let name = fresh();
    patch(&name, OFF_MAGIC, &0xdead_beef_u64.to_le_bytes());
    open_fails(&name, &b, "wrong magic", |e| {
        matches!(
            e,
            Error::NotShmpipe {
                found: 0xdead_beef,
                ..
            }
        )
    });
    assert!(matches!(
        shmpipe::inspect(&name),
        Err(Error::NotShmpipe { .. })
    ));

    let name = fresh();
    // A format-v1 segment (the consumer read `tail` per message) is refused.
    patch(&name, OFF_VERSION, &1u32.to_le_bytes());
    open_fails(&name, &b, "wrong version", |e| {
        matches!(
            e,
            Error::VersionMismatch {
                found: 1,
                expected: 3,
                ..
            }
        )
    });

    let name = fresh();
    // So is a format-v2 one (glibc sem_t in the wait lines, counters per message).
    patch(&name, OFF_VERSION, &2u32.to_le_bytes());
    open_fails(&name, &b, "format v2", |e| {
        matches!(
            e,
            Error::VersionMismatch {
                found: 2,
                expected: 3,
                ..
            }
        )
    });

    let name = fresh();
    let other = 3 - variant_code::<V>();
    patch(&name, OFF_VARIANT, &other.to_le_bytes());
    let want = other_variant::<V>();
    open_fails(
        &name,
        &b,
        "other variant",
        |e| matches!(e, Error::WrongVariant { found, expected, .. } if *found == want && *expected == VariantKind::of::<V>()),
    );
    // inspect accepts either variant.
    assert_eq!(shmpipe::inspect(&name).unwrap().variant, want);

    let corrupted = |e: &Error| matches!(e, Error::Corrupted { .. });
    let name = fresh();
    patch(&name, OFF_VARIANT, &7u32.to_le_bytes());
    open_fails(&name, &b, "unknown variant", corrupted);
    let name = fresh();
    patch(&name, OFF_WAIT, &9u32.to_le_bytes());
    open_fails(&name, &b, "unknown wait strategy", corrupted);
    let name = fresh();
    patch(&name, OFF_CAPACITY, &100u64.to_le_bytes());
    open_fails(&name, &b, "capacity not a power of two", corrupted);
    let name = fresh();
    patch(&name, OFF_HEADER_SIZE, &0u64.to_le_bytes());
    open_fails(&name, &b, "header size", corrupted);

    // Size: header says 8 KiB but the object holds 4 KiB, and vice versa.
    let name = fresh();
    patch(&name, OFF_CAPACITY, &8192u64.to_le_bytes());
    open_fails(&name, &b, "capacity above the size", |e| {
        matches!(e, Error::SizeMismatch { expected, found, .. }
            if *expected == HEADER_SIZE + 8192 && *found == HEADER_SIZE + 4096)
    });
    let name = fresh();
    set_size(&name, HEADER_SIZE + 8192);
    open_fails(&name, &b, "object too large", |e| {
        matches!(e, Error::SizeMismatch { expected, found, .. }
            if *expected == HEADER_SIZE + 4096 && *found == HEADER_SIZE + 8192)
    });
    let name = fresh();
    set_size(&name, 100);
    open_fails(&name, &b, "object smaller than a header", |e| {
        matches!(
            e,
            Error::SizeMismatch {
                expected: HEADER_SIZE,
                found: 100,
                ..
            }
        )
    });
    let name = fresh();
    set_size(&name, HEADER_SIZE + 100);
    open_fails(&name, &b, "data area cut short", |e| {
        matches!(e, Error::SizeMismatch { .. })
    });
}

/// Not initialised: version 0 (creator died half-way), an all-zero object,
/// an empty object. Each waits `open_timeout`, then `NotInitialized`.
fn not_initialized<V: Variant>() {
    let timeout = Duration::from_millis(100);
    let b = builder::<V>().open_timeout(timeout);
    let check = |name: &ShmName, what: &str| {
        for role in ["producer", "consumer"] {
            let t = Instant::now();
            let r = if role == "producer" {
                b.open_producer(name).map(drop)
            } else {
                b.open_consumer(name).map(drop)
            };
            match r {
                Err(Error::NotInitialized { waited }) => {
                    assert!(waited >= timeout, "{what}: waited {waited:?}");
                    assert!(t.elapsed() >= timeout, "{what}: returned early");
                }
                other => panic!("{what}: open_{role}: {other:?}"),
            }
        }
        assert!(
            matches!(shmpipe::inspect(name), Err(Error::NotInitialized { .. })),
            "{what}: inspect"
        );
    };

    // A real segment whose version word was never published.
    let name = ShmName::new("half");
    closed_segment::<V>(&name);
    patch(&name, OFF_VERSION, &0u32.to_le_bytes());
    check(&name, "version 0");

    // An object of the right size, all zeros.
    let name = ShmName::new("zeros");
    make_object(&name, 0o600, &[]);
    set_size(&name, HEADER_SIZE + 4096);
    check(&name, "all zeros");

    // A zero-size object that stays zero-size.
    let name = ShmName::new("empty");
    make_object(&name, 0o600, &[]);
    check(&name, "zero size");
    let t = Instant::now();
    let r = builder::<V>()
        .open_timeout(Duration::ZERO)
        .open_consumer(&name)
        .map(drop);
    assert!(matches!(r, Err(Error::NotInitialized { .. })), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(30));

    let s = Error::NotInitialized { waited: timeout }.to_string();
    assert!(s.contains("remove"), "{s}");
}

/// An opener waiting for a half-initialised segment gets it once the
/// creator publishes the version word.
fn late_initialization<V: Variant>() {
    let name = ShmName::new("late");
    closed_segment::<V>(&name);
    patch(&name, OFF_VERSION, &0u32.to_le_bytes());
    let path = name.path();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(&3u32.to_le_bytes(), OFF_VERSION).unwrap();
    });
    let b = builder::<V>().open_timeout(Duration::from_secs(60));
    let rx = b.open_consumer(&name).unwrap();
    assert_eq!(rx.capacity(), 4096);
    t.join().unwrap();
}

/// Create `/dev/shm/<name>` ourselves with `mode` and `bytes`.
fn make_object(name: &ShmName, mode: u32, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(name.path())
        .unwrap();
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .unwrap();
    f.write_all(bytes).unwrap();
}

/// A header built by hand from the documented offsets.
fn hand_header(variant: u32, wait: u32, capacity: u64) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_SIZE as usize];
    h[0..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&3u32.to_le_bytes());
    h[12..16].copy_from_slice(&variant.to_le_bytes());
    h[16..20].copy_from_slice(&wait.to_le_bytes());
    h[24..32].copy_from_slice(&capacity.to_le_bytes());
    h[32..40].copy_from_slice(&HEADER_SIZE.to_le_bytes());
    h
}

/// The documented layout is the real one: a lock-free segment written by
/// hand opens and carries messages; the same object with one field changed
/// is refused with the matching error.
#[test]
fn hand_built_segments() {
    let build = |f: &dyn Fn(&mut Vec<u8>)| {
        let name = ShmName::new("hand");
        let mut h = hand_header(1, 1, 4096);
        f(&mut h);
        make_object(&name, 0o600, &h);
        set_size(&name, HEADER_SIZE + 4096);
        name
    };
    let b = shmpipe::Builder::new().open_timeout(Duration::from_millis(20));

    let name = build(&|_| {});
    let mut tx = b.open_producer(&name).unwrap();
    let mut rx = b.open_consumer(&name).unwrap();
    assert_eq!(tx.capacity(), 4096);
    assert_eq!(tx.wait_strategy(), WaitStrategy::Spin);
    tx.send(b"by hand").unwrap();
    assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"by hand");
    let info = shmpipe::inspect(&name).unwrap();
    assert_eq!(info.variant, VariantKind::LockFree);
    assert_eq!(info.capacity, 4096);
    assert_eq!(info.size, HEADER_SIZE + 4096);
    assert!(info.producer_alive && info.consumer_alive);
    drop((tx, rx));
    // The record written by the producer is where the format says.
    let f = std::fs::File::open(name.path()).unwrap();
    let mut word = [0u8; 8];
    f.read_exact_at(&mut word, HEADER_SIZE).unwrap();
    assert_eq!(
        u64::from_le_bytes(word),
        (1 << 32) | 7,
        "message record header"
    );
    f.read_exact_at(&mut word, 128).unwrap();
    assert_eq!(u64::from_le_bytes(word), 16, "tail");
    f.read_exact_at(&mut word, 256).unwrap();
    assert_eq!(u64::from_le_bytes(word), 16, "head");

    let name = build(&|h| h[0] = b'X');
    let r = b.open_consumer(&name);
    assert!(matches!(r, Err(Error::NotShmpipe { .. })), "{r:?}");
    // Magic wrong and version 0: not ours, refused at once.
    let name = build(&|h| {
        h[0] = b'X';
        h[8] = 0;
    });
    let r = b.open_consumer(&name);
    assert!(matches!(r, Err(Error::NotShmpipe { .. })), "{r:?}");
    let name = build(&|h| h[8] = 9);
    let r = b.open_consumer(&name);
    assert!(
        matches!(
            r,
            Err(Error::VersionMismatch {
                found: 9,
                expected: 3,
                ..
            })
        ),
        "{r:?}"
    );
    let name = build(&|h| h[12] = 2);
    let r = b.open_consumer(&name);
    assert!(
        matches!(
            r,
            Err(Error::WrongVariant {
                found: VariantKind::Locked,
                expected: VariantKind::LockFree,
                ..
            })
        ),
        "{r:?}"
    );
    let name = build(&|h| h[24..32].copy_from_slice(&2048u64.to_le_bytes()));
    let r = b.open_consumer(&name);
    assert!(
        matches!(r, Err(Error::SizeMismatch { expected, found, .. })
            if expected == HEADER_SIZE + 2048 && found == HEADER_SIZE + 4096),
        "{r:?}"
    );
}

/// Something that is not a shm object at all.
#[test]
fn not_a_regular_file() {
    let name = ShmName::new("dir");
    std::fs::create_dir(name.path()).unwrap();
    let r = shmpipe::Builder::new().open_consumer(&name);
    std::fs::remove_dir(name.path()).unwrap();
    // shm_open of a directory fails in the kernel (EISDIR) or is refused by
    // the library: either way it is not opened.
    assert!(
        matches!(r, Err(Error::NotRegularFile) | Err(Error::Io { .. })),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------
// Permissions

fn permissions<V: Variant>() {
    for mode in [0o640, 0o604, 0o660, 0o606, 0o620, 0o602, 0o644, 0o666] {
        let name = ShmName::new("perm");
        let mut tx = builder::<V>()
            .capacity(4096)
            .mode(mode)
            .create_producer(&name)
            .unwrap();
        let meta = std::fs::metadata(name.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, mode, "umask applied");
        match builder::<V>().open_consumer(&name) {
            Err(Error::UnsafePermissions { mode: m }) => assert_eq!(m, mode),
            other => panic!("mode {mode:#o}: {other:?}"),
        }
        let mut rx = builder::<V>()
            .allow_shared_permissions(true)
            .open_consumer(&name)
            .unwrap();
        tx.send(b"shared").unwrap();
        assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"shared");
    }
    // Owner-only modes are fine, and a later chmod is noticed.
    for mode in [0o600, 0o700, 0o400] {
        let name = ShmName::new("perm");
        let _tx = builder::<V>().mode(mode).create_producer(&name).unwrap();
        if mode == 0o400 {
            // Read-only for the owner: opening read-write is refused by the OS
            // (unless we are root, who may open it anyway).
            let r = builder::<V>().open_consumer(&name);
            // SAFETY: geteuid cannot fail.
            if unsafe { libc::geteuid() } != 0 {
                match r {
                    Err(e @ Error::Io { .. }) => assert_names(&e, &name, "mode 0400"),
                    other => panic!("mode 0400: {other:?}"),
                }
            }
            continue;
        }
        drop(builder::<V>().open_consumer(&name).unwrap());
        std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        match builder::<V>().open_consumer(&name) {
            Err(Error::UnsafePermissions { mode: 0o644 }) => {}
            other => panic!("after chmod 644: {other:?}"),
        }
    }
    let s = Error::UnsafePermissions { mode: 0o640 }.to_string();
    assert!(
        s.contains("0o640") && s.contains("allow_shared_permissions(true)"),
        "{s}"
    );
}

// ---------------------------------------------------------------------------
// Roles

fn role_taken<V: Variant>() {
    let name = ShmName::new("role");
    let b = builder::<V>().capacity(4096);
    let mut rx = b.create_consumer(&name).unwrap();
    let mut p1 = b.open_producer(&name).unwrap();
    let taken = |r: Result<(), Error>, role: &str, what: &str| match r {
        Err(Error::RoleTaken { role: r }) => assert_eq!(r, role, "{what}"),
        other => panic!("{what}: expected RoleTaken, got {other:?}"),
    };
    taken(b.open_producer(&name).map(drop), "producer", "2nd producer");
    taken(
        b.open_or_create_producer(&name).map(drop),
        "producer",
        "open_or_create_producer",
    );
    taken(b.open_consumer(&name).map(drop), "consumer", "2nd consumer");
    taken(
        b.open_or_create_consumer(&name).map(drop),
        "consumer",
        "open_or_create_consumer",
    );
    // The refused openers changed nothing.
    p1.send(b"one").unwrap();
    assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"one");
    p1.send(b"two").unwrap();
    let info = shmpipe::inspect(&name).unwrap();
    assert!(info.producer_alive && info.consumer_alive);
    assert_eq!(info.stats.producer, EndpointState::Attached);

    // Once the first producer closed, a new one may take the role; the
    // consumer gets the messages of both, in order.
    drop(p1);
    assert_eq!(rx.stats().producer, EndpointState::Closed);
    assert!(!shmpipe::inspect(&name).unwrap().producer_alive);
    let mut p2 = b.open_producer(&name).unwrap();
    assert_eq!(rx.stats().producer, EndpointState::Attached);
    taken(b.open_producer(&name).map(drop), "producer", "3rd producer");
    p2.send(b"three").unwrap();
    assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"two");
    assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"three");
    assert!(matches!(rx.try_recv(&mut Vec::new()), Err(Error::Empty)));
    drop(p2);
    assert!(matches!(
        rx.try_recv(&mut Vec::new()),
        Err(Error::Disconnected)
    ));
}

/// A consumer that saw the first producer's orderly close and then a new
/// producer attach: it must receive the new producer's messages and, while
/// that producer lives, report `Empty` rather than `Disconnected`.
fn consumer_follows_new_producer<V: Variant>() {
    let name = ShmName::new("role2");
    let b = builder::<V>().capacity(4096);
    let mut rx = b.create_consumer(&name).unwrap();
    let mut p1 = b.open_producer(&name).unwrap();
    p1.send(b"one").unwrap();
    drop(p1);
    let mut buf = Vec::new();
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 3);
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Disconnected)));
    let mut p2 = b.open_producer(&name).unwrap();
    p2.send(b"two").unwrap();
    assert_eq!(rx.try_recv(&mut buf).unwrap(), 3);
    assert_eq!(buf, b"two");
    let r = rx.try_recv(&mut buf);
    assert!(
        matches!(r, Err(Error::Empty)),
        "a live producer is attached, yet: {r:?}"
    );
    let r = rx.recv_timeout(&mut buf, SHORT);
    assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
    drop(p2);
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Disconnected)));
}

/// A peer that never attached is not a closed peer: the consumer sees
/// `Empty`/`Timeout`, the producer fills the ring and then sees `Full`.
fn peer_never_attached<V: Variant>() {
    let name = ShmName::new("never");
    let b = builder::<V>().capacity(256);
    let mut rx = b.create_consumer(&name).unwrap();
    assert_eq!(rx.stats().producer, EndpointState::Never);
    let mut buf = Vec::new();
    assert!(matches!(rx.try_recv(&mut buf), Err(Error::Empty)));
    assert!(matches!(
        rx.recv_timeout(&mut buf, SHORT),
        Err(Error::Timeout)
    ));
    assert_eq!(rx.drain(4, |_| ()).unwrap(), 0);
    drop(rx);

    let name = ShmName::new("never");
    let mut tx = b.create_producer(&name).unwrap();
    assert_eq!(tx.stats().consumer, EndpointState::Never);
    let n = fill_until_full(&mut tx, b"queued");
    assert!(n > 0);
    assert!(matches!(
        tx.send_timeout(b"queued", SHORT),
        Err(Error::Timeout)
    ));
    // A consumer that attaches late gets everything.
    let mut rx = b.open_consumer(&name).unwrap();
    let mut got = 0;
    rx.drain(usize::MAX, |m| {
        assert_eq!(m, b"queued");
        got += 1;
    })
    .unwrap();
    assert_eq!(got, n);
}

/// `open_or_create_*`: the first call creates, the second opens the same
/// ring; a segment of the other variant is refused.
fn open_or_create<V: Variant>() {
    let name = ShmName::new("ooc");
    let b = builder::<V>().capacity(4096);
    let mut rx = b.open_or_create_consumer(&name).unwrap();
    assert!(name.exists());
    let mut tx = builder::<V>()
        .capacity(1 << 20) // ignored when opening: the segment's own capacity wins
        .open_or_create_producer(&name)
        .unwrap();
    assert_eq!(tx.capacity(), 4096);
    tx.send(b"both ways").unwrap();
    assert_eq!(rx.try_recv_with(|m| m.to_vec()).unwrap(), b"both ways");
    let r = if VariantKind::of::<V>() == VariantKind::Locked {
        Builder::<LockFree>::default()
            .open_or_create_producer(&name)
            .map(drop)
    } else {
        Builder::<Locked>::default()
            .open_or_create_producer(&name)
            .map(drop)
    };
    assert!(matches!(r, Err(Error::WrongVariant { .. })), "{r:?}");
}

// ---------------------------------------------------------------------------
// Display and conversions

#[test]
fn display_texts() {
    let e = shmpipe::validate_name("/a/b").unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("\"/a/b\"") && s.contains("'/' followed by 1 to 255"),
        "{s}"
    );
    let s = Error::Full.to_string();
    assert!(s.contains("full") && s.contains("retry"), "{s}");
    let s = Error::Empty.to_string();
    assert!(s.contains("empty") && s.contains("retry"), "{s}");
    let s = Error::VersionMismatch {
        name: Some("/v".into()),
        found: 2,
        expected: 1,
    }
    .to_string();
    assert!(
        s.contains('2') && s.contains('1') && s.contains("\"/v\""),
        "{s}"
    );
    let s = Error::WrongVariant {
        name: Some("/w".into()),
        found: VariantKind::Locked,
        expected: VariantKind::LockFree,
    }
    .to_string();
    assert!(
        s.contains("the locked ring") && s.contains("the lockfree ring") && s.contains("\"/w\""),
        "{s}"
    );
    let s = Error::AlreadyExists { name: "/e".into() }.to_string();
    assert!(s.contains("\"/e\"") && s.contains("already exists"), "{s}");
    let s = Error::NotShmpipe {
        name: None,
        found: 1,
    }
    .to_string();
    assert!(s.contains("passed as a descriptor"), "{s}");
    let s = Error::RoleTaken { role: "producer" }.to_string();
    assert!(s.contains("producer"), "{s}");
    let s = Error::SizeMismatch {
        name: Some("/s".into()),
        expected: 4992,
        found: 100,
    }
    .to_string();
    assert!(
        s.contains("4992") && s.contains("100") && s.contains("\"/s\""),
        "{s}"
    );
    match "bogus".parse::<WaitStrategy>() {
        Err(e @ Error::InvalidOption { .. }) => {
            let s = e.to_string();
            assert!(
                s.contains("bogus") && s.contains("spin, spin-yield, futex or semaphore"),
                "{s}"
            );
        }
        other => panic!("{other:?}"),
    }
    for w in WaitStrategy::ALL {
        assert_eq!(w.name().parse::<WaitStrategy>().unwrap(), w);
        assert_eq!(w.to_string(), w.name());
    }

    use std::io::ErrorKind as K;
    let kind = |e: Error| std::io::Error::from(e).kind();
    assert_eq!(kind(Error::Full), K::WouldBlock);
    assert_eq!(kind(Error::Empty), K::WouldBlock);
    assert_eq!(kind(Error::Timeout), K::TimedOut);
    assert_eq!(kind(Error::Disconnected), K::BrokenPipe);
    assert_eq!(kind(Error::PeerDied), K::ConnectionAborted);
    assert_eq!(kind(Error::TooLarge { len: 9, max: 8 }), K::InvalidInput);
    assert_eq!(
        kind(Error::InvalidCapacity { requested: 3 }),
        K::InvalidInput
    );
    let enoent = shmpipe::Builder::new()
        .open_consumer(&unique_name("nothing"))
        .unwrap_err();
    assert!(matches!(enoent, Error::NotFound { .. }));
    assert_eq!(kind(enoent), K::NotFound);
    // The io::Error keeps the shmpipe error inside.
    let io = std::io::Error::from(Error::TooLarge { len: 9, max: 8 });
    let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(matches!(inner, Some(Error::TooLarge { len: 9, max: 8 })));
}

// ---------------------------------------------------------------------------
// io::Read / io::Write

/// A byte stream written with `io::Write` (chunks of every size, larger
/// than `max_message` too, with empty messages in between) reads back
/// identical with `io::Read` through small and large buffers, then EOF.
fn io_stream<V: Variant>() {
    for backing in [Backing::InProcess, Backing::Anonymous, Backing::Named] {
        for read_size in [1usize, 7, 64, 1000, 1 << 16] {
            let b = builder::<V>().capacity(256);
            let e = make_pair(&b, backing).unwrap();
            let (mut tx, mut rx) = (e.tx, e.rx);
            let max = tx.max_message();
            let mut rng = common::Rng::new(read_size as u64);
            let mut data = vec![0u8; 20_000];
            rng.fill(&mut data);
            let expect = data.clone();
            let writer = std::thread::spawn(move || {
                let mut rng = common::Rng::new(99);
                let mut at = 0;
                while at < data.len() {
                    let n = (rng.below(3 * max as u64) as usize).min(data.len() - at);
                    match rng.below(4) {
                        0 => tx.send(&[]).unwrap(), // empty messages are skipped
                        1 => {
                            // A single write sends at most max_message bytes.
                            let w = tx.write(&data[at..at + n]).unwrap();
                            assert_eq!(w, n.min(max));
                            at += w;
                            continue;
                        }
                        _ => {}
                    }
                    tx.write_all(&data[at..at + n]).unwrap();
                    at += n;
                }
                tx.flush().unwrap();
                tx.stats().messages_sent
                // tx dropped here: orderly close, the reader sees EOF
            });
            let mut got = Vec::new();
            let mut buf = vec![0u8; read_size];
            loop {
                let n = rx.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                assert!(n <= read_size);
                got.extend_from_slice(&buf[..n]);
            }
            let sent = writer.join().unwrap();
            assert!(sent > 20_000 / max as u64, "{backing:?}: too few messages");
            assert_eq!(got.len(), expect.len(), "{backing:?}, reads of {read_size}");
            assert!(
                got == expect,
                "{backing:?}, reads of {read_size}: bytes differ"
            );
            // (That EOF stays EOF is `read_after_eof_stays_eof`.)
            assert_eq!(rx.read(&mut []).unwrap(), 0);
            // And read_to_end on a fresh stream.
            let e = make_pair(&b, backing).unwrap();
            let (mut tx, mut rx) = (e.tx, e.rx);
            tx.write_all(b"hello, ").unwrap();
            tx.send(&[]).unwrap();
            tx.write_all(b"world").unwrap();
            drop(tx);
            let mut s = String::new();
            rx.read_to_string(&mut s).unwrap();
            assert_eq!(s, "hello, world");
        }
    }
}

/// After `read` returned EOF (0), later reads return 0 too: bytes already
/// handed out are never handed out again.
fn read_after_eof_stays_eof<V: Variant>() {
    let (mut tx, mut rx) = builder::<V>()
        .capacity(256)
        .in_process()
        .unwrap()
        .split()
        .unwrap();
    tx.write_all(b"abc").unwrap();
    drop(tx);
    let mut one = [0u8; 1];
    let mut got = Vec::new();
    for _ in 0..3 {
        assert_eq!(rx.read(&mut one).unwrap(), 1);
        got.push(one[0]);
    }
    assert_eq!(got, b"abc");
    assert_eq!(rx.read(&mut one).unwrap(), 0, "EOF");
    let again = rx.read(&mut one).unwrap();
    assert_eq!(
        again,
        0,
        "read after EOF returned {:?} again",
        &one[..again]
    );
}

#[test]
fn read_after_eof_stays_eof_lock_free() {
    read_after_eof_stays_eof::<LockFree>();
}

#[test]
fn read_after_eof_stays_eof_locked() {
    read_after_eof_stays_eof::<Locked>();
}

variant_tests!(
    peer_never_attached,
    open_or_create,
    recv_timeout_on_empty,
    send_timeout_on_full,
    recv_timeout_gets_late_message,
    consumer_dropped,
    producer_dropped,
    too_large,
    invalid_names,
    invalid_capacities,
    invalid_mode,
    create_existing,
    open_missing,
    bad_headers,
    not_initialized,
    late_initialization,
    permissions,
    role_taken,
    consumer_follows_new_producer,
    io_stream
);

/// A forked child that inherited a creator's handle and drops it leaves the
/// name to its parent (only the creating process removes it).
#[test]
fn inherited_creator_handle_dropped_in_child_keeps_the_name() {
    let _s = common::serial();
    let name = ShmName::new("inhdrop");
    let tx = shmpipe::Builder::new()
        .capacity(4096)
        .create_producer(&name)
        .unwrap();
    let (child, tx) = common::fork_with(tx, |tx| {
        drop(tx);
        Ok(())
    });
    child.wait(Duration::from_secs(10)).unwrap();
    assert!(
        name.path().exists(),
        "the child's drop removed its parent's name"
    );
    let mut rx = shmpipe::Builder::new().open_consumer(&name).unwrap();
    let mut tx = tx;
    tx.send(b"still here").unwrap();
    let mut buf = Vec::new();
    rx.recv(&mut buf).unwrap();
    assert_eq!(buf, b"still here");
    drop(tx);
    assert!(!name.path().exists(), "the creator's drop removes the name");
}
