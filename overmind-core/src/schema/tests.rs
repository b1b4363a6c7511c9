//! The tracer's tests. Types under test live in small modules, so that two versions of a
//! state type can share a name, as they do in a real project's history.

#![allow(
    dead_code,
    reason = "the types under test are only ever deserialized by the tracer"
)]

use std::{
    cell::Cell,
    collections::{BTreeMap, HashMap},
    fmt,
    marker::PhantomData,
    net::SocketAddr,
    num::NonZeroU32,
    time::Duration,
};

use serde::{
    Deserialize, Deserializer,
    de::{self, DeserializeOwned, SeqAccess, Visitor},
};

use super::{Fingerprint, TraceError, trace};

fn describe<T: DeserializeOwned>() -> String {
    trace::<T>().unwrap().description().to_owned()
}

fn fingerprint<T: DeserializeOwned>() -> Fingerprint {
    trace::<T>().unwrap().fingerprint()
}

#[track_caller]
fn assert_differs<A: DeserializeOwned, B: DeserializeOwned>() {
    let (a, b) = (trace::<A>().unwrap(), trace::<B>().unwrap());
    assert_ne!(a.description(), b.description());
    assert_ne!(
        a.fingerprint(),
        b.fingerprint(),
        "{} vs {}",
        a.description(),
        b.description()
    );
}

#[track_caller]
fn assert_same<A: DeserializeOwned, B: DeserializeOwned>() {
    assert_eq!(trace::<A>().unwrap(), trace::<B>().unwrap());
}

// ---- The fingerprint itself. ----

#[test]
fn fingerprint_is_fnv1a_64_and_never_unknown() {
    // Published FNV-1a 64 test vectors.
    assert_eq!(
        Fingerprint::of_description(""),
        Fingerprint(0xcbf2_9ce4_8422_2325)
    );
    assert_eq!(
        Fingerprint::of_description("a"),
        Fingerprint(0xaf63_dc4c_8601_ec8c)
    );
    assert_eq!(
        Fingerprint::of_description("foobar"),
        Fingerprint(0x8594_4171_f739_67e8)
    );
    assert!(Fingerprint::of_description("").is_known());
    assert!(!Fingerprint::UNKNOWN.is_known());
    assert_eq!(Fingerprint::default(), Fingerprint::UNKNOWN);
}

#[test]
fn fingerprint_displays_as_16_hex_digits_or_unknown() {
    assert_eq!(Fingerprint(0x3f).to_string(), "000000000000003f");
    assert_eq!(Fingerprint(u64::MAX).to_string(), "ffffffffffffffff");
    assert_eq!(Fingerprint::UNKNOWN.to_string(), "unknown");
}

// ---- Golden values: these are persisted in records. Never change them. ----

mod golden {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct Profile {
        name: String,
        age: u32,
        email: Option<String>,
        status: Status,
        tags: Vec<String>,
    }

    #[derive(Deserialize)]
    pub(super) enum Status {
        Active,
        Suspended { until: u64, reason: String },
        Deleted(u64),
    }

    #[derive(Deserialize)]
    pub(super) struct Node {
        name: String,
        children: Vec<Node>,
        next: Option<Box<Node>>,
    }
}

#[test]
fn golden_descriptions_and_fingerprints() {
    let profile = trace::<golden::Profile>().unwrap();
    assert_eq!(
        profile.description(),
        "struct{name:str,age:u32,email:option<str>,\
         status:enum{Active:unit,Suspended:struct{until:u64,reason:str},Deleted:newtype(u64)},\
         tags:seq<str>}"
    );
    assert_eq!(profile.fingerprint(), Fingerprint(GOLDEN_PROFILE));

    let node = trace::<golden::Node>().unwrap();
    assert_eq!(
        node.description(),
        "struct{name:str,children:seq<#1>,next:option<#1>}"
    );
    assert_eq!(node.fingerprint(), Fingerprint(GOLDEN_NODE));

    let map = trace::<BTreeMap<String, (u8, [u16; 2], Option<bool>)>>().unwrap();
    assert_eq!(
        map.description(),
        "map<str,tuple(u8,tuple(u16,u16),option<bool>)>"
    );
    assert_eq!(map.fingerprint(), Fingerprint(GOLDEN_MAP));
}

// Computed once (and checked against an independent FNV-1a), then pinned.
const GOLDEN_PROFILE: u64 = 0xa989_0221_ff74_6eca;
const GOLDEN_NODE: u64 = 0xe263_18f6_6674_c79a;
const GOLDEN_MAP: u64 = 0x23dd_4ddc_c1b1_e0b6;

#[test]
fn tracing_is_deterministic() {
    assert_eq!(
        trace::<golden::Profile>().unwrap(),
        trace::<golden::Profile>().unwrap()
    );
    assert_eq!(
        trace::<nested::Outer>().unwrap(),
        trace::<nested::Outer>().unwrap()
    );
}

// ---- Changes that must change the fingerprint. ----

mod base {
    use super::*;
    #[derive(Deserialize)]
    pub(super) struct S {
        a: u32,
        b: String,
    }
    #[derive(Deserialize)]
    pub(super) enum E {
        A,
        B(u8),
        C { x: u8 },
    }
}

mod changed {
    use super::*;
    #[derive(Deserialize)]
    pub(super) struct AddField {
        a: u32,
        b: String,
        c: u8,
    }
    #[derive(Deserialize)]
    pub(super) struct AddDefaultField {
        a: u32,
        b: String,
        #[serde(default)]
        c: u8,
    }
    #[derive(Deserialize)]
    pub(super) struct AddOptionField {
        a: u32,
        b: String,
        c: Option<u8>,
    }
    #[derive(Deserialize)]
    pub(super) struct RemoveField {
        a: u32,
    }
    #[derive(Deserialize)]
    pub(super) struct RenameField {
        a: u32,
        c: String,
    }
    #[derive(Deserialize)]
    pub(super) struct U32ToI32 {
        a: i32,
        b: String,
    }
    #[derive(Deserialize)]
    pub(super) struct U32ToU64 {
        a: u64,
        b: String,
    }
    #[derive(Deserialize)]
    pub(super) struct StringToBytes {
        a: u32,
        b: Vec<u8>,
    }
    #[derive(Deserialize)]
    pub(super) struct Swapped {
        b: String,
        a: u32,
    }
    #[derive(Deserialize)]
    pub(super) enum AddVariant {
        A,
        B(u8),
        C { x: u8 },
        D,
    }
    #[derive(Deserialize)]
    pub(super) enum RenameVariant {
        A,
        Bee(u8),
        C { x: u8 },
    }
    #[derive(Deserialize)]
    pub(super) enum ReorderVariants {
        B(u8),
        A,
        C { x: u8 },
    }
    #[derive(Deserialize)]
    pub(super) enum ChangePayload {
        A,
        B(u16),
        C { x: u8 },
    }
    #[derive(Deserialize)]
    pub(super) enum TupleForStruct {
        A,
        B(u8),
        C(u8),
    }
}

#[test]
fn struct_changes_change_the_fingerprint() {
    assert_differs::<base::S, changed::AddField>();
    assert_differs::<base::S, changed::AddDefaultField>();
    assert_differs::<base::S, changed::AddOptionField>();
    assert_differs::<base::S, changed::RemoveField>();
    assert_differs::<base::S, changed::RenameField>();
    assert_differs::<base::S, changed::U32ToI32>();
    assert_differs::<base::S, changed::U32ToU64>();
    assert_differs::<base::S, changed::StringToBytes>();
    assert_differs::<base::S, changed::Swapped>();
    // A default field is still written by bincode, so it is there like any other.
    assert_same::<changed::AddField, changed::AddDefaultField>();
}

#[test]
fn enum_changes_change_the_fingerprint() {
    assert_differs::<base::E, changed::AddVariant>();
    assert_differs::<base::E, changed::RenameVariant>();
    assert_differs::<base::E, changed::ReorderVariants>();
    assert_differs::<base::E, changed::ChangePayload>();
    assert_differs::<base::E, changed::TupleForStruct>();
}

mod split {
    use super::*;
    #[derive(Deserialize)]
    pub(super) struct Flat {
        a: u32,
        b: String,
        c: bool,
    }
    #[derive(Deserialize)]
    pub(super) struct Nested {
        ab: Ab,
        c: bool,
    }
    #[derive(Deserialize)]
    pub(super) struct Ab {
        a: u32,
        b: String,
    }
}

#[test]
fn splitting_a_struct_changes_the_fingerprint() {
    assert_differs::<split::Flat, split::Nested>();
}

// ---- Changes that must not. ----

mod renamed {
    use super::*;
    /// `base::S` kept under another name, for a migration.
    #[derive(Deserialize)]
    pub(super) struct SV2 {
        a: u32,
        b: String,
    }
    #[derive(Deserialize)]
    pub(super) enum EV2 {
        A,
        B(u8),
        C { x: u8 },
    }
    #[derive(Deserialize)]
    pub(super) struct WithSkipped {
        a: u32,
        #[serde(skip)]
        cache: Vec<u64>,
        b: String,
    }
}

#[test]
fn renaming_a_type_or_adding_a_skipped_field_keeps_the_fingerprint() {
    assert_same::<base::S, renamed::SV2>();
    assert_same::<base::E, renamed::EV2>();
    assert_same::<base::S, renamed::WithSkipped>();
}

// ---- Recursion. ----

mod recursive {
    use super::*;
    #[derive(Deserialize)]
    pub(super) enum Chain {
        End,
        Link(Box<Chain>),
    }
    /// The recursive variant first: the tracer must not start there forever.
    #[derive(Deserialize)]
    pub(super) enum Rev {
        Link(Box<Rev>),
        End,
    }
    #[derive(Deserialize)]
    pub(super) enum Expr {
        Add(Box<Expr>, Box<Expr>),
        Neg(Box<Expr>),
        Let { name: String, body: Box<Expr> },
        Lit(i64),
    }
    #[derive(Deserialize)]
    pub(super) enum Json {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        List(Vec<Json>),
        Obj(BTreeMap<String, Json>),
    }
    /// Mutually recursive through `Box`, with the way out (`F::Y`) declared last: only
    /// after `F::Y` is recorded can a quiet `E` be read to its end.
    #[derive(Deserialize)]
    pub(super) enum E {
        A(Box<E>),
        B(Box<F>),
    }
    #[derive(Deserialize)]
    pub(super) enum F {
        X(Box<E>),
        Y,
    }
    /// Recursive through a struct: a field's enum leads back to the struct.
    #[derive(Deserialize)]
    pub(super) struct Tree {
        label: String,
        shape: Branching,
    }
    #[derive(Deserialize)]
    pub(super) enum Branching {
        Leaf,
        Binary(Box<Tree>, Box<Tree>),
    }
}

#[test]
fn recursive_enums_refer_back() {
    assert_eq!(
        describe::<recursive::Chain>(),
        "enum{End:unit,Link:newtype(#1)}"
    );
    assert_eq!(
        describe::<recursive::Rev>(),
        "enum{Link:newtype(#1),End:unit}"
    );
    assert_eq!(
        describe::<recursive::Expr>(),
        "enum{Add:tuple(#1,#1),Neg:newtype(#1),Let:struct{name:str,body:#1},Lit:newtype(i64)}"
    );
    assert_eq!(
        describe::<recursive::Json>(),
        "enum{Null:unit,Bool:newtype(bool),Num:newtype(f64),Str:newtype(str),\
         List:newtype(seq<#1>),Obj:newtype(map<str,#1>)}"
    );
}

#[test]
fn recursive_structs_refer_back() {
    assert_eq!(
        describe::<golden::Node>(),
        "struct{name:str,children:seq<#1>,next:option<#1>}"
    );
    assert_eq!(
        describe::<recursive::Tree>(),
        "struct{label:str,shape:enum{Leaf:unit,Binary:tuple(#1,#1)}}"
    );
}

#[test]
fn mutually_recursive_enums_find_their_way_out() {
    assert_eq!(
        describe::<recursive::E>(),
        "enum{A:newtype(#1),B:newtype(enum{X:newtype(#1),Y:unit})}"
    );
}

// ---- Nesting, collections, std types. ----

mod nested {
    use super::*;
    #[derive(Deserialize)]
    pub(super) enum Outer {
        A,
        B(Mid),
        C { m: Mid, i: Inner },
    }
    #[derive(Deserialize)]
    pub(super) struct Mid {
        inner: Inner,
        flag: bool,
    }
    #[derive(Deserialize)]
    pub(super) enum Inner {
        X,
        Y(u8),
        Z { deep: Deep },
    }
    #[derive(Deserialize)]
    pub(super) enum Deep {
        P,
        Q(String),
        R(u8, u8),
    }
}

#[test]
fn nested_enums_show_every_variant() {
    assert_eq!(
        describe::<nested::Outer>(),
        "enum{A:unit,B:newtype(struct{inner:enum{X:unit,Y:newtype(u8),\
         Z:struct{deep:enum{P:unit,Q:newtype(str),R:tuple(u8,u8)}}},flag:bool}),\
         C:struct{m:#2,i:#3}}"
    );
}

mod kinds {
    use super::*;
    #[derive(Deserialize)]
    pub(super) struct Meters(f64);
    #[derive(Deserialize)]
    pub(super) struct Pair(u8, u8);
    #[derive(Deserialize)]
    pub(super) struct Marker;
    #[derive(Deserialize)]
    pub(super) struct All {
        h: HashMap<String, u64>,
        b: BTreeMap<u8, Vec<i16>>,
        t: (u8, char, bool),
        arr: [u8; 4],
        u: (),
        c: char,
        big: u128,
        neg: i128,
        f: f32,
        n: Meters,
        p: Pair,
        m: Marker,
        ph: PhantomData<String>,
        #[serde(with = "bytes")]
        raw: Vec<u8>,
    }

    /// `serde_bytes` by hand: a byte buffer, not a sequence of `u8`.
    mod bytes {
        use super::*;
        pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct Bytes;
            impl Visitor<'_> for Bytes {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                    Ok(v)
                }
            }
            d.deserialize_byte_buf(Bytes)
        }
    }
}

#[test]
fn every_kind_of_shape() {
    assert_eq!(
        describe::<kinds::All>(),
        "struct{h:map<str,u64>,b:map<u8,seq<i16>>,t:tuple(u8,char,bool),\
         arr:tuple(u8,u8,u8,u8),u:unit,c:char,big:u128,neg:i128,f:f32,n:newtype(f64),\
         p:tuple_struct(u8,u8),m:unit_struct,ph:unit_struct,raw:bytes}"
    );
}

#[test]
fn std_types() {
    assert_eq!(describe::<Duration>(), "struct{secs:u64,nanos:u32}");
    // NonZeroU32 refuses the first candidate, 0.
    assert_eq!(describe::<NonZeroU32>(), "u32");
    assert_eq!(describe::<Vec<Option<NonZeroU32>>>(), "seq<option<u32>>");
    let ipv6 = vec!["u8"; 16].join(",");
    assert_eq!(
        describe::<SocketAddr>(),
        format!(
            "enum{{V4:newtype(tuple(tuple(u8,u8,u8,u8),u16)),V6:newtype(tuple(tuple({ipv6}),u16))}}"
        )
    );
    assert_eq!(
        describe::<Result<u8, String>>(),
        "enum{Ok:newtype(u8),Err:newtype(str)}"
    );
}

#[test]
fn names_that_are_not_identifiers_are_quoted() {
    #[derive(Deserialize)]
    struct Odd {
        #[serde(rename = "a:b")]
        ab: u8,
        #[serde(rename = "say \"hi\"")]
        hi: u8,
        #[serde(rename = "été")]
        summer: u8,
    }
    assert_eq!(
        describe::<Odd>(),
        r#"struct{"a:b":u8,"say \"hi\"":u8,"été":u8}"#
    );
}

// ---- Identity: by type, not by name. ----

mod one {
    use super::*;
    #[derive(Deserialize)]
    pub(super) struct Item {
        a: u8,
    }
}

mod two {
    use super::*;
    #[derive(Deserialize)]
    pub(super) struct Item {
        b: String,
    }
}

#[derive(Deserialize)]
struct BothItems {
    x: one::Item,
    y: two::Item,
    again: one::Item,
}

#[derive(Deserialize)]
struct Wrapper<T> {
    inner: T,
}

#[derive(Deserialize)]
struct Wrappers {
    a: Wrapper<u8>,
    b: Wrapper<String>,
}

#[test]
fn same_named_types_stay_apart() {
    assert_eq!(
        describe::<BothItems>(),
        "struct{x:struct{a:u8},y:struct{b:str},again:#2}"
    );
    assert_eq!(
        describe::<Wrappers>(),
        "struct{a:struct{inner:u8},b:struct{inner:str}}"
    );
}

// ---- Validating types. ----

/// Accepts only strings that start with "1970-", checked after reading (like
/// `#[serde(try_from = "String")]`).
struct Epoch;

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.starts_with("1970-") {
            Ok(Epoch)
        } else {
            Err(de::Error::custom(format!("{s:?} is not a date")))
        }
    }
}

/// Accepts only 16 bytes, checked in the visitor (like `uuid` in bincode).
struct Id16;

impl<'de> Deserialize<'de> for Id16 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id16;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("16 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Id16, E> {
                if v.len() == 16 {
                    Ok(Id16)
                } else {
                    Err(E::invalid_length(v.len(), &self))
                }
            }
        }
        d.deserialize_bytes(V)
    }
}

/// Accepts nothing.
struct Never;

impl<'de> Deserialize<'de> for Never {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u8::deserialize(d)?;
        Err(de::Error::custom("never"))
    }
}

#[derive(Deserialize)]
struct Validated {
    at: Epoch,
    id: Id16,
    nz: NonZeroU32,
    list: Vec<(Epoch, NonZeroU32)>,
    when: Option<Epoch>,
}

#[derive(Deserialize)]
struct Refused {
    fine: u8,
    never: Never,
}

#[test]
fn validating_types_get_the_candidates_they_accept() {
    assert_eq!(
        describe::<Validated>(),
        "struct{at:str,id:bytes,nz:u32,list:seq<tuple(str,u32)>,when:option<str>}"
    );
}

#[test]
fn a_type_that_refuses_every_candidate_is_untraceable() {
    match trace::<Refused>() {
        Err(TraceError::Untraceable { site, reason, .. }) => {
            assert!(
                site.contains("Refused") && site.contains("`never`"),
                "{site}"
            );
            assert_eq!(reason, "never");
        }
        other => panic!("{other:?}"),
    }
}

// ---- What bincode cannot decode either. ----

mod unsupported {
    use super::*;
    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Untagged {
        A(u8),
        B(String),
    }
    #[derive(Deserialize)]
    pub(super) struct HasUntagged {
        x: u8,
        y: Untagged,
    }
    #[derive(Deserialize)]
    #[serde(tag = "type")]
    pub(super) enum Tagged {
        A { x: u8 },
    }
    #[derive(Deserialize)]
    pub(super) struct Flattened {
        a: u8,
        #[serde(flatten)]
        rest: Inner,
    }
    #[derive(Deserialize)]
    pub(super) struct Inner {
        b: u8,
    }
}

#[test]
fn self_describing_only_types_are_unsupported() {
    for result in [
        trace::<unsupported::HasUntagged>(),
        trace::<unsupported::Tagged>(),
        trace::<unsupported::Flattened>(),
        trace::<BTreeMap<String, unsupported::Untagged>>(),
        trace::<serde_json::Value>(),
    ] {
        match result {
            Err(TraceError::Unsupported { what, .. }) => {
                assert!(what.contains("deserialize_any"), "{what}");
            }
            other => panic!("{other:?}"),
        }
    }
}

// ---- Bounds. ----

#[derive(Deserialize)]
struct Loop(Box<Loop>);

#[derive(Deserialize)]
struct LoopStruct {
    a: u8,
    next: Box<LoopStruct>,
}

/// Always asks for another of itself, inside an option: no named container anywhere.
struct Bottomless;

impl<'de> Deserialize<'de> for Bottomless {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bottomless;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("more")
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Bottomless, D::Error> {
                Bottomless::deserialize(d)
            }
        }
        d.deserialize_option(V)
    }
}

#[derive(Deserialize)]
enum NoWayOut {
    A(Box<NoWayOut>),
    B(u8, Box<NoWayOut>),
}

/// On a thread with half the stack of a tokio worker (unoptimized, reaching the depth
/// bound took under 512 KiB when this was written).
#[test]
fn infinite_types_are_too_deep_not_a_stack_overflow() {
    let results = std::thread::Builder::new()
        .stack_size(1 << 20)
        .spawn(|| {
            [
                trace::<Loop>(),
                trace::<LoopStruct>(),
                trace::<Bottomless>(),
                trace::<Vec<Bottomless>>(),
            ]
        })
        .unwrap()
        .join()
        .unwrap();
    for result in results {
        assert!(
            matches!(result, Err(TraceError::TooDeep { limit: 256, .. })),
            "{result:?}"
        );
    }
}

#[test]
fn an_enum_without_a_finite_value_is_untraceable() {
    match trace::<NoWayOut>() {
        Err(TraceError::Untraceable { reason, .. }) => {
            assert!(reason.contains("no finite value"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

thread_local! {
    static FLIPS: Cell<u32> = const { Cell::new(0) };
}

/// Reads a `u8` the first time and a `u16` after: a shape that depends on something else
/// than the type.
struct Flip;

impl<'de> Deserialize<'de> for Flip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flip;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a flip")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Flip, A::Error> {
                let n = FLIPS.with(|flips| flips.replace(flips.get() + 1));
                if n == 0 {
                    seq.next_element::<u8>()?;
                } else {
                    seq.next_element::<u16>()?;
                }
                Ok(Flip)
            }
        }
        d.deserialize_struct("Flip", &["x"], V)
    }
}

#[derive(Deserialize)]
struct TwoFlips {
    a: Flip,
    b: Flip,
}

#[test]
fn a_shape_that_depends_on_values_is_inconsistent() {
    FLIPS.with(|flips| flips.set(0));
    let result = trace::<TwoFlips>();
    assert!(
        matches!(result, Err(TraceError::Inconsistent { .. })),
        "{result:?}"
    );
}

mod aliases {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Plain {
        name: String,
        age: u32,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Aliased {
        #[serde(alias = "full_name")]
        name: String,
        age: u32,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct AliasedRetyped {
        #[serde(alias = "full_name")]
        name: String,
        age: u64,
    }

    /// serde lists aliases among a struct's field names; they must not shift the names onto
    /// the wrong fields (or drop the last ones).
    #[test]
    fn a_struct_with_aliases_is_described_by_its_fields_shapes() {
        let aliased = trace::<Aliased>().expect("traces");
        assert_eq!(aliased.description(), "struct{\"?\":str,\"?\":u32}");
        assert_ne!(
            aliased.fingerprint(),
            trace::<Plain>().expect("traces").fingerprint()
        );
        assert_ne!(
            aliased.fingerprint(),
            trace::<AliasedRetyped>().expect("traces").fingerprint(),
            "a changed type is still caught"
        );
    }
}
