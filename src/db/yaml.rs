//! A YAML tree that remembers where every node came from, so validation can
//! point at `file:line:col`. Built from yaml-rust2's marked events; it does
//! not interpret the tree (that is `db::load`'s job).

use std::collections::HashMap;
use yaml_rust2::{
    parser::{Event, Parser},
    scanner::{Marker, TScalarStyle},
};

/// Where a node starts; both 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub enum Value {
    Null,
    /// The text and whether it was quoted (a quoted "22" is a string).
    Scalar(String, bool),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Deepest nesting of lists and mappings a database file may use. A machine
/// entry needs about five; yaml-rust2's own loader recurses per level and
/// overflows the stack near 8,000, so the events are read here instead.
pub const MAX_DEPTH: usize = 64;

/// Nodes one document may expand to, counting every node an alias copies.
/// Plain YAML spends at least a byte per node, so `text.len()` bounds an
/// honest file; aliases are what can multiply it (the "billion laughs").
fn node_budget(text: &str) -> usize {
    text.len().max(10_000)
}

/// Parses one YAML document; an empty document is `None`. Nesting deeper
/// than [`MAX_DEPTH`] and alias expansion past the node budget are errors
/// at the place they occur, so a hostile file costs bounded stack and memory.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder {
        budget: node_budget(text),
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| SyntaxError {
            pos: pos(e.marker()),
            message: e.info().to_string(),
        })?;
        if matches!(ev, Event::StreamEnd) {
            break;
        }
        builder.on_event(ev, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(builder.root)
}

fn pos(m: &Marker) -> Pos {
    Pos {
        line: m.line(),
        col: m.col() + 1,
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// How many nodes this one holds, itself included.
    pub fn size(&self) -> usize {
        1 + match &self.value {
            Value::Null | Value::Scalar(..) => 0,
            Value::Seq(items) => items.iter().map(Node::size).sum(),
            Value::Map(entries) => entries.iter().map(|(k, v)| k.size() + v.size()).sum(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// A short word for error messages: "a mapping", "a list", ...
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "empty",
            Value::Scalar(..) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

enum Frame {
    Seq(Pos, usize, Vec<Node>),
    /// Entries so far and a key waiting for its value.
    Map(Pos, usize, Vec<(Node, Node)>, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Node>,
    /// Each anchored node with the number of nodes it holds, so an alias
    /// is charged for everything it copies.
    anchors: HashMap<usize, (Node, usize)>,
    error: Option<SyntaxError>,
    /// Nodes still allowed, aliases' copies included.
    budget: usize,
    /// Only the first document of a file is the database; later ones are ignored.
    done: bool,
}

impl Builder {
    fn fail(&mut self, at: Pos, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                pos: at,
                message: message.into(),
            });
        }
    }

    /// Takes `n` nodes from the budget; false (with the error set) when spent.
    fn charge(&mut self, at: Pos, n: usize) -> bool {
        match self.budget.checked_sub(n) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => {
                self.fail(
                    at,
                    "aliases expand to more nodes than the file could hold (an alias bomb?)",
                );
                false
            }
        }
    }

    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        if self.stack.is_empty() {
            self.done = true;
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, _, items)) => items.push(node),
            Some(Frame::Map(pos, _, entries, key)) => match key.take() {
                None => {
                    // A block mapping is best pointed at by its first key.
                    if entries.is_empty() {
                        *pos = node.pos;
                    }
                    *key = Some(node)
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.done {
            return;
        }
        let at = pos(&mark);
        match ev {
            Event::Scalar(text, style, anchor, _tag) => {
                if !self.charge(at, 1) {
                    return;
                }
                let quoted = style != TScalarStyle::Plain;
                let value =
                    if !quoted && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
                        Value::Null
                    } else {
                        Value::Scalar(text, quoted)
                    };
                self.push(Node { pos: at, value }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                if self.open(at) {
                    self.stack.push(Frame::Seq(at, anchor, Vec::new()))
                }
            }
            Event::MappingStart(anchor, _) => {
                if self.open(at) {
                    self.stack.push(Frame::Map(at, anchor, Vec::new(), None))
                }
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(id) => self.alias(id, at),
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }

    /// Whether one more level of nesting is allowed here.
    fn open(&mut self, at: Pos) -> bool {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(
                at,
                format!("nested deeper than {MAX_DEPTH} levels of lists and mappings"),
            );
            return false;
        }
        self.charge(at, 1)
    }

    fn close(&mut self) {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq(p, a, items)) => (
                Node {
                    pos: p,
                    value: Value::Seq(items),
                },
                a,
            ),
            Some(Frame::Map(p, a, entries, _)) => (
                Node {
                    pos: p,
                    value: Value::Map(entries),
                },
                a,
            ),
            None => return,
        };
        self.push(node, anchor);
    }

    fn alias(&mut self, id: usize, at: Pos) {
        let Some(size) = self.anchors.get(&id).map(|(_, size)| *size) else {
            self.fail(at, "alias to an unknown anchor");
            return;
        };
        // The copy is charged before it is made, so a bomb never allocates.
        if !self.charge(at, size) {
            return;
        }
        let Some(mut node) = self.anchors.get(&id).map(|(node, _)| node.clone()) else {
            return;
        };
        node.pos = at;
        self.push(node, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_carry_line_and_column() {
        let text = "machines:\n  - name: a\n    ip: 198.18.0.1\n";
        let root = parse(text).unwrap().unwrap();
        let Value::Map(entries) = &root.value else {
            panic!("not a map")
        };
        let Value::Seq(items) = &entries[0].1.value else {
            panic!("not a seq")
        };
        let Value::Map(fields) = &items[0].value else {
            panic!("not a map")
        };
        assert_eq!(fields[1].0.as_str(), Some("ip"));
        assert_eq!(fields[1].0.pos, Pos { line: 3, col: 5 });
        assert_eq!(fields[1].1.pos, Pos { line: 3, col: 9 });
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_grows() {
        let mut text = String::from("a0: &a0 [\"x\"]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err}");
        assert!(err.pos.line > 1, "{err:?}");
    }

    #[test]
    fn deep_block_nesting_is_an_error_not_a_stack_overflow() {
        let text = "- ".repeat(8000) + "x\n";
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("deeper than 64"), "{err}");
        let ok = "- ".repeat(MAX_DEPTH - 1) + "x\n";
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn honest_aliases_still_work() {
        let root = parse("base: &b {user: pi}\nm: *b\n").unwrap().unwrap();
        assert_eq!(root.size(), 9);
    }

    #[test]
    fn empty_document_is_none() {
        assert!(parse("# only a comment\n").unwrap().is_none());
    }
}
