//! Runs one configured command (an `ansible-playbook` of the runner, a
//! DHCP hook) for one target: placeholders filled in, a clean environment
//! (`env`) with what changed in it, its own process group so a timeout
//! kills the whole tree, and the end of its output kept (`output`) for the
//! status and the issue. Below both of its users; knows neither.

pub mod env;
mod output;

use std::{
    collections::BTreeMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub use output::TAIL_BYTES;
use output::{capture, Captured, Stream};

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

/// The environment of a command beyond its `MDB_*` values: what it may
/// inherit from the runner's own (`[provision] env`), and what the runner
/// sets (Ansible's host key checking, the provisioner's key).
#[derive(Clone, Debug, Default)]
pub struct Environment {
    pub inherit: Vec<String>,
    pub set: Vec<(String, String)>,
}

/// Runs `argv` with `vars` for at most `timeout`, in a clean environment.
pub async fn run(argv: &[String], vars: &Vars, timeout: Duration) -> Outcome {
    run_in(argv, vars, timeout, None, &Environment::default()).await
}

/// [`run`], with the command's process group written to `ledger` while it
/// runs, so that a runner killed with `kill -9` finds it on its next start
/// and ends it ([`reap_leftover`]) before redoing anything. The command
/// inherits only the allowlist of [`env`] and `env.inherit`.
pub async fn run_in(
    argv: &[String],
    vars: &Vars,
    timeout: Duration,
    ledger: Option<&std::path::Path>,
    env: &Environment,
) -> Outcome {
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
    env::clean_env(cmd.as_std_mut(), &env.inherit);
    cmd.envs(env.set.iter().map(|(k, v)| (k, v)));
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
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // The group leader dies with the runner (kill -9 included); the
            // ledger covers the rest of its group.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {program}: {e}"), String::new()),
    };
    let group = child.id().map(|p| p as i32);
    if let (Some(ledger), Some(pgid)) = (ledger, group) {
        group::record(ledger, pgid);
    }
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
    if let (Some(ledger), Some(pgid)) = (ledger, group) {
        // Whatever of the group outlived its leader goes with it.
        // SAFETY: kill(2) on a process group we created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        group::clear(ledger);
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

pub use group::reap_leftover;

/// The ledger's name in the runner's state directory.
pub const LEDGER: &str = "running.group";

/// The ledger of the one command group a runner has running.
mod group {
    use std::path::Path;

    /// When process `pid` started (field 22 of /proc/PID/stat), to tell a
    /// process from a later one with the same number.
    fn start_time(pid: i32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = stat.rsplit_once(')')?.1;
        after.split_whitespace().nth(19)?.parse().ok()
    }

    /// Whether any process is in group `pgid`.
    fn members(pgid: i32) -> bool {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return false;
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit_once(')').map(|(_, a)| a.to_string()))
                    .and_then(|a| a.split_whitespace().nth(2)?.parse::<i32>().ok())
                    == Some(pgid)
            })
    }

    pub fn record(ledger: &Path, pgid: i32) {
        let line = format!("{pgid} {}\n", start_time(pgid).unwrap_or(0));
        if let Err(e) = std::fs::write(ledger, line) {
            tracing::warn!(path = %ledger.display(), error = %e, "cannot record the running command's group");
        }
    }

    pub fn clear(ledger: &Path) {
        let _ = std::fs::remove_file(ledger);
    }

    /// Ends a command group a runner killed mid-run left behind, if any:
    /// its leader (when the same process is still there) or any member
    /// (a group's number is not reused while a member lives). Its number.
    pub fn reap_leftover(ledger: &Path) -> Option<i32> {
        let text = std::fs::read_to_string(ledger).ok()?;
        clear(ledger);
        let mut words = text.split_whitespace();
        let pgid: i32 = words.next()?.parse().ok().filter(|p| *p > 1)?;
        let started: u64 = words.next()?.parse().ok()?;
        let ours = match start_time(pgid) {
            Some(t) => t == started,
            None => members(pgid),
        };
        if !ours {
            return None;
        }
        // SAFETY: kill(2) on the group this runner created before it died.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        Some(pgid)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

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
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; sleep 30", pidfile.display());
        let o = run(&sh(&script), &v, Duration::from_millis(300)).await;
        assert!(!o.ok && o.reason.contains("timeout"), "{o:?}");
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            gone(child),
            "the shell's background child was killed with it"
        );
    }

    /// Whether a process no longer runs (absent, or a zombie nobody reaped).
    fn gone(pid: i32) -> bool {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(')').map(|(_, a)| a.trim().chars().next()))
                .flatten();
            if matches!(state, None | Some('Z')) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_group_left_by_a_killed_runner_is_reaped_from_its_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = dir.path().join(LEDGER);
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        group::record(&ledger, pgid);
        assert_eq!(reap_leftover(&ledger), Some(pgid));
        assert!(gone(pgid), "the group's leader is gone");
        let _ = child.wait();
        assert!(!ledger.exists(), "the ledger is cleared");
        assert_eq!(reap_leftover(&ledger), None, "nothing twice");
        // A ledger naming a process that is not the one it recorded is left alone.
        std::fs::write(&ledger, format!("{} 1\n", std::process::id())).unwrap();
        assert_eq!(reap_leftover(&ledger), None);
    }
}
