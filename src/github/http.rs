//! GitHub's REST API as mdb uses it: one request function with the one
//! retry policy (5xx and transport errors back off; 403/429 honour
//! `retry-after` and `x-ratelimit-reset`; writes are spaced apart). Issues
//! and pull requests both go through it.

use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::warn;

pub use crate::github::error::Error;
use crate::github::{
    metrics::{GithubMetrics, RequestOutcome},
    Config,
};

/// Secondary rate limits often come without headers; GitHub says wait a minute.
const RATE_LIMIT_FALLBACK: Duration = Duration::from_secs(60);
pub const MAX_ATTEMPTS: u32 = 5;

pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

impl Method {
    fn word(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// The HTTP client for GitHub's REST API (needs a tokio runtime).
pub fn client(cfg: &Config) -> Result<octocrab::Octocrab, Error> {
    octocrab::Octocrab::builder()
        .personal_token(cfg.token.expose().to_string())
        .base_uri(cfg.api_url.as_str())
        .map_err(|e| Error::Client(format!("api_url {:?}: {e}", cfg.api_url)))?
        // mdb owns the retries: octocrab's would re-send a POST whose answer was lost.
        .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
        .set_connect_timeout(Some(cfg.timeout))
        .set_read_timeout(Some(cfg.timeout))
        .set_write_timeout(Some(cfg.timeout))
        .build()
        .map_err(|e| Error::Client(e.to_string()))
}

/// The client with mdb's retry policy and write spacing.
pub struct Http {
    gh: octocrab::Octocrab,
    write_gap: Duration,
    /// First backoff after a 5xx or a timeout; doubles per attempt.
    pub retry_base: Duration,
    max_wait: Duration,
    last_write: Option<Instant>,
    metrics: GithubMetrics,
    /// The token's own login, asked once.
    login: Option<String>,
}

impl Http {
    pub fn new(cfg: &Config, metrics: GithubMetrics) -> Result<Http, Error> {
        Ok(Http {
            gh: client(cfg)?,
            write_gap: cfg.write_gap,
            retry_base: cfg.retry_base,
            max_wait: cfg.max_wait,
            last_write: None,
            metrics,
            login: None,
        })
    }

    /// One request with mdb's retry policy. `retry_5xx` is false for a
    /// create: the caller looks for the issue before sending it again.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        retry_5xx: bool,
    ) -> Result<Value, Error> {
        let what = format!(
            "{} {}",
            method.word(),
            path.split('?').next().unwrap_or(path)
        );
        for attempt in 1..=MAX_ATTEMPTS {
            if !matches!(method, Method::Get) {
                self.space_writes().await;
            }
            let backoff =
                (self.retry_base * 2u32.saturating_pow(attempt - 1)).min(RATE_LIMIT_FALLBACK);
            let next = match self.send(&method, path, body.as_ref()).await {
                Err(e) => {
                    self.metrics.request(RequestOutcome::TransportError);
                    let err = Error::Transient {
                        what: what.clone(),
                        message: e.to_string(),
                    };
                    retry_if(retry_5xx, backoff, "GitHub request failed", err)
                }
                Ok(answer) => self.judge(answer, &what, retry_5xx, backoff),
            };
            match next {
                Next::Done(result) => return result,
                Next::RetryAfter(wait, why, err) if attempt < MAX_ATTEMPTS => {
                    warn!(error = %err, attempt, "{why}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Next::RetryAfter(_, _, err) => return Err(err),
            }
        }
        Err(Error::Transient {
            what,
            message: "gave up".into(),
        })
    }

    /// The login of the token's own user (`GET /user`), asked once and
    /// kept: what mdb opened is what this user authored.
    pub async fn login(&mut self) -> Result<String, Error> {
        if let Some(l) = &self.login {
            return Ok(l.clone());
        }
        let v = self.request(Method::Get, "/user", None, true).await?;
        let login = v["login"]
            .as_str()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| Error::Decode {
                what: "GET /user".into(),
                message: "no login".into(),
            })?
            .to_string();
        self.login = Some(login.clone());
        Ok(login)
    }

    /// GitHub asks for content-creating requests to be spaced apart.
    async fn space_writes(&mut self) {
        if let Some(t) = self.last_write {
            let next = t + self.write_gap;
            if next > Instant::now() {
                tokio::time::sleep_until(next.into()).await;
            }
        }
        self.last_write = Some(Instant::now());
    }

    /// One attempt: the status, headers and body text of the answer.
    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> octocrab::Result<Answer> {
        let response = match method {
            Method::Get => self.gh._get(path).await,
            Method::Post => self.gh._post(path, body).await,
            Method::Patch => self.gh._patch(path, body).await,
            Method::Delete => self.gh._delete(path, body).await,
        }?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = self.gh.body_to_string(response).await.unwrap_or_default();
        Ok(Answer {
            status,
            headers,
            text,
        })
    }

    /// What an answer means: a result, or a wait before trying again.
    fn judge(&self, answer: Answer, what: &str, retry_5xx: bool, backoff: Duration) -> Next {
        let Answer {
            status,
            headers,
            text,
        } = answer;
        if (200..300).contains(&status) {
            self.metrics.request(RequestOutcome::Ok);
            if text.trim().is_empty() {
                return Next::Done(Ok(Value::Null));
            }
            return Next::Done(serde_json::from_str(&text).map_err(|e| Error::Decode {
                what: what.to_string(),
                message: e.to_string(),
            }));
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| text.chars().take(200).collect());
        if let Some(wait) = rate_limit_wait(status, &headers, &message) {
            self.metrics.request(RequestOutcome::RateLimited);
            let err = Error::RateLimited {
                what: what.to_string(),
                wait,
                max: self.max_wait,
            };
            return if wait > self.max_wait {
                Next::Done(Err(err))
            } else {
                Next::RetryAfter(wait, "GitHub rate limit", err)
            };
        }
        if status >= 500 {
            self.metrics.request(RequestOutcome::ServerError);
            let err = Error::Transient {
                what: what.to_string(),
                message: format!("{status} {message}"),
            };
            return retry_if(retry_5xx, backoff, "GitHub server error", err);
        }
        self.metrics.request(RequestOutcome::ClientError);
        Next::Done(Err(match status {
            410 => Error::Disabled,
            _ => Error::Status {
                what: what.to_string(),
                status,
                message,
            },
        }))
    }
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    text: String,
}

/// What to do after one attempt.
enum Next {
    Done(Result<Value, Error>),
    /// Wait this long, then try again; the reason and error are logged.
    RetryAfter(Duration, &'static str, Error),
}

/// A transient failure is retried only where sending again is safe.
fn retry_if(retry: bool, wait: Duration, why: &'static str, err: Error) -> Next {
    if retry {
        Next::RetryAfter(wait, why, err)
    } else {
        Next::Done(Err(err))
    }
}

/// How long a 403/429 asks to wait: `retry-after`, else the reset time when
/// no requests remain, else a minute for a secondary limit.
fn rate_limit_wait(status: u16, headers: &http::HeaderMap, message: &str) -> Option<Duration> {
    let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let retry_after = header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    let limited = status == 429
        || (status == 403
            && (retry_after.is_some()
                || exhausted
                || message.to_lowercase().contains("rate limit")));
    if !limited {
        return None;
    }
    if let Some(d) = retry_after {
        return Some(d);
    }
    if exhausted {
        if let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok()) {
            let now = crate::db::store::now_unix();
            return Some(Duration::from_secs((reset - now).max(1) as u64));
        }
    }
    Some(RATE_LIMIT_FALLBACK)
}
