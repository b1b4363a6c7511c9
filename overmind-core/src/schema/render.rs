//! The canonical description: a depth-first rendering of the traced shape from its root.
//!
//! A named container is written out in full where the rendering first meets it and as
//! `#k` (the k-th container written out, from 1) wherever it is met again, so the text is
//! finite for recursive types and depends on the order of fields and variants only, never
//! on the order in which the tracer happened to meet things.
//!
//! The rendering works from an explicit stack rather than by recursion, so a type as deep
//! as it likes cannot overflow the thread's stack here.
//!
//! Everything written here is part of the persisted format: a change to a word, a
//! separator or the numbering changes every fingerprint.

use super::model::{Entry, Kind, Node, Payload};

/// Renders `root`, whose named containers are `entries`.
pub(super) fn describe(root: &Node, entries: &[Entry]) -> String {
    let mut renderer = Renderer {
        entries,
        numbers: vec![None; entries.len()],
        next_number: 1,
        out: String::new(),
    };
    let mut stack = vec![Item::Node(root)];
    while let Some(item) = stack.pop() {
        renderer.render(item, &mut stack);
    }
    renderer.out
}

/// Something left to write, in order, from the top of the stack.
enum Item<'a> {
    Text(&'static str),
    Name(&'static str),
    Node(&'a Node),
    /// A payload; the `&str` is the word for a tuple (`tuple_struct` or `tuple`).
    Payload(Option<&'a Payload>, &'static str),
}

struct Renderer<'a> {
    entries: &'a [Entry],
    /// The `#k` number of each entry once written out.
    numbers: Vec<Option<usize>>,
    next_number: usize,
    out: String,
}

impl<'a> Renderer<'a> {
    fn render(&mut self, item: Item<'a>, stack: &mut Vec<Item<'a>>) {
        let items = match item {
            Item::Text(text) => {
                self.out.push_str(text);
                return;
            }
            Item::Name(name) => {
                push_name(&mut self.out, name);
                return;
            }
            Item::Node(node) => self.node(node),
            Item::Payload(payload, tuple_word) => payload_items(payload, tuple_word),
        };
        // Reversed, so that the first item is popped first.
        stack.extend(items.into_iter().rev());
    }

    fn node(&mut self, node: &'a Node) -> Vec<Item<'a>> {
        match node {
            Node::Leaf(leaf) => vec![Item::Text(leaf.text())],
            Node::Option(inner) => vec![Item::Text("option<"), Item::Node(inner), Item::Text(">")],
            Node::Seq(inner) => vec![Item::Text("seq<"), Item::Node(inner), Item::Text(">")],
            Node::Map(key, value) => vec![
                Item::Text("map<"),
                Item::Node(key),
                Item::Text(","),
                Item::Node(value),
                Item::Text(">"),
            ],
            Node::Tuple(elements) => {
                let mut items = vec![Item::Text("tuple(")];
                push_list(
                    &mut items,
                    elements.iter().map(|element| vec![Item::Node(element)]),
                );
                items.push(Item::Text(")"));
                items
            }
            Node::Named(id) => self.named(*id),
            Node::Unknown => vec![Item::Text("?")],
        }
    }

    /// A named container: its back-reference if written out already, else its definition.
    fn named(&mut self, id: usize) -> Vec<Item<'a>> {
        let (Some(entry), Some(number)) = (self.entries.get(id), self.numbers.get_mut(id)) else {
            return vec![Item::Text("?")];
        };
        if let Some(number) = number {
            self.out.push('#');
            self.out.push_str(&number.to_string());
            return Vec::new();
        }
        *number = Some(self.next_number);
        self.next_number += 1;
        match entry.key.kind {
            Kind::Struct | Kind::TupleStruct | Kind::Newtype => {
                vec![Item::Payload(
                    entry.slots.first().and_then(Option::as_ref),
                    "tuple_struct",
                )]
            }
            Kind::Enum => enum_items(entry),
        }
    }
}

/// `enum{A:unit,B:newtype(u8),C:tuple(u8,str),D:struct{x:u8}}`, variants in declaration order.
fn enum_items(entry: &Entry) -> Vec<Item<'_>> {
    let mut items = vec![Item::Text("enum{")];
    let variants = entry.key.members.iter().zip(&entry.slots);
    push_list(
        &mut items,
        variants.map(|(name, payload)| {
            vec![
                Item::Name(name),
                Item::Text(":"),
                Item::Payload(payload.as_ref(), "tuple"),
            ]
        }),
    );
    items.push(Item::Text("}"));
    items
}

fn payload_items<'a>(payload: Option<&'a Payload>, tuple_word: &'static str) -> Vec<Item<'a>> {
    match payload {
        // Never once traced completely: every slot is recorded.
        None => vec![Item::Text("?")],
        Some(Payload::Unit) => vec![Item::Text("unit")],
        Some(Payload::Newtype(inner)) => {
            vec![Item::Text("newtype("), Item::Node(inner), Item::Text(")")]
        }
        Some(Payload::Tuple(elements)) => {
            let mut items = vec![Item::Text(tuple_word), Item::Text("(")];
            push_list(
                &mut items,
                elements.iter().map(|element| vec![Item::Node(element)]),
            );
            items.push(Item::Text(")"));
            items
        }
        Some(Payload::Struct(fields)) => {
            let mut items = vec![Item::Text("struct{")];
            push_list(
                &mut items,
                fields
                    .iter()
                    .map(|(name, node)| vec![Item::Name(name), Item::Text(":"), Item::Node(node)]),
            );
            items.push(Item::Text("}"));
            items
        }
    }
}

/// Appends the parts, separated by commas.
fn push_list<'a>(items: &mut Vec<Item<'a>>, parts: impl Iterator<Item = Vec<Item<'a>>>) {
    for (i, part) in parts.enumerate() {
        if i > 0 {
            items.push(Item::Text(","));
        }
        items.extend(part);
    }
}

/// A field or variant name: as is if it is made of ASCII letters, digits and `_` (every
/// Rust identifier that serde does not rename), else quoted with `"` and `\` escaped, so
/// that no name can be mistaken for punctuation (`#[serde(rename = "a:b")]`). Only ASCII
/// tests: Unicode tables change between Rust versions, and this must not.
fn push_name(out: &mut String, name: &str) {
    let plain = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        out.push_str(name);
        return;
    }
    out.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}
