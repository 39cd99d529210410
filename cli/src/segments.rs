//! `shmpipe inspect`, `ls` and `rm`: look at and remove segments without
//! attaching to them.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::{json, Value};
use shmpipe::{EndpointState, Error, SegmentInfo};

use crate::args::{human_size, parse_name};
use crate::pipe::describe;
use crate::{CmdResult, Fail};

/// Where POSIX shared-memory objects live on Linux.
const SHM_DIR: &str = "/dev/shm";
/// The first 8 bytes of every shmpipe segment ("SHMPIPE\0", little-endian).
const MAGIC: u64 = u64::from_le_bytes(*b"SHMPIPE\0");

/// `shmpipe inspect`.
#[derive(Args, Debug)]
#[command(
    long_about = "Show a segment's header (variant, wait strategy, capacity), fill level, counters \
and the state of each endpoint: attached and alive, attached but gone (its process died), closed, \
or never attached. Reads the header without attaching: a running pair is not disturbed."
)]
pub struct InspectArgs {
    /// Segment name: '/' followed by 1 to 255 characters (the file /dev/shm/NAME)
    #[arg(value_parser = parse_name)]
    pub name: String,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// `shmpipe ls`.
#[derive(Args, Debug)]
#[command(
    long_about = "List the shmpipe segments in /dev/shm, recognised by their header (not by \
name); other files are skipped. Files that carry the shmpipe magic word but cannot be used \
are listed with the reason: damaged (truncated, bad header, other format version), incomplete \
(creation unfinished) or foreign (another user's)."
)]
pub struct LsArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `shmpipe rm`.
#[derive(Args, Debug)]
#[command(
    long_about = "Remove shmpipe segments by name. Processes still attached keep working, but \
nobody new can attach. Anything that is not a shmpipe segment (wrong magic word, wrong size for \
its header, not a regular file) is refused unless --force is given."
)]
pub struct RmArgs {
    /// Segment names: '/' followed by 1 to 255 characters (the file /dev/shm/NAME)
    #[arg(value_parser = parse_name, required = true)]
    pub names: Vec<String>,
    /// Remove the object even if it does not look like a valid shmpipe segment
    #[arg(long, short)]
    pub force: bool,
}

/// An endpoint's state as one word and as a phrase.
fn endpoint(state: EndpointState, alive: bool) -> (&'static str, String) {
    match (state, alive) {
        (EndpointState::Never, false) => ("never", "never attached".into()),
        (EndpointState::Never, true) => ("attaching", "attaching (alive)".into()),
        (EndpointState::Attached, true) => ("alive", "attached, alive".into()),
        (EndpointState::Attached, false) => (
            "dead",
            "attached but gone (its process died without closing)".into(),
        ),
        (EndpointState::Closed, false) => ("closed", "closed".into()),
        (EndpointState::Closed, true) => ("reattaching", "closed, being re-attached".into()),
        (EndpointState::Invalid(w), _) => ("invalid", format!("invalid state word {w:#x}")),
        (other, _) => ("unknown", format!("{other:?}")),
    }
}

fn state_word(state: EndpointState) -> Value {
    match state {
        EndpointState::Never => json!("never"),
        EndpointState::Attached => json!("attached"),
        EndpointState::Closed => json!("closed"),
        EndpointState::Invalid(w) => json!(format!("invalid({w})")),
        other => json!(format!("{other:?}")),
    }
}

fn fill_percent(info: &SegmentInfo) -> f64 {
    if info.capacity == 0 {
        return 0.0;
    }
    info.stats.used_bytes as f64 * 100.0 / info.capacity as f64
}

fn info_json(name: &str, info: &SegmentInfo) -> Value {
    let s = &info.stats;
    let (p, _) = endpoint(s.producer, info.producer_alive);
    let (c, _) = endpoint(s.consumer, info.consumer_alive);
    json!({
        "name": name,
        "variant": info.variant,
        "wait": info.wait.name(),
        "capacity": info.capacity,
        "size": info.size,
        "mode": format!("{:04o}", info.mode),
        "max_message": info.max_message,
        "used_bytes": s.used_bytes,
        "fill_percent": (fill_percent(info) * 100.0).round() / 100.0,
        "messages_sent": s.messages_sent,
        "bytes_sent": s.bytes_sent,
        "messages_received": s.messages_received,
        "bytes_received": s.bytes_received,
        "messages_in_flight": s.messages_sent.wrapping_sub(s.messages_received),
        "full_waits": s.full_waits,
        "empty_waits": s.empty_waits,
        "producer_wake_syscalls": s.producer_wake_syscalls,
        "consumer_wake_syscalls": s.consumer_wake_syscalls,
        "lock_repairs": s.lock_repairs,
        "producer": {"state": state_word(s.producer), "alive": info.producer_alive, "status": p},
        "consumer": {"state": state_word(s.consumer), "alive": info.consumer_alive, "status": c},
    })
}

fn print_json(v: &Value) -> CmdResult {
    let text = serde_json::to_string_pretty(v)
        .map_err(|e| Fail::Runtime(format!("formatting JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// `shmpipe inspect NAME`.
pub fn inspect(a: &InspectArgs) -> CmdResult {
    let name = &a.name;
    let info = shmpipe::inspect(name).map_err(|e| Fail::Runtime(describe(name, &e)))?;
    if a.json {
        return print_json(&info_json(name, &info));
    }
    let s = &info.stats;
    let (_, p) = endpoint(s.producer, info.producer_alive);
    let (_, c) = endpoint(s.consumer, info.consumer_alive);
    println!("name:           {name}");
    println!("variant:        {}", info.variant);
    println!("wait strategy:  {}", info.wait);
    println!(
        "capacity:       {} ({} bytes), largest message {} bytes",
        human_size(info.capacity),
        info.capacity,
        info.max_message
    );
    println!(
        "segment:        {} bytes, mode {:04o}",
        info.size, info.mode
    );
    println!(
        "fill:           {} bytes used ({:.1}%)",
        s.used_bytes,
        fill_percent(&info)
    );
    println!("producer:       {p}");
    println!("consumer:       {c}");
    println!(
        "messages:       {} sent, {} received, {} in flight",
        s.messages_sent,
        s.messages_received,
        s.messages_sent.wrapping_sub(s.messages_received)
    );
    println!(
        "bytes:          {} sent, {} received",
        s.bytes_sent, s.bytes_received
    );
    println!(
        "waits:          {} on full, {} on empty",
        s.full_waits, s.empty_waits
    );
    println!(
        "wake syscalls:  {} by the producer, {} by the consumer",
        s.producer_wake_syscalls, s.consumer_wake_syscalls
    );
    if info.variant == "locked" {
        println!("lock repairs:   {}", s.lock_repairs);
    }
    Ok(())
}

/// Path of segment `name` (already validated: "/x" → "/dev/shm/x").
fn shm_path(name: &str) -> PathBuf {
    Path::new(SHM_DIR).join(name.trim_start_matches('/'))
}

/// Whether the regular file behind `name` starts with the shmpipe magic
/// word. Never blocks (a FIFO is not opened) and never follows a symlink.
fn has_magic(name: &str) -> bool {
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

/// One entry of `ls`.
enum Entry {
    Ok(SegmentInfo),
    /// Carries the magic word but cannot be used: (status word, reason).
    Unusable(&'static str, String),
}

/// `shmpipe ls`.
pub fn ls(a: &LsArgs) -> CmdResult {
    let dir =
        std::fs::read_dir(SHM_DIR).map_err(|e| Fail::Runtime(format!("listing {SHM_DIR}: {e}")))?;
    let mut found: Vec<(String, Entry)> = Vec::new();
    for ent in dir {
        let ent = ent.map_err(|e| Fail::Runtime(format!("listing {SHM_DIR}: {e}")))?;
        let Some(file) = ent.file_name().to_str().map(str::to_owned) else {
            continue; // not UTF-8: not a name we could have created
        };
        match ent.file_type() {
            Ok(t) if t.is_file() => {}
            _ => continue,
        }
        let name = format!("/{file}");
        if shmpipe::validate_name(&name).is_err() {
            continue;
        }
        match shmpipe::inspect(&name) {
            Ok(info) => found.push((name, Entry::Ok(info))),
            Err(Error::NotFound { .. }) => {}
            Err(e) => {
                if has_magic(&name) {
                    let status = match e {
                        Error::NotOwner { .. } => "foreign",
                        Error::NotInitialized { .. } => "incomplete",
                        _ => "damaged",
                    };
                    found.push((name, Entry::Unusable(status, e.to_string())));
                }
            }
        }
    }
    found.sort_by(|x, y| x.0.cmp(&y.0));
    if a.json {
        let v: Vec<Value> = found
            .iter()
            .map(|(name, e)| match e {
                Entry::Ok(info) => {
                    let mut v = info_json(name, info);
                    v["status"] = json!("ok");
                    v
                }
                Entry::Unusable(status, err) => {
                    json!({"name": name, "status": status, "error": err})
                }
            })
            .collect();
        return print_json(&Value::Array(v));
    }
    if found.is_empty() {
        return Ok(());
    }
    let w = found.iter().map(|(n, _)| n.len()).max().unwrap_or(4).max(4);
    let header = format!(
        "{:<w$}  {:<9}  {:<10}  {:>8}  {:>6}  {:<11}  {}",
        "NAME", "VARIANT", "WAIT", "CAPACITY", "FILL", "PRODUCER", "CONSUMER"
    );
    println!("{}", header.trim_end());
    for (name, e) in &found {
        match e {
            Entry::Ok(info) => {
                let (p, _) = endpoint(info.stats.producer, info.producer_alive);
                let (c, _) = endpoint(info.stats.consumer, info.consumer_alive);
                println!(
                    "{:<w$}  {:<9}  {:<10}  {:>8}  {:>5.1}%  {:<11}  {}",
                    name,
                    info.variant,
                    info.wait.name(),
                    human_size(info.capacity),
                    fill_percent(info),
                    p,
                    c
                );
            }
            Entry::Unusable(status, err) => println!("{name:<w$}  {status}: {err}"),
        }
    }
    Ok(())
}

/// `shmpipe rm NAME...`.
pub fn rm(a: &RmArgs) -> CmdResult {
    let mut failures = Vec::new();
    for name in &a.names {
        if let Err(msg) = rm_one(name, a.force) {
            if a.names.len() > 1 {
                eprintln!("shmpipe: rm: {msg}");
            }
            failures.push(msg);
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 if a.names.len() == 1 => Err(Fail::Runtime(failures.remove(0))),
        n => Err(Fail::Runtime(format!(
            "{n} of {} segments were not removed",
            a.names.len()
        ))),
    }
}

fn rm_one(name: &str, force: bool) -> Result<(), String> {
    match shmpipe::inspect(name) {
        Ok(info) => {
            if info.producer_alive || info.consumer_alive {
                eprintln!(
                    "shmpipe: note: {name} is still in use; attached processes keep working, but nobody new can attach"
                );
            }
        }
        Err(Error::NotFound { .. }) => {
            return Err(format!("{name}: no such segment"));
        }
        Err(e) if force => {
            eprintln!(
                "shmpipe: note: removing {name} although it is not a valid shmpipe segment ({e})"
            );
        }
        // Carries the magic word, but the header is half-written, from another
        // format version, or damaged: a stale shmpipe segment to clean up.
        Err(
            e @ (Error::NotInitialized { .. }
            | Error::VersionMismatch { .. }
            | Error::Corrupted { .. }),
        ) if has_magic(name) => {
            eprintln!("shmpipe: note: removing damaged segment {name} ({e})");
        }
        Err(e @ Error::SizeMismatch { .. }) if has_magic(name) => {
            return Err(format!(
                "{name}: not removed: it starts like a shmpipe segment but {e}; use --force to remove it anyway"
            ));
        }
        Err(e @ (Error::NotShmpipe { .. } | Error::NotRegularFile)) => {
            return Err(format!(
                "{name}: not removed: {e}; use --force to remove it anyway"
            ));
        }
        Err(e @ (Error::SizeMismatch { .. } | Error::NotInitialized { .. })) => {
            return Err(format!(
                "{name}: not removed: not a shmpipe segment (no shmpipe magic word; {e}); use --force to remove it anyway"
            ));
        }
        Err(e) => return Err(format!("{}; not removed", describe(name, &e))),
    }
    shmpipe::remove(name).map_err(|e| describe(name, &e))
}
