//! A dead producer ends `iter()` with one `PeerDied` item after the
//! committed messages (forked producer that kills itself).

#![cfg(all(feature = "serde", not(any(loom, miri))))]

mod common;

use std::time::Duration;

use shmpipe::{Builder, Error};

#[test]
fn iterator_reports_peer_death_once() {
    let _g = common::serial();
    for round in 0..20 {
        let _wd = common::Watchdog::arm(None, Duration::from_secs(60), "iter peer death");
        let pair = Builder::new().capacity(4096).anonymous().unwrap();
        let (child, pair) = common::fork_with(pair, |p| {
            let mut tx = p.into_producer().map_err(|e| e.to_string())?;
            for i in 0..5u8 {
                tx.send(&[i]).map_err(|e| e.to_string())?;
            }
            // SAFETY: dying without closing, on purpose.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            Ok(())
        });
        let mut rx = pair.into_consumer().unwrap();
        let items: Vec<_> = rx.iter().collect();
        assert_eq!(items.len(), 6, "round {round}: {items:?}");
        for (i, m) in items[..5].iter().enumerate() {
            assert_eq!(m.as_ref().unwrap(), &[i as u8]);
        }
        assert!(matches!(items[5], Err(Error::PeerDied)), "{:?}", items[5]);
        assert!(
            child.wait(Duration::from_secs(10)).is_err(),
            "child was killed"
        );
    }
}
