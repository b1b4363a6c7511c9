//! The serde side of the tracer: a `Deserializer` that answers every request the way
//! bincode would (structs as tuples, enum variants by `u32` index, not human-readable) and
//! reports what was requested to [`Tracing`].

use std::{any::type_name, fmt};

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor, value::U32Deserializer,
};

use super::{
    model::{ContainerKey, Kind, Leaf, Node, Payload},
    tracer::{BYTES, CHARS, Choice, STRS, Tracing},
};

/// The error visitors see. The tracer keeps its own reasons in [`Tracing`], since a
/// visitor may rewrap or swallow what it is given.
#[derive(Debug)]
pub(super) struct Error(String);

impl Error {
    pub(super) fn new(message: String) -> Error {
        Error(message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Deserializes one value of the traced type, recording its shape.
pub(super) struct Tracer<'s> {
    st: &'s mut Tracing,
}

impl<'s> Tracer<'s> {
    /// A tracer for a value whose node the caller takes afterwards with `take_last`.
    pub(super) fn new(st: &'s mut Tracing) -> Tracer<'s> {
        st.clear_last();
        Tracer { st }
    }

    /// A value without parts: hands the visitor the site's candidate (`visit` gets its index).
    fn leaf<R>(
        self,
        leaf: Leaf,
        visit: impl FnOnce(usize) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let st = self.st;
        st.enter()?;
        let candidate = choice_of(leaf).map_or(0, |choice| st.choose(choice));
        let result = visit(candidate);
        st.exit(Node::Leaf(leaf));
        result
    }
}

/// Which candidates a leaf has; `None` for those with a single value.
fn choice_of(leaf: Leaf) -> Option<Choice> {
    match leaf {
        Leaf::Bool => Some(Choice::Bool),
        Leaf::I8
        | Leaf::I16
        | Leaf::I32
        | Leaf::I64
        | Leaf::I128
        | Leaf::U8
        | Leaf::U16
        | Leaf::U32
        | Leaf::U64
        | Leaf::U128 => Some(Choice::Int),
        Leaf::F32 | Leaf::F64 => Some(Choice::Float),
        Leaf::Char => Some(Choice::Char),
        Leaf::Str => Some(Choice::Str),
        Leaf::Bytes => Some(Choice::Bytes),
        Leaf::Unit | Leaf::UnitStruct => None,
    }
}

/// The `i`-th candidate of a table, wrapping (the index is always in range).
fn pick<T: Copy>(table: &[T], i: usize) -> T {
    table[i % table.len()]
}

/// Numbers get 0, then 1 (`NonZero*` refuses 0).
macro_rules! number {
    ($method:ident, $visit:ident, $ty:ty, $leaf:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.leaf(Leaf::$leaf, |i| visitor.$visit(<$ty>::from(i == 1)))
        }
    };
}

impl<'de> Deserializer<'de> for Tracer<'_> {
    type Error = Error;

    /// As bincode: a validating type reads its compact form (a UUID as 16 bytes, an IP
    /// address as an enum of byte tuples), which is what bincode stores.
    fn is_human_readable(&self) -> bool {
        false
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(self
            .st
            .unsupported_call(type_name::<V::Value>(), "deserialize_any"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(self
            .st
            .unsupported_call(type_name::<V::Value>(), "deserialize_ignored_any"))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf(Leaf::Bool, |i| visitor.visit_bool(i == 1))
    }

    number!(deserialize_i8, visit_i8, i8, I8);
    number!(deserialize_i16, visit_i16, i16, I16);
    number!(deserialize_i32, visit_i32, i32, I32);
    number!(deserialize_i64, visit_i64, i64, I64);
    number!(deserialize_i128, visit_i128, i128, I128);
    number!(deserialize_u8, visit_u8, u8, U8);
    number!(deserialize_u16, visit_u16, u16, U16);
    number!(deserialize_u32, visit_u32, u32, U32);
    number!(deserialize_u64, visit_u64, u64, U64);
    number!(deserialize_u128, visit_u128, u128, U128);
    number!(deserialize_f32, visit_f32, f32, F32);
    number!(deserialize_f64, visit_f64, f64, F64);

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf(Leaf::Char, |i| visitor.visit_char(pick(&CHARS, i)))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf(Leaf::Str, |i| visitor.visit_str(pick(&STRS, i)))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf(Leaf::Str, |i| {
            visitor.visit_string(pick(&STRS, i).to_owned())
        })
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf(Leaf::Bytes, |i| visitor.visit_bytes(pick(&BYTES, i)))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf(Leaf::Bytes, |i| {
            visitor.visit_byte_buf(pick(&BYTES, i).to_vec())
        })
    }

    /// Outside an enum's variant (which `EnumTracer` reads by index) an identifier is
    /// whatever the visitor makes of a string.
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.leaf(Leaf::Unit, |_| visitor.visit_unit())
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.leaf(Leaf::UnitStruct, |_| visitor.visit_unit())
    }

    /// `Some`, to learn the inner shape; a quiet occurrence reads `None`, which ends a
    /// recursion (unless a validating type refused `None`, then `Some`).
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let st = self.st;
        st.enter()?;
        let some = !st.quiet() || st.choose(Choice::QuietOption) == 1;
        let (result, node) = if some {
            let result = visitor.visit_some(Tracer::new(st));
            (result, Node::Option(Box::new(st.take_last())))
        } else {
            (visitor.visit_none(), Node::Unknown)
        };
        st.exit(node);
        result
    }

    /// One element, to learn its shape; a quiet occurrence reads none.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let st = self.st;
        st.enter()?;
        let len = if st.quiet() {
            st.choose(Choice::QuietLen)
        } else {
            1
        };
        let mut elements = Vec::new();
        let result = visitor.visit_seq(SeqTracer::anonymous(st, &mut elements, len));
        let element = elements.into_iter().next().unwrap_or(Node::Unknown);
        st.exit(Node::Seq(Box::new(element)));
        result
    }

    /// Tuples and arrays: exactly `len` elements, quiet or not (bincode reads them all).
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let st = self.st;
        st.enter()?;
        let mut elements = Vec::new();
        let result = visitor.visit_seq(SeqTracer::anonymous(st, &mut elements, len));
        st.exit(Node::Tuple(elements));
        result
    }

    /// One entry, to learn the key and value shapes; a quiet occurrence reads none.
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let st = self.st;
        st.enter()?;
        let len = if st.quiet() {
            st.choose(Choice::QuietLen)
        } else {
            1
        };
        let mut nodes = Vec::new();
        let result = visitor.visit_map(MapTracer {
            st: &mut *st,
            nodes: &mut nodes,
            remaining: len,
        });
        let mut nodes = nodes.into_iter();
        let key = nodes.next().unwrap_or(Node::Unknown);
        let value = nodes.next().unwrap_or(Node::Unknown);
        st.exit(Node::Map(Box::new(key), Box::new(value)));
        result
    }

    /// As bincode: a tuple of the fields, in the order serde lists them.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let st = self.st;
        let key = ContainerKey::of::<V::Value>(Kind::Struct, name, fields, fields.len());
        st.open(key, type_name::<V::Value>())?;
        st.set_element_names(fields);
        let mut elements = Vec::new();
        let result = visitor.visit_seq(SeqTracer::fields(st, &mut elements, fields.len()));
        let payload = Payload::Struct(named(fields, elements));
        st.close(result.is_ok(), Some(payload));
        result
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let st = self.st;
        let key = ContainerKey::of::<V::Value>(Kind::TupleStruct, name, &[], len);
        st.open(key, type_name::<V::Value>())?;
        let mut elements = Vec::new();
        let result = visitor.visit_seq(SeqTracer::fields(st, &mut elements, len));
        st.close(result.is_ok(), Some(Payload::Tuple(elements)));
        result
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let st = self.st;
        let key = ContainerKey::of::<V::Value>(Kind::Newtype, name, &[], 1);
        st.open(key, type_name::<V::Value>())?;
        st.start_element(0);
        let result = visitor.visit_newtype_struct(Tracer::new(st));
        let inner = st.take_last();
        st.close(result.is_ok(), Some(Payload::Newtype(inner)));
        result
    }

    /// One variant per encounter (see [`Tracing::choose_variant`]); its `VariantAccess`
    /// call records what it holds.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let st = self.st;
        let key = ContainerKey::of::<V::Value>(Kind::Enum, name, variants, variants.len());
        st.open(key, type_name::<V::Value>())?;
        let result = visitor.visit_enum(EnumTracer { st: &mut *st, key });
        st.close(result.is_ok(), None);
        result
    }
}

/// The elements of a sequence, tuple, struct or variant. `nodes` collects what each read.
struct SeqTracer<'a> {
    st: &'a mut Tracing,
    nodes: &'a mut Vec<Node>,
    remaining: usize,
    next: usize,
    /// The elements are the current container's own (fields), so each starts an element
    /// of its frame; an anonymous sequence's elements all belong to the enclosing element.
    fields: bool,
}

impl<'a> SeqTracer<'a> {
    fn anonymous(st: &'a mut Tracing, nodes: &'a mut Vec<Node>, len: usize) -> SeqTracer<'a> {
        SeqTracer {
            st,
            nodes,
            remaining: len,
            next: 0,
            fields: false,
        }
    }

    fn fields(st: &'a mut Tracing, nodes: &'a mut Vec<Node>, len: usize) -> SeqTracer<'a> {
        SeqTracer {
            fields: true,
            ..SeqTracer::anonymous(st, nodes, len)
        }
    }
}

impl<'de> SeqAccess<'de> for SeqTracer<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        if self.fields {
            self.st.start_element(self.next);
        }
        self.next += 1;
        let value = seed.deserialize(Tracer::new(self.st))?;
        self.nodes.push(self.st.take_last());
        Ok(Some(value))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

/// The entries of a map: `nodes` collects key, value, key, value...
struct MapTracer<'a> {
    st: &'a mut Tracing,
    nodes: &'a mut Vec<Node>,
    remaining: usize,
}

impl<'de> MapAccess<'de> for MapTracer<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        let key = seed.deserialize(Tracer::new(self.st))?;
        self.nodes.push(self.st.take_last());
        Ok(Some(key))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let value = seed.deserialize(Tracer::new(self.st))?;
        self.nodes.push(self.st.take_last());
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

/// The variant of the innermost enum.
struct EnumTracer<'a> {
    st: &'a mut Tracing,
    key: ContainerKey,
}

impl<'de, 'a> EnumAccess<'de> for EnumTracer<'a> {
    type Error = Error;
    type Variant = VariantTracer<'a>;

    /// As bincode: the identifier is the variant's index as a `u32` (serde_derive's
    /// variant visitors accept it, whatever the variant is named or renamed to).
    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Error> {
        let variant = self.st.choose_variant(self.key)?;
        let index: U32Deserializer<Error> = u32::try_from(variant)
            .unwrap_or(u32::MAX)
            .into_deserializer();
        match seed.deserialize(index) {
            Ok(value) => Ok((value, VariantTracer { st: self.st })),
            Err(error) => Err(self.st.variant_refused(variant, error)),
        }
    }
}

/// What the chosen variant holds; each call records it as the enum frame's payload.
struct VariantTracer<'a> {
    st: &'a mut Tracing,
}

impl<'de> VariantAccess<'de> for VariantTracer<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        self.st.set_payload(Payload::Unit);
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Error> {
        let st = self.st;
        st.start_element(0);
        let value = seed.deserialize(Tracer::new(st))?;
        let inner = st.take_last();
        st.set_payload(Payload::Newtype(inner));
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let st = self.st;
        let mut elements = Vec::new();
        let result = visitor.visit_seq(SeqTracer::fields(st, &mut elements, len));
        st.set_payload(Payload::Tuple(elements));
        result
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let st = self.st;
        st.set_element_names(fields);
        let mut elements = Vec::new();
        let result = visitor.visit_seq(SeqTracer::fields(st, &mut elements, fields.len()));
        st.set_payload(Payload::Struct(named(fields, elements)));
        result
    }
}

/// Pairs a struct's fields with their names. serde lists a field's aliases among the names
/// (sorted together with its own name), so with aliases there are more names than fields
/// and no telling which is whose: such a struct is described by its fields' shapes alone,
/// each named `?`.
fn named(fields: &'static [&'static str], elements: Vec<Node>) -> Vec<(&'static str, Node)> {
    if fields.len() == elements.len() {
        fields.iter().copied().zip(elements).collect()
    } else {
        elements.into_iter().map(|node| ("?", node)).collect()
    }
}
