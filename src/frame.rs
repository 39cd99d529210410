//! Message records in the data area.
//!
//! Every record starts on an 8-byte boundary with an 8-byte header word:
//! bits 0..32 the payload length, bits 32..40 the kind, bits 40..64 zero.
//! The payload follows and is padded to a multiple of 8. A `PAD` record fills
//! the rest of the data area before a wrap, so every message is contiguous.
//! A header word of zero means "no record here yet" (format v2: the header
//! is the consumer's signal; see DESIGN.md section 2).

/// Record kind of a message.
pub(crate) const KIND_MSG: u64 = 1;
/// Record kind of the padding that skips to the start of the data area.
pub(crate) const KIND_PAD: u64 = 2;
/// Size of a record header.
pub(crate) const HDR: u64 = 8;

/// Header word for a record.
#[inline]
pub(crate) const fn encode(kind: u64, len: u32) -> u64 {
    (kind << 32) | len as u64
}

/// Split a header word into (kind, len), refusing reserved bits and unknown kinds.
#[inline]
pub(crate) fn decode(word: u64) -> Result<(u64, u64), crate::error::Error> {
    let kind = word >> 32;
    if kind != KIND_MSG && kind != KIND_PAD {
        return Err(crate::error::Error::corrupted(
            "record header has an unknown kind or reserved bits set",
            word,
        ));
    }
    Ok((kind, word & 0xffff_ffff))
}

/// Bytes a record with a payload of `len` bytes occupies.
#[inline]
pub(crate) const fn record_len(len: u64) -> u64 {
    // `HDR + round8(len)` in one addition and one mask: HDR is a multiple
    // of 8, so it commutes with the rounding (one instruction less on
    // every message's path).
    const _: () = assert!(HDR % 8 == 0);
    (len + HDR + 7) & !7
}

/// Check `head..tail` as the producer (whose own `tail` is authoritative)
/// or the locked ring (which reads both under the mutex) sees it: a span of
/// committed, unread records.
#[inline]
pub(crate) fn check_span(head: u64, tail: u64, capacity: u64) -> Result<(), crate::error::Error> {
    if head > tail {
        return Err(crate::error::Error::corrupted("head is past tail", head));
    }
    if tail - head > capacity {
        return Err(crate::error::Error::corrupted(
            "tail is more than a capacity past head",
            tail,
        ));
    }
    check_position(head | tail)
}

/// Check an index on its own: 8-aligned and far from overflow.
#[inline]
pub(crate) fn check_position(pos: u64) -> Result<(), crate::error::Error> {
    if pos & 7 != 0 {
        return Err(crate::error::Error::corrupted(
            "index is not 8-byte aligned",
            pos,
        ));
    }
    if pos > u64::MAX / 4 {
        return Err(crate::error::Error::corrupted("index near overflow", pos));
    }
    Ok(())
}

/// Check `head` and the producer's published `tail` as the lock-free
/// consumer sees them: the consumer follows record headers, so it may be
/// ahead of a `tail` word that lags (by the record just published, or more
/// after a producer died between its header and index stores), but never by
/// more than a capacity, and `tail` is never more than a capacity ahead.
#[inline]
pub(crate) fn check_lag(head: u64, tail: u64, capacity: u64) -> Result<(), crate::error::Error> {
    check_position(head | tail)?;
    if head.abs_diff(tail) > capacity {
        return Err(crate::error::Error::corrupted(
            "head and tail are more than a capacity apart",
            tail,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        assert_eq!(decode(encode(KIND_MSG, 17)).ok(), Some((KIND_MSG, 17)));
        assert_eq!(decode(encode(KIND_PAD, 0)).ok(), Some((KIND_PAD, 0)));
        assert!(decode(0).is_err());
        assert!(decode(encode(KIND_MSG, 1) | 1 << 45).is_err());
        assert_eq!(record_len(0), 8);
        assert_eq!(record_len(1), 16);
        assert_eq!(record_len(8), 16);
        assert_eq!(record_len(9), 24);
    }
}
