//! A YAML tree in which every node remembers its source position, built from yaml-rust2's event
//! parser (serde would stop at the first error and loses positions).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostic::Diagnostic;

/// How many nodes alias expansion (`*name`) may create in total; guards against "billion laughs".
const ALIAS_EXPANSION_LIMIT: usize = 100_000;

/// A YAML node with its 1-based source position.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub line: usize,
    pub column: usize,
    pub kind: NodeKind,
}

/// The shape of a [`Node`].
#[derive(Clone, Debug)]
pub(crate) enum NodeKind {
    /// A scalar; `plain` is false for quoted and block scalars.
    Scalar {
        value: String,
        plain: bool,
    },
    Sequence(Vec<Node>),
    /// Entries in document order (duplicates kept; the validator reports them).
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// A diagnostic pointing at this node.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.line, self.column, message)
    }

    /// True for the YAML null forms: empty, `~`, `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { value, plain: true }
            if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// The scalar text, if this is a non-null scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { value, .. } if !self.is_null() => Some(value),
            _ => None,
        }
    }

    /// "null", "a scalar", "a sequence" or "a mapping", for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            _ if self.is_null() => "null",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Sequence(_) => "a sequence",
            NodeKind::Mapping(_) => "a mapping",
        }
    }

    fn size(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar { .. } => 1,
            NodeKind::Sequence(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            NodeKind::Mapping(entries) => 1 + entries.iter().map(|(k, v)| k.size() + v.size()).sum::<usize>(),
        }
    }
}

/// A collection being built.
enum Frame {
    Sequence { at: Marker, anchor: usize, items: Vec<Node> },
    Mapping { at: Marker, anchor: usize, entries: Vec<(Node, Node)>, key: Option<Node> },
}

#[derive(Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    expanded: usize,
    errors: Vec<Diagnostic>,
}

fn position(mark: Marker) -> (usize, usize) {
    // yaml-rust2 markers: 1-based line, 0-based column.
    (mark.line().max(1), mark.col() + 1)
}

fn node_at(mark: Marker, kind: NodeKind) -> Node {
    let (line, column) = position(mark);
    Node { line, column, kind }
}

impl TreeBuilder {
    fn finish_node(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.documents <= 1 {
                    self.root = Some(node);
                }
            }
            Some(Frame::Sequence { items, .. }) => items.push(node),
            Some(Frame::Mapping { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    let (line, column) = position(mark);
                    self.errors.push(Diagnostic::new(
                        line,
                        column,
                        "a policy file must contain exactly one YAML document",
                    ));
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let plain = style == TScalarStyle::Plain;
                self.finish_node(node_at(mark, NodeKind::Scalar { value, plain }), anchor);
            }
            Event::Alias(id) => {
                let null = || node_at(mark, NodeKind::Scalar { value: String::new(), plain: true });
                let node = match self.anchors.get(&id) {
                    Some(target) => {
                        self.expanded += target.size();
                        if self.expanded > ALIAS_EXPANSION_LIMIT {
                            let (line, column) = position(mark);
                            self.errors.push(Diagnostic::new(
                                line,
                                column,
                                format!("YAML aliases expand to more than {ALIAS_EXPANSION_LIMIT} nodes"),
                            ));
                            null()
                        } else {
                            target.clone()
                        }
                    }
                    None => {
                        let (line, column) = position(mark);
                        self.errors.push(Diagnostic::new(
                            line,
                            column,
                            "alias refers to an anchor that is not complete (recursive alias)",
                        ));
                        null()
                    }
                };
                self.finish_node(node, 0);
            }
            Event::SequenceStart(anchor, _tag) => {
                self.stack.push(Frame::Sequence { at: mark, anchor, items: Vec::new() })
            }
            Event::MappingStart(anchor, _tag) => {
                self.stack.push(Frame::Mapping { at: mark, anchor, entries: Vec::new(), key: None })
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Sequence { at, anchor, items }) => {
                    self.finish_node(node_at(at, NodeKind::Sequence(items)), anchor)
                }
                Some(Frame::Mapping { at, anchor, entries, .. }) => {
                    // A block mapping's start marker points at its first ':'; use the first key.
                    let mut node = node_at(at, NodeKind::Mapping(Vec::new()));
                    if let Some((key, _)) = entries.first() {
                        if (key.line, key.column) < (node.line, node.column) {
                            (node.line, node.column) = (key.line, key.column);
                        }
                    }
                    node.kind = NodeKind::Mapping(entries);
                    self.finish_node(node, anchor)
                }
                None => {}
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Parses `src` into a spanned tree. `Ok((None, _))` for an empty stream. A YAML syntax error
/// is `Err` (the parser cannot continue after one); problems that still leave a usable tree
/// (several documents, alias expansion) are returned next to the tree.
pub(crate) fn parse_yaml(src: &str) -> Result<(Option<Node>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(src);
    if let Err(e) = parser.load(&mut builder, true) {
        let (line, column) = position(*e.marker());
        builder.errors.push(Diagnostic::new(line, column, format!("YAML syntax error: {}", e.info())));
        return Err(builder.errors);
    }
    Ok((builder.root, builder.errors))
}
