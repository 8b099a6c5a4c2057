//! What a command mdb runs inherits: an environment cleared down to an
//! allowlist, so that mdb's own tokens and secrets (the GitHub and DB
//! tokens, every notification secret) never reach a playbook, a role, a
//! hook or `ssh`, nor any task that logs its environment.

/// Inherited by every command: where programs are, the home directory,
/// the language, the time zone and the temporary directory.
pub const ALWAYS: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// Clears `cmd`'s environment, then copies back [`ALWAYS`] and the names
/// in `also` (a setting's allowlist) from mdb's own environment. Values
/// set on `cmd` afterwards (the run's own `MDB_*`) are the caller's.
pub fn clean_env(cmd: &mut std::process::Command, also: &[String]) {
    clean_env_from(cmd, also, |name| std::env::var_os(name));
}

/// [`clean_env`] with the values read from `lookup`.
fn clean_env_from(
    cmd: &mut std::process::Command,
    also: &[String],
    lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
) {
    cmd.env_clear();
    let names = ALWAYS
        .iter()
        .copied()
        .chain(also.iter().map(String::as_str));
    for name in names {
        if let Some(v) = lookup(name) {
            cmd.env(name, v);
        }
    }
}

/// Whether `name` may be put on an allowlist: an environment variable
/// name, and none of mdb's own secrets (`secrets`, from the settings).
pub fn check_allowed(name: &str, secrets: &[&str]) -> Result<(), String> {
    let well_formed = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        return Err(format!("{name:?} is not an environment variable name"));
    }
    if secrets.contains(&name) {
        return Err(format!(
            "{name} holds one of mdb's own secrets and is never passed to a command"
        ));
    }
    // mdb's own settings (a DB URL may carry credentials; token files)
    // are its own; a command gets the run's MDB_* values only.
    if name.starts_with("MDB_") {
        return Err(format!(
            "{name} is one of mdb's own settings and is never passed to a command"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cleaned_command_sees_only_the_allowlist() {
        let env = |name: &str| match name {
            "MDB_CHILD_TEST_ALLOWED" => Some("yes".into()),
            other => std::env::var_os(other),
        };
        let mut cmd = std::process::Command::new("env");
        // As if inherited: a command starts with its parent's environment.
        cmd.env("MDB_GITHUB_TOKEN", "s3cret");
        clean_env_from(&mut cmd, &["MDB_CHILD_TEST_ALLOWED".into()], env);
        cmd.env("MDB_REVISION", "abc");
        let out = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
        assert!(!out.contains("s3cret"), "{out}");
        assert!(out.contains("MDB_CHILD_TEST_ALLOWED=yes"), "{out}");
        assert!(out.contains("MDB_REVISION=abc"), "{out}");
        assert!(out.lines().any(|l| l.starts_with("PATH=")), "{out}");
    }

    #[test]
    fn secrets_and_bad_names_are_never_allowed() {
        assert!(check_allowed("ANSIBLE_CONFIG", &["MDB_GITHUB_TOKEN"]).is_ok());
        assert!(check_allowed("MDB_GITHUB_TOKEN", &["MDB_GITHUB_TOKEN"]).is_err());
        assert!(check_allowed("HOOK_SECRET", &["HOOK_SECRET"]).is_err());
        assert!(check_allowed("MDB_DB_URL", &[]).is_err());
        assert!(check_allowed("A=B", &[]).is_err());
        assert!(check_allowed("", &[]).is_err());
    }
}
