//! The zenoh session: peer mode, multicast scouting off, explicit endpoints.

use zenoh::{Config, Session, Wait};

/// How to reach the other bridge.
#[derive(Debug, Clone, Default)]
pub struct Net {
    /// Endpoints to connect to (`tcp/HOST:PORT`); retried until they answer.
    pub connect: Vec<String>,
    /// Endpoints to listen on (`tcp/ADDR:PORT`).
    pub listen: Vec<String>,
    /// A zenoh JSON5 configuration file; `connect`/`listen` override its endpoints.
    pub config: Option<std::path::PathBuf>,
}

fn json_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("[{}]", items.join(","))
}

/// The zenoh configuration for `net`.
pub fn config(net: &Net) -> Result<Config, String> {
    let set = |c: &mut Config, key: &str, value: &str| {
        c.insert_json5(key, value)
            .map_err(|e| format!("zenoh config {key} = {value}: {e}"))
    };
    let mut c = match &net.config {
        Some(path) => Config::from_file(path)
            .map_err(|e| format!("reading zenoh config {}: {e}", path.display()))?,
        None => {
            if net.connect.is_empty() && net.listen.is_empty() {
                return Err(
                    "give --connect tcp/HOST:PORT and/or --listen tcp/ADDR:PORT (multicast \
                     scouting is off), or a zenoh config with --config FILE"
                        .into(),
                );
            }
            let mut c = Config::default();
            set(&mut c, "mode", "\"peer\"")?;
            set(&mut c, "scouting/multicast/enabled", "false")?;
            // Reconnect quickly after a lost session (defaults: 1 s, up to 4 s).
            set(
                &mut c,
                "connect/retry",
                "{period_init_ms: 100, period_max_ms: 1000, period_increase_factor: 2}",
            )?;
            // Back-pressure must hold however long the far reader stalls:
            // by default zenoh closes a link whose Block queue stays full
            // for 5 s (dropping what it holds). A dead peer is still
            // detected by the lease (keep-alives), not by this.
            set(
                &mut c,
                "transport/link/tx/queue/congestion_control/block/wait_before_close",
                "86400000000",
            )?;
            // No listener unless asked for (the default listens on a random port).
            set(&mut c, "listen/endpoints", "[]")?;
            c
        }
    };
    if !net.connect.is_empty() {
        set(&mut c, "connect/endpoints", &json_list(&net.connect))?;
    }
    if !net.listen.is_empty() {
        set(&mut c, "listen/endpoints", &json_list(&net.listen))?;
    }
    Ok(c)
}

/// Open a session for `net`.
pub fn open(net: &Net) -> Result<Session, String> {
    let c = config(net)?;
    zenoh::open(c)
        .wait()
        .map_err(|e| format!("opening the zenoh session: {e}"))
}
