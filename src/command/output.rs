//! What a run printed: the end of its output (for the status and the
//! issue), and why it failed in one line. For Ansible that is the first
//! failing task and its message (`TASK [x]` then `fatal: [host]: FAILED!
//! => {"msg": ...}`), seen as the output goes by, since the recap at the
//! end says nothing; for anything else, the last non-empty line of stderr.

use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::AsyncReadExt;

/// Output kept of one run: its last bytes.
pub const TAIL_BYTES: usize = 4096;
/// The longest line looked at for a failure; longer ones are cut.
const MAX_LINE: usize = 64 << 10;
/// The longest reason kept.
const MAX_REASON: usize = 500;

/// The first failing task of an Ansible run, from its lines.
#[derive(Debug, Default)]
pub struct FirstFailure {
    task: String,
    found: Option<String>,
}

impl FirstFailure {
    pub fn line(&mut self, line: &str) {
        if self.found.is_some() {
            return;
        }
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("TASK [") {
            self.task = rest.rsplit_once(']').map_or(rest, |(t, _)| t).to_string();
            return;
        }
        let failing = l.starts_with("fatal: [") || l.starts_with("failed: [");
        if !failing {
            return;
        }
        let (head, json) = l.split_once("=> ").unwrap_or((l, ""));
        let host = head
            .split_once('[')
            .and_then(|(_, r)| r.split_once(']'))
            .map_or("", |(h, _)| h);
        let msg = message(json).unwrap_or_else(|| json.trim().to_string());
        let what = if self.task.is_empty() {
            String::from("a task")
        } else {
            format!("task \"{}\"", self.task)
        };
        let text = format!("{what} failed on {host}: {msg}");
        self.found = Some(crate::escape::clean(&text, MAX_REASON));
    }

    pub fn found(&self) -> Option<&str> {
        self.found.as_deref()
    }
}

/// The message of Ansible's JSON result: `msg`, with the command's last
/// stderr line when `msg` only says the command failed.
fn message(json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(json.trim()).ok()?;
    let last_line = |key: &str| {
        v[key]
            .as_str()
            .and_then(|t| t.lines().rev().find(|l| !l.trim().is_empty()))
            .map(|l| l.trim().to_string())
    };
    let msg = v["msg"].as_str().map(|m| m.trim().to_string());
    match (msg, last_line("stderr").or_else(|| last_line("stdout"))) {
        (Some(m), Some(err)) if m.is_empty() || m == "non-zero return code" => Some(err),
        (Some(m), _) => Some(m),
        (None, other) => other,
    }
}

/// What the readers of one run keep.
#[derive(Default)]
pub struct Captured {
    tail: Vec<u8>,
    first_failure: FirstFailure,
    last_stderr: String,
}

impl Captured {
    pub fn tail(&self) -> String {
        String::from_utf8_lossy(&self.tail).into_owned()
    }

    /// Why a run that failed failed: its first failing task, else the last
    /// thing it said on stderr, else the last line it printed.
    pub fn reason(&self) -> String {
        if let Some(f) = self.first_failure.found() {
            return f.to_string();
        }
        let last = if self.last_stderr.is_empty() {
            let tail = self.tail();
            tail.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string()
        } else {
            self.last_stderr.clone()
        };
        crate::escape::clean(&last, MAX_REASON)
    }
}

/// Which stream a reader reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Reads `stream` to its end into `captured`: every byte into the tail,
/// every line to the failure watch (stdout) or as the last stderr line.
pub fn capture(
    mut stream: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    which: Stream,
    captured: Arc<Mutex<Captured>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        let mut line: Vec<u8> = Vec::new();
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let Ok(mut c) = captured.lock() else { break };
            c.tail.extend_from_slice(&buf[..n]);
            let extra = c.tail.len().saturating_sub(TAIL_BYTES);
            c.tail.drain(..extra);
            for &b in &buf[..n] {
                if b == b'\n' {
                    c.line(which, &line);
                    line.clear();
                } else if line.len() < MAX_LINE {
                    line.push(b);
                }
            }
        }
        if let Ok(mut c) = captured.lock() {
            c.line(which, &line);
        }
    })
}

impl Captured {
    fn line(&mut self, which: Stream, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        match which {
            Stream::Stdout => self.first_failure.line(&text),
            Stream::Stderr if !text.trim().is_empty() => self.last_stderr = text.trim().to_string(),
            Stream::Stderr => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failing_task_and_its_message_are_the_reason() {
        let mut f = FirstFailure::default();
        for l in [
            "PLAY [all] *****",
            "TASK [Gathering Facts] *****",
            "ok: [lab-1]",
            "TASK [install the agent] *****",
            r#"fatal: [lab-1]: FAILED! => {"changed": false, "msg": "pyenv: python3.13: command not found"}"#,
            "TASK [later] *****",
            r#"fatal: [lab-2]: FAILED! => {"msg": "second"}"#,
            "PLAY RECAP *****",
            "lab-1 : ok=0 changed=0 unreachable=0 failed=1",
        ] {
            f.line(l);
        }
        assert_eq!(
            f.found(),
            Some(
                "task \"install the agent\" failed on lab-1: pyenv: python3.13: command not found"
            )
        );
        let mut f = FirstFailure::default();
        f.line("TASK [run it] ***");
        f.line(r#"fatal: [w1]: FAILED! => {"changed": true, "cmd": "false", "msg": "non-zero return code", "rc": 1, "stderr": "first\nno such file: /etc/x\n"}"#);
        assert_eq!(
            f.found(),
            Some("task \"run it\" failed on w1: no such file: /etc/x")
        );
    }

    #[test]
    fn without_ansible_the_last_stderr_line_is_the_reason() {
        let mut c = Captured::default();
        c.line(Stream::Stdout, b"working");
        c.line(Stream::Stderr, b"error: disk full");
        c.line(Stream::Stderr, b"  ");
        c.line(Stream::Stdout, b"bye");
        assert_eq!(c.reason(), "error: disk full");
    }
}
