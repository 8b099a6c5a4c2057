//! Typed access to the fields of a YAML mapping. Each accessor reports what
//! is wrong as a `Problem` and returns `None`, so one pass collects every
//! problem in a file instead of stopping at the first.

use std::collections::HashSet;

use super::{
    problem::Problem,
    yaml::{Node, Value},
};

pub struct Fields<'a> {
    pub file: &'a str,
    pub node: &'a Node,
    /// Dotted path of this mapping, prefixed to field names in problems.
    pub path: String,
    entries: &'a [(Node, Node)],
}

impl<'a> Fields<'a> {
    /// Checks that `node` is a mapping whose keys are all in `allowed`,
    /// each at most once.
    pub fn of(
        file: &'a str,
        node: &'a Node,
        path: &str,
        allowed: &[&str],
        problems: &mut Vec<Problem>,
    ) -> Option<Fields<'a>> {
        let Value::Map(entries) = &node.value else {
            problems.push(Problem::new(
                file,
                node.pos,
                path,
                format!("expected a mapping, found {}", node.kind()),
            ));
            return None;
        };
        let mut seen = HashSet::new();
        for (k, _) in entries {
            let key = k.as_str().unwrap_or("");
            if !allowed.contains(&key) {
                let hint = match closest(key, allowed) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                problems.push(Problem::new(
                    file,
                    k.pos,
                    &join(path, key),
                    format!(
                        "unknown field; {hint}expected one of: {}",
                        allowed.join(", ")
                    ),
                ));
            } else if !seen.insert(key) {
                problems.push(Problem::new(
                    file,
                    k.pos,
                    &join(path, key),
                    "field given twice",
                ));
            }
        }
        Some(Fields {
            file,
            node,
            path: path.to_string(),
            entries,
        })
    }

    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, v)| k.as_str() == Some(key) && !v.is_null())
            .map(|(_, v)| v)
    }

    /// The key node, for pointing at a field that is present but empty.
    pub fn key(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    pub fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    pub fn problem(&self, node: &Node, key: &str, message: impl Into<String>) -> Problem {
        Problem::new(self.file, node.pos, &self.field(key), message)
    }

    pub fn str(&self, key: &str, problems: &mut Vec<Problem>) -> Option<&'a str> {
        let node = self.get(key)?;
        match node.as_str() {
            Some(s) => Some(s),
            None => {
                problems.push(self.problem(
                    node,
                    key,
                    format!("expected a string, found {}", node.kind()),
                ));
                None
            }
        }
    }

    pub fn required_str(&self, key: &str, problems: &mut Vec<Problem>) -> Option<&'a str> {
        if self.get(key).is_none() {
            let at = self.key(key).unwrap_or(self.node);
            problems.push(self.problem(at, key, "required field is missing"));
            return None;
        }
        self.str(key, problems)
    }

    /// A string or a list of strings.
    pub fn strs(&self, key: &str, problems: &mut Vec<Problem>) -> Vec<&'a Node> {
        let Some(node) = self.get(key) else {
            return Vec::new();
        };
        match &node.value {
            Value::Scalar(..) => vec![node],
            Value::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    if item.as_str().is_some() {
                        out.push(item);
                    } else {
                        problems.push(self.problem(
                            item,
                            key,
                            format!("expected a string, found {}", item.kind()),
                        ));
                    }
                }
                out
            }
            _ => {
                problems.push(self.problem(
                    node,
                    key,
                    format!("expected a string or a list, found {}", node.kind()),
                ));
                Vec::new()
            }
        }
    }

    pub fn parse<T: std::str::FromStr>(
        &self,
        key: &str,
        what: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        let node = self.get(key)?;
        let text = self.str(key, problems)?;
        match text.trim().parse() {
            Ok(v) => Some(v),
            Err(_) => {
                problems.push(self.problem(node, key, format!("{text:?} is not {what}")));
                None
            }
        }
    }

    /// A duration like `90s` or `1h` (at most a year).
    pub fn duration(&self, key: &str, problems: &mut Vec<Problem>) -> Option<std::time::Duration> {
        let node = self.get(key)?;
        let text = self.str(key, problems)?;
        let d = crate::units::parse_duration(text);
        if d.is_none() {
            problems.push(self.problem(node, key, format!("{text:?} is not a duration like 1h")));
        }
        d
    }

    /// A list of TCP port numbers (1-65535); each bad one is a problem.
    pub fn ports(&self, key: &str, problems: &mut Vec<Problem>) -> Vec<u16> {
        self.strs(key, problems)
            .into_iter()
            .filter_map(|n| {
                let text = n.as_str().unwrap_or_default();
                match text.trim().parse::<u16>() {
                    Ok(p) if p > 0 => Some(p),
                    _ => {
                        problems.push(self.problem(
                            n,
                            key,
                            format!("{text:?} is not a port number (1-65535)"),
                        ));
                        None
                    }
                }
            })
            .collect()
    }

    pub fn bool(&self, key: &str, problems: &mut Vec<Problem>) -> Option<bool> {
        self.parse(key, "true or false", problems)
    }

    /// One of a closed set of words; `-` and `_` are interchangeable.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        let node = self.get(key)?;
        let text = self.str(key, problems)?;
        self.chosen(node, key, text, choices, problems)
    }

    /// Every word of a list (or one string) that is one of `choices`; each
    /// other word is a problem naming its line.
    pub fn choices<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        problems: &mut Vec<Problem>,
    ) -> Vec<T> {
        self.strs(key, problems)
            .into_iter()
            .filter_map(|n| {
                let text = n.as_str().unwrap_or_default();
                self.chosen(n, key, text, choices, problems)
            })
            .collect()
    }

    fn chosen<T: Copy>(
        &self,
        node: &Node,
        key: &str,
        text: &str,
        choices: &[(&str, T)],
        problems: &mut Vec<Problem>,
    ) -> Option<T> {
        choose(text, choices).or_else(|| {
            let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
            problems.push(self.problem(
                node,
                key,
                format!("{text:?} is not one of: {}", names.join(", ")),
            ));
            None
        })
    }
}

/// The allowed word a typo most likely meant, if one is close enough.
pub fn closest<'w>(typo: &str, allowed: &[&'w str]) -> Option<&'w str> {
    let typo = typo.to_ascii_lowercase();
    allowed
        .iter()
        .map(|w| (strsim::damerau_levenshtein(&typo, w), *w))
        .filter(|(d, w)| *d <= (w.len() / 3).max(1))
        .min()
        .map(|(_, w)| w)
}

pub fn choose<T: Copy>(text: &str, choices: &[(&str, T)]) -> Option<T> {
    let want = text.trim().to_ascii_lowercase().replace('_', "-");
    choices.iter().find(|(n, _)| *n == want).map(|(_, v)| *v)
}

pub fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => path.to_string(),
        _ => format!("{path}.{key}"),
    }
}
