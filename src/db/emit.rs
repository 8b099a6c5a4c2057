//! Machines as `machines/*.yaml` text: the one emitter for every entry mdb
//! writes (enrolment pull requests, issue snippets, `mdb enrol`) and for a
//! revision received over the network, which the runner validates by
//! emitting it and reading it back with `db::validate`. A value is written
//! plain only when it cannot mean anything else; everything else is a
//! double-quoted scalar with every control, `<`, `>` and backtick escaped,
//! so the text is also inert inside Markdown code blocks.

use std::fmt::Write;

use crate::proto::{
    machine::Use, readiness_check::Check, Machine, Provisioner, ReadinessCheck, Role,
};

use super::{
    words::{DEVELOPMENT_KINDS, PROVISIONERS, ROLES, USE_KINDS},
    SourceFile,
};

/// Words YAML 1.1 loaders read as booleans or null.
const RESERVED: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

/// Whether `s` can be written as a plain scalar and read back as the same
/// string by any YAML loader.
fn plain_ok(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    first.is_ascii_alphanumeric()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'))
        && !s.ends_with(':')
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str())
        && s.parse::<f64>().is_err()
        && !s.starts_with("0x")
        && !s.starts_with("0o")
        && !sexagesimal_or_date(s)
}

/// YAML 1.1 loaders read `10:20:30` as a number and `2026-11-26` as a date.
fn sexagesimal_or_date(s: &str) -> bool {
    (s.contains(':') || s.contains('-'))
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ':' | '-' | '.'))
}

/// A YAML double-quoted scalar of `s`.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '`' => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{FEFF}') => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` plain when that is safe, else quoted.
pub fn scalar(s: &str) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        quote(s)
    }
}

fn word<T: Copy + PartialEq>(words: &[(&'static str, T)], v: T) -> &'static str {
    super::words::word_in(words, v)
}

/// One machine as a list item under `machines:` (two spaces in).
pub fn machine(m: &Machine) -> String {
    let mut y = String::new();
    let _ = writeln!(y, "  - name: {}", scalar(&m.name));
    match m.ips.as_slice() {
        [] => {}
        [one] => {
            let _ = writeln!(y, "    ip: {}", scalar(one));
        }
        many => {
            let list: Vec<String> = many.iter().map(|i| scalar(i)).collect();
            let _ = writeln!(y, "    ips: [{}]", list.join(", "));
        }
    }
    if !m.mac.is_empty() {
        let _ = writeln!(y, "    mac: {}", scalar(&m.mac));
    }
    if !m.hostname.is_empty() {
        let _ = writeln!(y, "    hostname: {}", scalar(&m.hostname));
    }
    use_of(&mut y, m.r#use.as_ref());
    if let Some(f) = m.features.as_ref().filter(|f| f.provisioner != 0) {
        let p = Provisioner::try_from(f.provisioner).unwrap_or(Provisioner::None);
        let _ = writeln!(
            y,
            "    features:\n      provisioner: {}",
            word(PROVISIONERS, p)
        );
    }
    if let Some(s) = &m.ssh {
        y.push_str("    ssh:\n");
        if !s.user.is_empty() {
            let _ = writeln!(y, "      user: {}", scalar(&s.user));
        }
        if s.port != 0 {
            let _ = writeln!(y, "      port: {}", s.port);
        }
        if !s.host_keys.is_empty() {
            y.push_str("      host_keys:\n");
            for k in &s.host_keys {
                let _ = writeln!(y, "        - {}", quote(k));
            }
        }
    }
    if m.wake {
        y.push_str("    wake: true\n");
    }
    if !m.labels.is_empty() {
        let mut labels: Vec<(&String, &String)> = m.labels.iter().collect();
        labels.sort();
        y.push_str("    labels:\n");
        for (k, v) in labels {
            let _ = writeln!(y, "      {}: {}", scalar(k), scalar(v));
        }
    }
    if !m.notes.is_empty() {
        let _ = writeln!(y, "    notes: {}", quote(&m.notes));
    }
    y
}

fn use_of(y: &mut String, u: Option<&Use>) {
    match u {
        None => {}
        Some(Use::Games(_)) => y.push_str("    use: games\n"),
        Some(Use::Discover(_)) => y.push_str("    use: discover\n"),
        Some(Use::Development(d)) => {
            let kind = crate::proto::DevelopmentKind::try_from(d.kind).unwrap_or_default();
            let _ = writeln!(
                y,
                "    use:\n      development: {}",
                word(DEVELOPMENT_KINDS, kind)
            );
        }
        Some(Use::Device(d)) => {
            let _ = writeln!(y, "    use:\n      device: {}", quote(&d.description));
        }
        Some(Use::Cluster(c)) => {
            let role = Role::try_from(c.role).unwrap_or_default();
            let _ = writeln!(
                y,
                "    use:\n      cluster:\n        name: {}\n        role: {}",
                scalar(&c.cluster),
                word(ROLES, role)
            );
        }
    }
}

/// A whole `machines/*.yaml` file.
pub fn machines_file(ms: &[Machine]) -> String {
    let mut y = String::from("machines:\n");
    for m in ms {
        y.push_str(&machine(m));
    }
    y
}

/// The `readiness:` section of an `mdb.yaml`.
pub fn readiness(checks: &[ReadinessCheck]) -> String {
    if checks.is_empty() {
        return String::new();
    }
    let mut y = String::from("readiness:\n");
    for (word, kind) in USE_KINDS {
        let of_use: Vec<&ReadinessCheck> =
            checks.iter().filter(|c| c.r#use == *kind as i32).collect();
        if of_use.is_empty() {
            continue;
        }
        let _ = writeln!(y, "  {word}:");
        for c in of_use {
            match &c.check {
                Some(Check::TcpPort(p)) => {
                    let _ = writeln!(y, "    - tcp: {p}");
                }
                Some(Check::Http(h)) => {
                    let _ = writeln!(
                        y,
                        "    - http: {}\n      port: {}\n      status: {}",
                        quote(&h.path),
                        h.port,
                        h.status
                    );
                }
                None => y.push_str("    - {}\n"),
            }
        }
    }
    let unknown = checks
        .iter()
        .any(|c| !USE_KINDS.iter().any(|(_, k)| c.r#use == *k as i32));
    if unknown {
        // A use no `mdb.yaml` can name: written so that validation says so.
        y.push_str("  unknown-use: []\n");
    }
    y
}

/// The `provision:` section of an `mdb.yaml`, from the words a server
/// sent (by use word, by machine name), each quoted for validation to judge.
pub fn policy(
    by_use: &std::collections::HashMap<String, String>,
    by_machine: &std::collections::HashMap<String, String>,
    wake: &[String],
) -> String {
    if by_use.is_empty() && by_machine.is_empty() && wake.is_empty() {
        return String::new();
    }
    let mut y = String::from("provision:\n");
    let sorted = |m: &std::collections::HashMap<String, String>| {
        let mut v: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort();
        v
    };
    for (word, treatment) in sorted(by_use) {
        let _ = writeln!(y, "  {}: {}", scalar(&word), quote(&treatment));
    }
    if !by_machine.is_empty() {
        y.push_str("  machines:\n");
        for (name, treatment) in sorted(by_machine) {
            let _ = writeln!(y, "    {}: {}", scalar(&name), quote(&treatment));
        }
    }
    if !wake.is_empty() {
        let words: Vec<String> = wake.iter().map(|w| quote(w)).collect();
        let _ = writeln!(y, "  wake: [{}]", words.join(", "));
    }
    y
}

/// What a server sent the runner: machines, readiness checks and policy.
pub struct Received<'a> {
    pub machines: &'a [Machine],
    pub readiness: &'a crate::proto::GetReadinessResponse,
}

/// A revision as received over the network (the machines, readiness checks
/// and policy a server sent), as the files of a DB repository: each machine
/// in a file named like the one it came from (under `machines/`), the rest
/// in `mdb.yaml`. Reading them back with `db::validate` is checking the
/// revision with the code of `mdb validate`.
pub fn received(got: &Received) -> Vec<SourceFile> {
    let (machines, checks) = (got.machines, &got.readiness.checks);
    let mut by_file: std::collections::BTreeMap<String, Vec<Machine>> = Default::default();
    for m in machines {
        let file = m
            .source
            .rsplit_once(':')
            .map_or(m.source.as_str(), |(f, _)| f);
        let file = if file.starts_with("machines/") && super::is_db_file(file) {
            file.to_string()
        } else {
            "machines/received.yaml".to_string()
        };
        by_file.entry(file).or_default().push(m.clone());
    }
    let mut files: Vec<SourceFile> = by_file
        .into_iter()
        .map(|(path, ms)| SourceFile {
            path,
            text: machines_file(&ms),
        })
        .collect();
    files.push(SourceFile {
        path: super::mdb_yaml::FILE.into(),
        text: readiness(checks)
            + &policy(
                &got.readiness.policy_by_use,
                &got.readiness.policy_by_machine,
                &got.readiness.wake_uses,
            ),
    });
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        db::{validate, SourceFile},
        proto::{ClusterUse, DeviceUse, Features, Ssh},
    };

    fn reread(ms: &[Machine]) -> Vec<Machine> {
        let text = machines_file(ms);
        let snap = validate(
            &[SourceFile {
                path: "machines/x.yaml".into(),
                text: text.clone(),
            }],
            "r",
        )
        .unwrap_or_else(|r| panic!("{r}\n{text}"));
        snap.machines
            .iter()
            .map(|m| Machine {
                source: String::new(),
                ..m.clone()
            })
            .collect()
    }

    #[test]
    fn every_machine_reads_back_as_it_was() {
        let cp = Machine {
            name: "cp".into(),
            ips: vec!["198.18.10.10".into(), "2001:db8::10".into()],
            mac: "dc:a6:32:00:00:01".into(),
            hostname: "cp.lab.example".into(),
            r#use: Some(Use::Cluster(ClusterUse {
                cluster: "alpha".into(),
                role: Role::ControlPlane as i32,
            })),
            features: Some(Features {
                provisioner: Provisioner::Primary as i32,
            }),
            ssh: Some(Ssh {
                user: "pi".into(),
                port: 2222,
                ..Default::default()
            }),
            labels: [
                ("arch".to_string(), "arm64".to_string()),
                ("on".to_string(), "no".to_string()),
                ("empty".to_string(), String::new()),
            ]
            .into(),
            notes: "line one\nline \"two\" <!-- x --> `y` \\ z\t\u{7}".into(),
            wake: true,
            source: String::new(),
        };
        let printer = Machine {
            name: "printer".into(),
            ips: vec!["198.18.10.50".into()],
            r#use: Some(Use::Device(DeviceUse {
                description: "Epson: \"TM\" series, 1.0".into(),
            })),
            ..Default::default()
        };
        let ms = vec![cp, printer];
        assert_eq!(reread(&ms), ms);
    }

    #[test]
    fn strings_that_would_mean_something_else_are_quoted() {
        for s in [
            "yes",
            "No",
            "12",
            "1.5",
            "0x1f",
            "",
            "-x",
            "a b",
            "a:",
            "#c",
            "{hosts}",
            "lab, x-injected: yes",
            "10:20:30",
            "2026-11-26",
        ] {
            assert!(scalar(s).starts_with('"'), "{s:?} -> {}", scalar(s));
        }
        for s in [
            "pi-dca632-0060",
            "198.18.10.11",
            "dc:a6:32:00:00:60",
            "2001:db8::1",
            "rack/1",
        ] {
            assert_eq!(scalar(s), s);
        }
        let q = quote("<!-- a --> ``` b");
        assert!(!q.contains('<') && !q.contains('`'), "{q}");
    }

    #[test]
    fn a_hostile_revision_received_is_refused_by_validation() {
        use crate::proto::{readiness_check::Check, HttpCheck, UseKind};
        let good = Machine {
            name: "w1".into(),
            ips: vec!["198.18.10.21".into()],
            r#use: Some(Use::Development(crate::proto::DevelopmentUse { kind: 1 })),
            source: "machines/dev.yaml:3".into(),
            ..Default::default()
        };
        let check = ReadinessCheck {
            r#use: UseKind::Device as i32,
            check: Some(Check::Http(HttpCheck {
                port: 80,
                path: "/".into(),
                status: 200,
            })),
        };
        let sent = |machines: &[Machine], checks: Vec<ReadinessCheck>, policy: &[(&str, &str)]| {
            let readiness = crate::proto::GetReadinessResponse {
                checks,
                policy_by_machine: policy
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            };
            received(&Received {
                machines,
                readiness: &readiness,
            })
        };
        let files = sent(
            std::slice::from_ref(&good),
            vec![check.clone()],
            &[("w1", "none")],
        );
        crate::db::validate(&files, "r").unwrap_or_else(|r| panic!("{r}"));
        let evil = Machine {
            name: "evil".into(),
            ssh: Some(Ssh {
                user: "-oProxyCommand=touch /tmp/pwned #".into(),
                port: 22,
                ..Default::default()
            }),
            labels: [("x".to_string(), "{hosts}".to_string())].into(),
            source: "../../etc/passwd:1".into(),
            ..good
        };
        let crlf = ReadinessCheck {
            check: Some(Check::Http(HttpCheck {
                port: 80,
                path: "/ HTTP/1.0\r\nX: y".into(),
                status: 200,
            })),
            ..check
        };
        let report = crate::db::validate(&sent(&[evil], vec![crlf], &[("nobody", "Run It")]), "r")
            .unwrap_err();
        let text = report.to_string();
        for field in [
            "ssh.user",
            "labels",
            "readiness.device[0].http",
            "provision.machines.nobody",
        ] {
            assert!(text.contains(field), "{field} not refused: {text}");
        }
        assert!(text.contains("machines/received.yaml"), "{text}");
    }
}
