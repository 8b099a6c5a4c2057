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

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "{n} problem{}", if n == 1 { "" } else { "s" })?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}
