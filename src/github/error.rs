//! What can go wrong talking to GitHub, and the fixed label each kind has
//! in `mdb_github_errors_total{kind}`.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GitHub client: {0}")]
    Client(String),
    #[error("GitHub request {what} failed: {message}")]
    Transient { what: String, message: String },
    #[error("GitHub answered {status} to {what}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error(
        "GitHub rate limit on {what}: would have to wait {wait:?}, more than the {max:?} allowed"
    )]
    RateLimited {
        what: String,
        wait: Duration,
        max: Duration,
    },
    #[error("issues are disabled in the repository")]
    Disabled,
    #[error("unexpected answer to {what}: {message}")]
    Decode { what: String, message: String },
    #[error("enrolment branch: {0}")]
    Git(String),
}

impl Error {
    /// Every value of [`Error::metric_label`].
    pub const LABELS: &'static [&'static str] = &[
        "client",
        "transient",
        "status",
        "rate_limited",
        "disabled",
        "decode",
        "git",
    ];

    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Client(_) => "client",
            Error::Transient { .. } => "transient",
            Error::Status { .. } => "status",
            Error::RateLimited { .. } => "rate_limited",
            Error::Disabled => "disabled",
            Error::Decode { .. } => "decode",
            Error::Git(_) => "git",
        }
    }
}
