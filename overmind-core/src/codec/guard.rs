//! A serde `Deserializer` wrapper that keeps a decode of outside bytes within what those bytes
//! allow. bincode 2 trusts the lengths it reads:
//!
//! - its serde `deserialize_string` / `deserialize_byte_buf` (every `String`, `PathBuf`,
//!   `ByteBuf`) go through `Vec::<u8>::decode`, which allocates the declared length before
//!   reading a byte (`vec![0u8; len]`): 10 bytes declaring 2^60 abort the process. The guard
//!   asks for the borrowed forms instead (`deserialize_str` / `deserialize_bytes`), which take
//!   the bytes from the input slice and fail if the slice is shorter; the visitor then copies
//!   only bytes that exist.
//! - a sequence's or map's declared length is its size hint, and serde preallocates up to
//!   1 MiB from it; a sequence of zero-size elements (`Vec<()>`) declaring 2^60 entries
//!   loops 2^60 times. The guard refuses a declared length above the entries the input can
//!   hold, counts every entry against that budget, and reports hints no larger than the input.
//!   Only lengths the input declares count (sequences and maps), not those the type fixes
//!   (tuples, arrays, struct fields): each counted entry owns at least one input byte (its
//!   own length prefix, tag or value) unless it encodes to nothing.
//! - nothing bounds nesting, so a recursive state type nested a million deep overflows the
//!   stack (an abort). The guard refuses nesting deeper than [`MAX_DEPTH`].

use std::{cell::Cell, fmt, marker::PhantomData};

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// How deeply a decoded value may nest (each struct, tuple, sequence, map, enum, option and
/// newtype is one level): serde_json's default. Only a recursive type comes near it; in a
/// debug build each level of one takes about 1.4 KiB of stack, so the deepest value allowed
/// stays far from the end of a 2 MiB thread (a tokio worker's).
pub(crate) const MAX_DEPTH: usize = 128;

/// Sequence and map entries a decode may produce beyond one per input byte: entries whose
/// encoding is empty (`()`, unit structs) are the only ones an input can hold more of than
/// it has bytes. A state holding more is refused when it is stored (the runtime decodes each
/// state it stores), so it is never written.
pub(crate) const ZERO_SIZE_ENTRIES: usize = 4096;

/// The largest size hint a collection is given, in entries.
const MAX_HINT: usize = 4096;

/// The limits of one decode, shared by every level of it.
pub(crate) struct Budget {
    /// The input's length: no sequence holds more non-empty entries.
    input: usize,
    /// Entries still allowed.
    entries: Cell<usize>,
}

impl Budget {
    pub(crate) fn new(input: usize) -> Self {
        Self {
            input,
            entries: Cell::new(input.saturating_add(ZERO_SIZE_ENTRIES)),
        }
    }

    fn take_entry<E: de::Error>(&self) -> Result<(), E> {
        let left = self.entries.get();
        if left == 0 {
            return Err(E::custom(format_args!(
                "more sequence or map entries than a {}-byte input can hold",
                self.input
            )));
        }
        self.entries.set(left - 1);
        Ok(())
    }

    fn check_declared<E: de::Error>(&self, declared: Option<usize>) -> Result<(), E> {
        match declared {
            Some(n) if n > self.entries.get() => Err(E::custom(format_args!(
                "a sequence or map declares {n} entries, more than a {}-byte input can hold",
                self.input
            ))),
            _ => Ok(()),
        }
    }

    /// The size hint passed on. Capped at a constant as well: a collection that preallocates
    /// its whole hint (smallvec, a user's `with_capacity`) would otherwise reserve entries ×
    /// their size, however large the entries are.
    fn hint(&self, declared: Option<usize>) -> Option<usize> {
        declared.map(|n| n.min(self.input).min(self.entries.get()).min(MAX_HINT))
    }
}

/// Decodes `T` through the guard: the top-level seed for bincode's `seed_decode_from_slice`.
pub(crate) struct Root<'b, T> {
    pub(crate) budget: &'b Budget,
    pub(crate) ty: PhantomData<T>,
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for Root<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T, D::Error> {
        T::deserialize(Guard {
            de,
            budget: self.budget,
            depth: 0,
        })
    }
}

/// The wrapped deserializer, `depth` levels down.
struct Guard<'b, D> {
    de: D,
    budget: &'b Budget,
    depth: usize,
}

impl<'b, D> Guard<'b, D> {
    /// The visitor for a value at this level.
    fn visitor<V>(&self, visitor: V) -> Wrap<'b, V> {
        Wrap {
            visitor,
            budget: self.budget,
            depth: self.depth,
            counts: false,
        }
    }

    /// The visitor for a compound value: one level deeper, if allowed. `counts`: its entries
    /// are a length the input declares (a sequence or a map), charged to the budget.
    fn nested<V, E: de::Error>(&self, visitor: V, counts: bool) -> Result<Wrap<'b, V>, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!(
                "the value nests deeper than {MAX_DEPTH} levels"
            )));
        }
        Ok(Wrap {
            visitor,
            budget: self.budget,
            depth: self.depth + 1,
            counts,
        })
    }
}

macro_rules! forward_scalars {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.visitor(visitor);
            self.de.$method(visitor)
        }
    )*};
}

macro_rules! forward_compounds {
    ($($method:ident($counts:expr))*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.nested(visitor, $counts)?;
            self.de.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
    type Error = D::Error;

    forward_scalars! {
        deserialize_any deserialize_bool
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_bytes
        deserialize_unit deserialize_identifier deserialize_ignored_any
    }

    forward_compounds! {
        deserialize_option(false) deserialize_seq(true) deserialize_map(true)
    }

    /// Borrowed from the input, so only bytes that exist are copied.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor);
        self.de.deserialize_str(visitor)
    }

    /// Borrowed from the input, as [`Self::deserialize_string`].
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor);
        self.de.deserialize_bytes(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.visitor(visitor);
        self.de.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor, false)?;
        self.de.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor, false)?;
        self.de.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor, false)?;
        self.de.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor, false)?;
        self.de.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = self.nested(visitor, false)?;
        self.de.deserialize_enum(name, variants, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// A visitor whose nested deserializers, sequences, maps and enums are guarded too.
struct Wrap<'b, V> {
    visitor: V,
    budget: &'b Budget,
    depth: usize,
    /// Whether the entries of a sequence or map it visits are charged to the budget.
    counts: bool,
}

impl<'b, V> Wrap<'b, V> {
    fn guard<D>(&self, de: D) -> Guard<'b, D> {
        Guard {
            de,
            budget: self.budget,
            depth: self.depth,
        }
    }

    fn entries<A>(&self, access: A) -> Entries<'b, A> {
        Entries {
            access,
            budget: self.budget,
            depth: self.depth,
            counts: self.counts,
        }
    }
}

macro_rules! forward_visits {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_visits! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let de = self.guard(de);
        self.visitor.visit_some(de)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        let de = self.guard(de);
        self.visitor.visit_newtype_struct(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if self.counts {
            self.budget.check_declared(seq.size_hint())?;
        }
        let seq = self.entries(seq);
        self.visitor.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        if self.counts {
            self.budget.check_declared(map.size_hint())?;
        }
        let map = self.entries(map);
        self.visitor.visit_map(map)
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        let data = self.entries(data);
        self.visitor.visit_enum(data)
    }
}

/// A guarded sequence, map, enum or variant: every element is decoded through a [`Guard`].
struct Entries<'b, A> {
    access: A,
    budget: &'b Budget,
    depth: usize,
    /// Whether its entries are charged to the budget (see [`Wrap::counts`]).
    counts: bool,
}

impl<'b, A> Entries<'b, A> {
    /// A seed for one entry; `counted` charges it to the budget.
    fn seed<T>(&self, seed: T, counted: bool) -> Seed<'b, T> {
        Seed {
            seed,
            budget: self.budget,
            depth: self.depth,
            counted,
        }
    }

    /// A visitor for a variant's fields (their number is the type's).
    fn fields<V>(&self, visitor: V) -> Wrap<'b, V> {
        Wrap {
            visitor,
            budget: self.budget,
            depth: self.depth,
            counts: false,
        }
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Entries<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.seed(seed, self.counts);
        self.access.next_element_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.budget.hint(self.access.size_hint())
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Entries<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.seed(seed, self.counts);
        self.access.next_key_seed(seed)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seed(seed, false);
        self.access.next_value_seed(seed)
    }

    fn size_hint(&self) -> Option<usize> {
        self.budget.hint(self.access.size_hint())
    }
}

impl<'b, 'de, A: EnumAccess<'de>> EnumAccess<'de> for Entries<'b, A> {
    type Error = A::Error;
    type Variant = Entries<'b, A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let seed = self.seed(seed, false);
        let (value, variant) = self.access.variant_seed(seed)?;
        Ok((
            value,
            Entries {
                access: variant,
                budget: self.budget,
                depth: self.depth,
                counts: false,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Entries<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.access.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let seed = self.seed(seed, false);
        self.access.newtype_variant_seed(seed)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = self.fields(visitor);
        self.access.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = self.fields(visitor);
        self.access.struct_variant(fields, visitor)
    }
}

/// One entry's seed: it decodes through a [`Guard`], charged to the budget if `counted`.
struct Seed<'b, T> {
    seed: T,
    budget: &'b Budget,
    depth: usize,
    counted: bool,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T::Value, D::Error> {
        if self.counted {
            self.budget.take_entry::<D::Error>()?;
        }
        self.seed.deserialize(Guard {
            de,
            budget: self.budget,
            depth: self.depth,
        })
    }
}
