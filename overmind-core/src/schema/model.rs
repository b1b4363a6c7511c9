//! The traced shape before it is rendered: leaves, anonymous nodes, and the table of named
//! containers (structs and enums) that nodes refer to by index.

use std::any::TypeId;

/// A shape with no parts. `str` stands for `&str` and `String` alike, `bytes` for `&[u8]`
/// and `Vec<u8>` via `serde_bytes` alike: bincode encodes each pair the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leaf {
    Bool,
    I8,
    I16,
    I32,
    I64,
    I128,
    U8,
    U16,
    U32,
    U64,
    U128,
    F32,
    F64,
    Char,
    Str,
    Bytes,
    Unit,
    /// A unit struct: it has no contents and cannot be recursive, so it needs no entry.
    UnitStruct,
}

impl Leaf {
    /// The leaf's word in the description. Part of the persisted format: never change one.
    pub(super) fn text(self) -> &'static str {
        match self {
            Leaf::Bool => "bool",
            Leaf::I8 => "i8",
            Leaf::I16 => "i16",
            Leaf::I32 => "i32",
            Leaf::I64 => "i64",
            Leaf::I128 => "i128",
            Leaf::U8 => "u8",
            Leaf::U16 => "u16",
            Leaf::U32 => "u32",
            Leaf::U64 => "u64",
            Leaf::U128 => "u128",
            Leaf::F32 => "f32",
            Leaf::F64 => "f64",
            Leaf::Char => "char",
            Leaf::Str => "str",
            Leaf::Bytes => "bytes",
            Leaf::Unit => "unit",
            Leaf::UnitStruct => "unit_struct",
        }
    }
}

/// The shape of one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Leaf(Leaf),
    Option(Box<Node>),
    Seq(Box<Node>),
    Map(Box<Node>, Box<Node>),
    /// A tuple or an array: a fixed number of elements.
    Tuple(Vec<Node>),
    /// A named container: an index into the entry table.
    Named(usize),
    /// Nothing was read here: a quiet occurrence (whose shape nobody records), or a visitor
    /// that asked for a sequence and read no element of it.
    Unknown,
}

/// What a struct-like container, or one variant of an enum, holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Payload {
    Unit,
    Newtype(Node),
    Tuple(Vec<Node>),
    /// Field names in declaration order (as serde lists them), each with its shape.
    Struct(Vec<(&'static str, Node)>),
}

/// Which `deserialize_*` method a named container came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Struct,
    TupleStruct,
    Newtype,
    Enum,
}

/// What identifies a named container. The `TypeId` of the visitor's value tells two
/// same-named types apart (`a::Item` and `b::Item`, `Wrapper<u8>` and `Wrapper<String>`);
/// the rest tells apart two ways of deserializing one type (`deserialize_with`), so that
/// each gets its own definition instead of two that disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct ContainerKey {
    pub(super) type_id: TypeId,
    pub(super) kind: Kind,
    pub(super) name: &'static str,
    /// Field names (structs) or variant names (enums); empty for the others.
    pub(super) members: &'static [&'static str],
    /// The number of elements a tuple struct declares.
    pub(super) len: usize,
}

impl ContainerKey {
    /// The key of a container whose visitor produces a `T`. `typeid::of` also works for
    /// types that are not `'static` (a state type may have a lifetime parameter).
    pub(super) fn of<T: ?Sized>(
        kind: Kind,
        name: &'static str,
        members: &'static [&'static str],
        len: usize,
    ) -> ContainerKey {
        ContainerKey {
            type_id: typeid::of::<T>(),
            kind,
            name,
            members,
            len,
        }
    }

    /// How many payloads define the container: one per variant for an enum, else one.
    pub(super) fn slots(&self) -> usize {
        match self.kind {
            Kind::Enum => self.members.len(),
            Kind::Struct | Kind::TupleStruct | Kind::Newtype => 1,
        }
    }
}

/// A named container met while recording, with what is known of it so far.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: ContainerKey,
    /// One payload per variant (enums) or a single one; `None` until recorded.
    pub(super) slots: Vec<Option<Payload>>,
    /// Where the next non-quiet encounter of an enum starts looking for a variant.
    pub(super) rotation: usize,
}

impl Entry {
    pub(super) fn new(key: ContainerKey) -> Entry {
        Entry {
            key,
            slots: vec![None; key.slots()],
            rotation: 0,
        }
    }

    pub(super) fn is_complete(&self) -> bool {
        self.slots.iter().all(Option::is_some)
    }
}

/// For each entry, the variant (or `0` for a struct-like one) through which the recorded
/// definitions show a finite value, or `None` if they do not show one yet.
///
/// A quiet occurrence must end: it follows these choices, and each one leads only to
/// containers of a lower rank (ranks count the levels of the finite value), so it does.
/// (Quiet options are `None` and quiet sequences empty, so they end a path by themselves.)
pub(super) fn finite_choices(entries: &[Entry]) -> Vec<Option<usize>> {
    let mut rank: Vec<Option<usize>> = vec![None; entries.len()];
    let mut choice: Vec<Option<usize>> = vec![None; entries.len()];
    // Each round ranks at least one more entry or stops, so this runs at most
    // `entries.len() + 1` rounds.
    loop {
        let mut changed = false;
        for (id, entry) in entries.iter().enumerate() {
            if rank[id].is_some() {
                continue;
            }
            // The lowest-ranked recorded slot; on a tie the first declared.
            let best = entry
                .slots
                .iter()
                .enumerate()
                .filter_map(|(slot, payload)| Some((payload_rank(payload.as_ref()?, &rank)?, slot)))
                .min();
            if let Some((r, slot)) = best {
                rank[id] = Some(r + 1);
                choice[id] = Some(slot);
                changed = true;
            }
        }
        if !changed {
            return choice;
        }
    }
}

fn payload_rank(payload: &Payload, rank: &[Option<usize>]) -> Option<usize> {
    match payload {
        Payload::Unit => Some(0),
        Payload::Newtype(node) => node_rank(node, rank),
        Payload::Tuple(nodes) => max_rank(nodes.iter(), rank),
        Payload::Struct(fields) => max_rank(fields.iter().map(|(_, node)| node), rank),
    }
}

fn max_rank<'a>(nodes: impl Iterator<Item = &'a Node>, rank: &[Option<usize>]) -> Option<usize> {
    nodes
        .map(|node| node_rank(node, rank))
        .try_fold(0, |max, r| Some(max.max(r?)))
}

fn node_rank(node: &Node, rank: &[Option<usize>]) -> Option<usize> {
    match node {
        // Options, sequences and maps are read empty in quiet mode.
        Node::Leaf(_) | Node::Option(_) | Node::Seq(_) | Node::Map(..) | Node::Unknown => Some(0),
        Node::Tuple(nodes) => max_rank(nodes.iter(), rank),
        Node::Named(id) => rank.get(*id).copied().flatten(),
    }
}
