//! Runs one configured command (typically `ansible-playbook`) for one
//! target: placeholders filled in, what changed in the environment, its own
//! process group so a timeout kills the whole tree, and the end of its
//! output kept for the status and the issue.

use std::{
    collections::BTreeMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use super::output::TAIL_BYTES;
use super::output::{capture, Captured, Stream};

/// What a command is told: `{name}` placeholders in its arguments and
/// `MDB_*` variables in its environment.
#[derive(Clone, Debug, Default)]
pub struct Vars {
    pub revision: String,
    /// Comma-separated machine names.
    pub hosts: String,
    pub cluster: String,
    /// An inventory file for the command.
    pub inventory: String,
}

impl Vars {
    fn pairs(&self) -> BTreeMap<&'static str, &str> {
        BTreeMap::from([
            ("revision", self.revision.as_str()),
            ("hosts", self.hosts.as_str()),
            ("cluster", self.cluster.as_str()),
            ("inventory", self.inventory.as_str()),
        ])
    }

    /// `{hosts}` and the like replaced in one argument, in one pass: a
    /// value is never read again, so a `{…}` inside it stays as it is.
    pub fn fill(&self, arg: &str) -> String {
        let pairs = self.pairs();
        let mut out = String::with_capacity(arg.len());
        let mut rest = arg;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let value = after
                .find('}')
                .and_then(|close| pairs.get(&after[..close]).map(|v| (close, v)));
            match value {
                Some((close, v)) => {
                    out.push_str(v);
                    rest = &after[close + 1..];
                }
                None => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// Why it failed, in one line; empty when it succeeded.
    pub reason: String,
    pub tail: String,
    pub took: Duration,
}

/// Runs `argv` with `vars` for at most `timeout`.
pub async fn run(argv: &[String], vars: &Vars, timeout: Duration) -> Outcome {
    let started = Instant::now();
    let fail = |reason: String, tail: String| Outcome {
        ok: false,
        reason,
        tail,
        took: started.elapsed(),
    };
    let Some((program, args)) = argv.split_first() else {
        return fail("no command configured".into(), String::new());
    };
    let mut cmd = tokio::process::Command::new(vars.fill(program));
    cmd.args(args.iter().map(|a| vars.fill(a)))
        .env("MDB_REVISION", &vars.revision)
        .env("MDB_HOSTS", &vars.hosts)
        .env("MDB_CLUSTER", &vars.cluster)
        .env("MDB_INVENTORY", &vars.inventory)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {program}: {e}"), String::new()),
    };
    let captured = Arc::new(Mutex::new(Captured::default()));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| capture(Box::new(s), Stream::Stdout, captured.clone())),
        child
            .stderr
            .take()
            .map(|s| capture(Box::new(s), Stream::Stderr, captured.clone())),
    ];
    let status = tokio::time::timeout(timeout, child.wait()).await;
    if status.is_err() {
        if let Some(pid) = child.id() {
            // The whole group: ansible's own children too.
            // SAFETY: kill(2) on a process group we created.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
        let _ = child.wait().await;
    }
    for r in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
    }
    let (tail, reason) = captured
        .lock()
        .map(|c| (c.tail(), c.reason()))
        .unwrap_or_default();
    match status {
        Err(_) => fail(
            format!("{program} ran past its timeout of {timeout:?} and was killed"),
            tail,
        ),
        Ok(Err(e)) => fail(format!("waiting for {program}: {e}"), tail),
        Ok(Ok(s)) if s.success() => Outcome {
            ok: true,
            reason: String::new(),
            tail,
            took: started.elapsed(),
        },
        Ok(Ok(s)) => fail(format!("{program} failed ({s}): {reason}"), tail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_command_sees_what_changed_and_its_output_tail_is_kept() {
        let vars = Vars {
            revision: "abc".into(),
            hosts: "w1,w2".into(),
            ..Vars::default()
        };
        let o = run(
            &sh("echo {hosts} $MDB_REVISION; yes x | head -c 10000"),
            &vars,
            Duration::from_secs(10),
        )
        .await;
        assert!(o.ok, "{o:?}");
        assert!(o.tail.len() <= TAIL_BYTES);
        let o = run(
            &sh("echo {hosts} $MDB_REVISION"),
            &vars,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(o.tail, "w1,w2 abc\n");
    }

    #[test]
    fn templates_are_filled_in_one_pass() {
        let vars = Vars {
            revision: "{inventory}".into(),
            hosts: "a,b".into(),
            cluster: String::new(),
            inventory: "/state/inv.yaml".into(),
        };
        assert_eq!(
            vars.fill("--limit={hosts} {revision} {unknown} {inventory}{"),
            "--limit=a,b {inventory} {unknown} /state/inv.yaml{"
        );
    }

    #[tokio::test]
    async fn failures_missing_programs_and_hangs_are_outcomes_not_crashes() {
        let v = Vars::default();
        let o = run(
            &sh("echo 'TASK [x] fatal: unreachable'; exit 2"),
            &v,
            Duration::from_secs(10),
        )
        .await;
        assert!(!o.ok && o.reason.contains("fatal: unreachable"), "{o:?}");
        let o = run(
            &["/nonexistent/ansible-playbook".to_string()],
            &v,
            Duration::from_secs(10),
        )
        .await;
        assert!(
            !o.ok
                && o.reason
                    .starts_with("cannot run /nonexistent/ansible-playbook"),
            "{o:?}"
        );
        let o = run(&sh("sleep 30 & sleep 30"), &v, Duration::from_millis(300)).await;
        assert!(!o.ok && o.reason.contains("timeout"), "{o:?}");
        assert!(
            o.took < Duration::from_secs(5),
            "killed at the timeout, children too: {:?}",
            o.took
        );
    }
}
