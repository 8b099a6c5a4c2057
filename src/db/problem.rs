//! A validation problem and the report that collects all of them. Every
//! problem points at a file, line and column, like a compiler error.

use std::fmt;

use super::yaml::Pos;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Path inside the DB repository, e.g. `machines/rack1.yaml`.
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// The field the problem is about, e.g. `use.cluster.role`; may be empty.
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(file: &str, pos: Pos, field: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// `file:line` — how problems refer to other places.
    pub fn at(file: &str, pos: Pos) -> String {
        format!("{file}:{}", pos.line)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.col)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one revision of the database.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Report(pub Vec<Problem>);

/// Problems a report shows when printed whole in a log line or `GetStats`;
/// `mdb validate` lists every one. Keeps a 100k-problem revision from making
/// a message over gRPC's 4 MiB cap or gigabytes of logs.
pub const SHOWN_PROBLEMS: usize = 20;
/// Longest message shown for one problem in a summary (a 1 MB value stays in the file).
const SHOWN_MESSAGE_CHARS: usize = 300;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in self.0.iter().take(SHOWN_PROBLEMS) {
            let line = p.to_string();
            match line.char_indices().nth(SHOWN_MESSAGE_CHARS) {
                Some((cut, _)) => write!(f, "\n  {}…", &line[..cut])?,
                None => write!(f, "\n  {line}")?,
            }
        }
        if n > SHOWN_PROBLEMS {
            write!(f, "\n  …and {} more", n - SHOWN_PROBLEMS)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_report_prints_a_bounded_summary() {
        let mut problems: Vec<Problem> = (0..100_000)
            .map(|i| Problem::new("machines/a.yaml", Pos { line: i, col: 1 }, "name", "bad"))
            .collect();
        problems[0].message = "x".repeat(1_000_000);
        let text = Report(problems).to_string();
        assert!(text.len() < 20 * 400, "{} bytes", text.len());
        assert!(
            text.ends_with("…and 99980 more"),
            "{}",
            &text[text.len() - 40..]
        );
    }
}
