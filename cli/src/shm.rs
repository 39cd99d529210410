//! Segments as files in /dev/shm, and what to tell the user about one: its
//! path, what the object behind a name is, and a library error in words.
//! Used by `write`/`read` (pipe) and by `inspect`/`ls`/`rm` (segments).

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use shmpipe::Error;

/// Where POSIX shared-memory objects live on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

/// The first 8 bytes of every shmpipe segment ("SHMPIPE\0", little-endian).
const MAGIC: u64 = u64::from_le_bytes(*b"SHMPIPE\0");

/// Describe a library error about segment `name` for the user.
pub fn describe(name: &str, e: &Error) -> String {
    match e {
        Error::NotFound { .. } => format!("{name}: no such segment"),
        Error::RoleTaken { role } => format!(
            "{name}: another live process is already the {role} of this ring ({} is running)",
            if *role == "producer" {
                "a writer"
            } else {
                "a reader"
            }
        ),
        // A group-readable file that is no segment at all (the library
        // checks permissions before contents): say what it is instead.
        Error::NotInitialized { .. } | Error::UnsafePermissions { .. } if !has_magic(name) => {
            match what_file(name) {
                Some(what) if what.starts_with("an empty file") => format!(
                    "{name}: {what}; if it is stale, remove it with `shmpipe rm --force {name}`"
                ),
                Some(what) => format!("{name}: {what}: {e}"),
                None => format!("{name}: {e}"),
            }
        }
        Error::NotInitialized { .. } => match what_file(name) {
            Some(what) => format!("{name}: {what}: {e}"),
            None => format!("{name}: {e}"),
        },
        Error::SizeMismatch { .. } | Error::NotShmpipe { .. } => match what_file(name) {
            Some(what) => format!("{name}: {what} ({e})"),
            None => format!("{name}: {e}"),
        },
        e => format!("{name}: {e}"),
    }
}

/// Path of segment `name` (already validated: "/x" → "/dev/shm/x").
pub(crate) fn shm_path(name: &str) -> PathBuf {
    Path::new(SHM_DIR).join(name.trim_start_matches('/'))
}

/// What the object behind `name` is, for messages about files that are not
/// (usable) shmpipe segments: "an empty file (mode 0644, ...)".
pub(crate) fn what_file(name: &str) -> Option<String> {
    let m = std::fs::symlink_metadata(shm_path(name)).ok()?;
    let t = m.file_type();
    let kind = if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if !t.is_file() {
        "a special file (FIFO, socket or device)"
    } else {
        ""
    };
    let perms = format!("mode {:04o}, owner uid {}", m.mode() & 0o7777, m.uid());
    if !kind.is_empty() {
        return Some(format!("{kind} ({perms}), not a shmpipe segment"));
    }
    let size = m.len();
    Some(if size == 0 {
        format!("an empty file ({perms}), not a shmpipe segment (or one whose creator died before sizing it)")
    } else if size < HEADER_BYTES {
        format!("a {size}-byte file ({perms}), too small for a shmpipe segment")
    } else if has_magic(name) {
        format!("a {size}-byte file with the shmpipe magic word ({perms})")
    } else {
        format!(
            "a {size}-byte file without the shmpipe magic word ({perms}), not a shmpipe segment"
        )
    })
}

/// Size of a segment's header (DESIGN.md, section 1).
const HEADER_BYTES: u64 = 896;

/// Whether the regular file behind `name` starts with the shmpipe magic
/// word. Never blocks (a FIFO is not opened) and never follows a symlink.
pub(crate) fn has_magic(name: &str) -> bool {
    let path = shm_path(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => {}
        _ => return false,
    }
    let Ok(mut f) = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)
    else {
        return false;
    };
    let mut word = [0u8; 8];
    f.read_exact(&mut word).is_ok() && u64::from_le_bytes(word) == MAGIC
}
