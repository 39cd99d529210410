//! `shmpipe inspect`, `ls` and `rm`: look at and remove segments without
//! attaching to them.

use std::os::unix::fs::MetadataExt;

use clap::Args;
use serde_json::{json, Value};
use shmpipe::{EndpointState, Error, SegmentInfo, VariantKind};

use crate::args::{human_size, parse_name};
use crate::fail::{CmdResult, Fail};
use crate::shm::{describe, has_magic, shm_path, what_file, SHM_DIR};

/// The widest name `ls` puts in its NAME column.
const NAME_COLUMN: usize = 32;

/// `shmpipe inspect --help` (set on the subcommand in main.rs).
pub const INSPECT_ABOUT: &str =
    "Show a segment's header (variant, wait strategy, capacity), fill level, counters \
and the state of each endpoint: attached and alive, attached but gone (its process died), closed, \
or never attached, with the PIDs of the processes holding each role's lock (found in \
/proc/PID/fdinfo: /proc/locks shows -1 for these open-file-description locks; only processes \
of this user are visible). Reads the header without attaching: a running pair is not disturbed.";

/// `shmpipe inspect`.
#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Segment name: '/' followed by 1 to 255 characters (the file /dev/shm/NAME)
    #[arg(value_parser = parse_name)]
    pub name: String,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// `shmpipe ls --help` (set on the subcommand in main.rs).
pub const LS_ABOUT: &str =
    "List the shmpipe segments in /dev/shm, recognised by their header (not by \
name); other files are skipped. Files that carry the shmpipe magic word but cannot be used \
are listed with the reason: damaged (truncated, bad header, other format version), incomplete \
(creation unfinished) or foreign (another user's).";

/// `shmpipe ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Print a JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

/// `shmpipe rm --help` (set on the subcommand in main.rs).
pub const RM_ABOUT: &str =
    "Remove shmpipe segments by name. Processes still attached keep working, but \
nobody new can attach. Anything that is not a shmpipe segment (wrong magic word, wrong size for \
its header, not a regular file) is refused unless --force is given.";

/// `shmpipe rm`.
#[derive(Args, Debug)]
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
    let holders = role_holders(name);
    json!({
        "name": name,
        "status": "ok",
        "variant": info.variant.name(),
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
        "producer": {"state": state_word(s.producer), "alive": info.producer_alive, "status": p, "pids": holders.producer},
        "consumer": {"state": state_word(s.consumer), "alive": info.consumer_alive, "status": c, "pids": holders.consumer},
    })
}

/// Processes holding a segment's role locks.
#[derive(Debug, Default)]
struct Holders {
    producer: Vec<u32>,
    consumer: Vec<u32>,
}

/// Which processes hold `name`'s role locks (byte 0: producer, byte 1:
/// consumer). OFD locks belong to an open file description, not a process,
/// and `/proc/locks` shows their pid as -1; so this looks for the
/// description itself: every `/proc/PID/fdinfo/FD` of the segment's file
/// (same device and inode) with a `lock:` line for a write OFD lock on that
/// byte. The PIDs are those of processes that have such a descriptor open
/// (normally the one endpoint; a process that received the descriptor
/// otherwise would be listed too). Processes of other users are not
/// readable and not listed. Best effort: empty when /proc cannot be read.
fn role_holders(name: &str) -> Holders {
    let mut h = Holders::default();
    let Ok(m) = std::fs::symlink_metadata(shm_path(name)) else {
        return h;
    };
    let dev = m.dev();
    // The kernel prints "MAJ:MIN:INO" with MAJ and MIN as two hex digits.
    let file = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        m.ino()
    );
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return h;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(text) = std::fs::read_to_string(fd.path()) else {
                continue;
            };
            for line in text.lines().filter_map(|l| l.strip_prefix("lock:")) {
                // "1: OFDLCK ADVISORY  WRITE -1 00:1b:660 1 1"
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 8 || f[1] != "OFDLCK" || f[3] != "WRITE" || f[5] != file {
                    continue;
                }
                let list = match (f[6], f[7]) {
                    ("0", "0") => &mut h.producer,
                    ("1", "1") => &mut h.consumer,
                    _ => continue,
                };
                if !list.contains(&pid) {
                    list.push(pid);
                }
            }
        }
    }
    h
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
    let holders = role_holders(name);
    let pids = |v: &[u32]| match v {
        [] => String::new(),
        [one] => format!(" (pid {one})"),
        more => format!(
            " (pids {})",
            more.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    println!("producer:       {p}{}", pids(&holders.producer));
    println!("consumer:       {c}{}", pids(&holders.consumer));
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
    if info.variant == VariantKind::Locked {
        println!("lock repairs:   {}", s.lock_repairs);
    }
    Ok(())
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
                Entry::Ok(info) => info_json(name, info),
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
    // Names longer than NAME_COLUMN get a line of their own, with the row
    // on the next line, so one long name does not widen every row.
    let w = found
        .iter()
        .map(|(n, _)| n.len())
        .filter(|&n| n <= NAME_COLUMN)
        .max()
        .unwrap_or(4)
        .max(4);
    let header = format!(
        "{:<w$}  {:<9}  {:<10}  {:>8}  {:>6}  {:<11}  {}",
        "NAME", "VARIANT", "WAIT", "CAPACITY", "FILL", "PRODUCER", "CONSUMER"
    );
    println!("{}", header.trim_end());
    for (name, e) in &found {
        let name = if name.len() > w {
            println!("{name}");
            ""
        } else {
            name.as_str()
        };
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
        Err(Error::SizeMismatch { .. } | Error::NotInitialized { .. }) => {
            let what = what_file(name).unwrap_or_else(|| "not a shmpipe segment".into());
            return Err(format!(
                "{name}: not removed: {what}; use --force to remove it anyway"
            ));
        }
        Err(e) => return Err(format!("{}; not removed", describe(name, &e))),
    }
    shmpipe::remove(name).map_err(|e| describe(name, &e))
}
