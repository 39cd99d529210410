//! How a command fails: the error every command returns, which `main`
//! turns into a message and an exit status.

/// Why a command failed.
#[derive(Debug)]
pub enum Fail {
    /// The arguments do not make sense together (exit status 2).
    Usage(String),
    /// Something went wrong while running (exit status 1).
    Runtime(String),
    /// A signal stopped the command after it cleaned up (exit status 128 +
    /// the signal number: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
    Signal {
        /// The signal number.
        signal: i32,
        /// What was done before exiting.
        msg: String,
    },
}

/// What every command returns.
pub type CmdResult = Result<(), Fail>;
