//! A fuzz harness on stable Rust for every decoder of bytes that come from disk, a database,
//! ZooKeeper or another node: a time-bounded loop over random bytes and mutations of valid
//! encodings (bit flips, truncations, insertions, splices, and length fields set to huge
//! values), each case under `catch_unwind`. A panic that escapes a decoder is a failure; so is
//! an abort (an allocation the decoder should not make, or a stack overflow), which ends the
//! process: the `overmind-fuzz` binary caps each case's allocations, and its test runs it as
//! a child process.
//!
//! Not covered: the ZooKeeper member and cluster records, which are private to
//! `overmind_core::membership::zookeeper` (they are serde_json, which allocates only what the
//! input holds and refuses nesting beyond 128, as the view record covered here does).

use std::{
    collections::{BTreeMap, HashMap},
    panic::{AssertUnwindSafe, catch_unwind},
    time::{Duration, Instant},
};

use overmind_core::{
    applied::AppliedCalls,
    codec::{self, Lease, Payload, Record, SchemaId},
    membership::{Member, ViewRecord, view::Epoch},
    schema::Fingerprint,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::rng::Rng;

/// Decodes an input; true if it decoded.
pub type Decode = Box<dyn Fn(&[u8]) -> bool>;

/// One decoder under test.
pub struct Target {
    pub name: &'static str,
    /// Valid inputs: each must decode, and mutations of them reach deep into the decoder.
    pub seeds: Vec<Vec<u8>>,
    pub decode: Decode,
}

fn state_target<S: Serialize + DeserializeOwned + 'static>(
    name: &'static str,
    values: &[S],
) -> Target {
    Target {
        name,
        seeds: values
            .iter()
            .map(|v| codec::encode_state(v).expect("a sample state encodes"))
            .collect(),
        decode: Box::new(|bytes| codec::decode_state::<S>(bytes).is_ok()),
    }
}

/// A state with a bit of everything.
#[derive(Debug, Serialize, Deserialize)]
struct Account {
    owner: String,
    balance: i64,
    limit: Option<u128>,
    tags: Vec<String>,
    frozen: bool,
    grade: char,
    rate: f64,
    pair: (u8, i16),
}

#[derive(Debug, Serialize, Deserialize)]
enum Event {
    Opened,
    Deposit(u64),
    Move {
        from: String,
        to: String,
        amount: i64,
    },
    Batch(Vec<Event>),
    Note(Option<Box<Event>>, String),
}

fn account(i: u32) -> Account {
    Account {
        owner: format!("owner-{i}-ü"),
        balance: -(i as i64) * 1_000_003,
        limit: (i % 2 == 0).then_some(u128::from(i) << 90),
        tags: (0..i % 4).map(|t| format!("tag{t}")).collect(),
        frozen: i % 3 == 0,
        grade: char::from_u32(0x41 + i % 26).unwrap_or('A'),
        rate: f64::from(i) / 7.0,
        pair: (i as u8, -(i as i16)),
    }
}

fn core_targets() -> Vec<Target> {
    let events = vec![
        Event::Opened,
        Event::Batch(vec![
            Event::Deposit(1 << 40),
            Event::Move {
                from: "a".into(),
                to: "b".into(),
                amount: -3,
            },
            Event::Note(Some(Box::new(Event::Opened)), "why".into()),
            Event::Batch(vec![Event::Batch(vec![])]),
        ]),
    ];
    let mut maps = HashMap::new();
    maps.insert("alice".to_owned(), vec![1, -2, 3]);
    maps.insert("bob".to_owned(), vec![]);
    let mut ordered = BTreeMap::new();
    ordered.insert(7u64, "seven".to_owned());
    ordered.insert(u64::MAX, String::new());
    let lease = Lease {
        epoch: 12,
        node: "node-a".into(),
        activation: 99,
    };
    let records = [
        Record {
            kind: "account".into(),
            lease: Some(lease.clone()),
            payload: Some(Payload {
                schema: SchemaId {
                    version: 2,
                    fingerprint: Fingerprint(0x5eed),
                },
                bytes: codec::encode_state(&account(3)).expect("encodes"),
            }),
            applied: applied_seeds().pop().unwrap_or_default(),
        },
        Record {
            kind: "account".into(),
            lease: Some(lease),
            payload: None,
            applied: Vec::new(),
        },
        Record {
            kind: "account".into(),
            lease: None,
            payload: Some(Payload {
                schema: SchemaId::LEGACY,
                bytes: vec![1, 2, 3],
            }),
            applied: Vec::new(),
        },
    ];
    let mut record_seeds: Vec<Vec<u8>> = records.iter().map(Record::encode).collect();
    record_seeds.extend(records.iter().map(|r| encode_old_record(r, 1)));
    record_seeds.extend(records.iter().map(|r| encode_old_record(r, 2)));
    record_seeds.extend(records.iter().map(|r| encode_old_record(r, 3)));
    let member = |id: u64, name: &str| Member {
        id,
        name: name.into(),
        addr: format!("127.0.0.1:{}", 7000 + id),
    };
    let views = [
        ViewRecord::empty(),
        ViewRecord {
            epoch: 5,
            stable: 4,
            history: vec![
                Epoch {
                    epoch: 4,
                    members: vec![member(1, "a")],
                },
                Epoch {
                    epoch: 5,
                    members: vec![member(1, "a"), member(3, "b")],
                },
            ],
        },
    ];
    vec![
        state_target::<String>("state: String", &["".into(), "héllo wörld".into()]),
        state_target::<Vec<u8>>("state: Vec<u8>", &[vec![], (0..=255).collect()]),
        state_target::<Vec<Vec<u64>>>(
            "state: Vec<Vec<u64>>",
            &[vec![vec![1, 1 << 20, u64::MAX], vec![], vec![0; 9]]],
        ),
        state_target::<HashMap<String, Vec<i32>>>("state: HashMap<String, Vec<i32>>", &[maps]),
        state_target::<BTreeMap<u64, String>>("state: BTreeMap<u64, String>", &[ordered]),
        state_target::<Vec<Event>>("state: recursive enum", &[events]),
        state_target::<Option<Account>>(
            "state: Option<struct>",
            &[None, Some(account(1)), Some(account(2))],
        ),
        state_target::<Vec<()>>("state: Vec<()>", &[vec![(); 3]]),
        Target {
            name: "Record::decode",
            seeds: record_seeds.clone(),
            decode: Box::new(|bytes| Record::decode(bytes).is_ok()),
        },
        Target {
            name: "Record::decode_for + decode_state",
            seeds: record_seeds,
            decode: Box::new(|bytes| match Record::decode_for(bytes, "account") {
                Ok(Record {
                    payload: Some(p), ..
                }) => {
                    let _ = codec::decode_state::<Account>(&p.bytes);
                    true
                }
                Ok(_) => true,
                Err(_) => false,
            }),
        },
        Target {
            name: "AppliedCalls::decode",
            seeds: applied_seeds(),
            decode: Box::new(|bytes| AppliedCalls::decode(bytes).is_ok()),
        },
        Target {
            name: "ViewRecord::decode",
            seeds: views.iter().map(ViewRecord::encode).collect(),
            decode: Box::new(|bytes| ViewRecord::decode(bytes).is_ok()),
        },
    ]
}

/// Applied calls as a record holds them: none, a few with and without replies.
fn applied_seeds() -> Vec<Vec<u8>> {
    let mut applied = AppliedCalls::default();
    let mut seeds = vec![applied.encode().expect("encodes")];
    for i in 0..3u8 {
        let reply = (i != 1).then(|| vec![i; 3]);
        applied.record(format!("order-{i}"), reply, 8);
        seeds.push(applied.encode().expect("encodes"));
    }
    seeds
}

/// A record as formats 1 to 3 wrote it (no schema; the checksum covers the payload only in
/// formats 1 and 2, and the header too in 3; format 1 has no flags byte): those formats are
/// still read. For seeds, and tests of the upgrade.
pub fn encode_old_record(record: &Record, format: u16) -> Vec<u8> {
    let mut out = codec::RECORD_MAGIC.to_vec();
    out.extend_from_slice(&format.to_le_bytes());
    out.push(record.kind.len() as u8);
    out.extend_from_slice(record.kind.as_bytes());
    match &record.lease {
        None => out.push(0),
        Some(l) => {
            out.push(1);
            out.extend_from_slice(&l.epoch.to_le_bytes());
            out.extend_from_slice(&l.activation.to_le_bytes());
            out.extend_from_slice(&(l.node.len() as u16).to_le_bytes());
            out.extend_from_slice(l.node.as_bytes());
        }
    }
    let payload = match (format, &record.payload) {
        (1, None) => &[][..],
        (1, Some(p)) => p.bytes.as_slice(),
        (_, p) => {
            out.push(u8::from(p.is_some()));
            p.as_ref().map_or(&[][..], |p| &p.bytes)
        }
    };
    let crc = if format >= 3 {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&out);
        crc.update(payload);
        crc.finalize()
    } else {
        crc32fast::hash(payload)
    };
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

#[cfg(feature = "cluster")]
mod cluster_targets {
    use std::collections::{BTreeMap, HashSet};

    use overmind_ractor::{VirtualMessage, cluster::fuzz};
    use ractor::RpcReplyPort;
    use serde::{Deserialize, Serialize};

    use super::Target;

    #[derive(Serialize, Deserialize)]
    pub(super) struct Line {
        sku: String,
        quantity: u32,
        tags: HashSet<String>,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) enum Payment {
        Card { last4: u16, expires: (u8, u16) },
        Voucher(String),
        Free,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) enum Refusal {
        OutOfStock { sku: String, left: u32 },
        Closed,
    }

    /// A message as applications write them: tuple, struct and unit variants; the user's
    /// structs and enums, collections, `Option`, text, floats and chars in its fields; and
    /// `Result` replies.
    #[derive(VirtualMessage)]
    pub(super) enum FuzzMsg {
        Unit,
        Number(i64),
        Text(String),
        Many(u8, i128, char, Vec<i32>, f64, bool),
        Add {
            line: Line,
            note: Option<String>,
        },
        Checkout {
            payment: Payment,
            prices: BTreeMap<String, u64>,
            reply: RpcReplyPort<Result<u64, Refusal>>,
        },
        Get(RpcReplyPort<i64>),
        AddAndGet(i64, RpcReplyPort<i64>),
        Echo(String, Vec<u16>, RpcReplyPort<String>),
    }

    /// `[call u8][variant len u8][variant][args]`: one input carries everything the message
    /// decoder is given.
    fn pack(variant: &str, args: &[u8], call: bool) -> Vec<u8> {
        let mut out = vec![u8::from(call), variant.len() as u8];
        out.extend_from_slice(variant.as_bytes());
        out.extend_from_slice(args);
        out
    }

    fn unpack(bytes: &[u8]) -> (bool, String, &[u8]) {
        let call = bytes.first().is_some_and(|b| b & 1 == 1);
        let len = usize::from(bytes.get(1).copied().unwrap_or(0));
        let rest = bytes.get(2..).unwrap_or_default();
        let (variant, args) = rest.split_at(len.min(rest.len()));
        (call, String::from_utf8_lossy(variant).into_owned(), args)
    }

    /// The encoded samples (variant, args, call).
    fn samples() -> Vec<(String, Vec<u8>, bool)> {
        fn port<T>() -> RpcReplyPort<T> {
            RpcReplyPort::from(ractor::concurrency::oneshot().0)
        }
        let line = || Line {
            sku: "sku-1".into(),
            quantity: 3,
            tags: ["gift".to_owned(), "fragile".to_owned()].into(),
        };
        let msgs = vec![
            (FuzzMsg::Unit, false),
            (FuzzMsg::Number(-42), false),
            (FuzzMsg::Text("héllo".into()), false),
            (
                FuzzMsg::Many(7, -1 << 100, 'ß', vec![-1, 2], 0.5, true),
                false,
            ),
            (
                FuzzMsg::Add {
                    line: line(),
                    note: Some("by noon".into()),
                },
                false,
            ),
            (
                FuzzMsg::Checkout {
                    payment: Payment::Card {
                        last4: 4242,
                        expires: (12, 2030),
                    },
                    prices: [("sku-1".to_owned(), 995)].into(),
                    reply: port(),
                },
                true,
            ),
            (
                FuzzMsg::Checkout {
                    payment: Payment::Voucher("V-1".into()),
                    prices: BTreeMap::new(),
                    reply: port(),
                },
                true,
            ),
            (FuzzMsg::Get(port()), true),
            (FuzzMsg::AddAndGet(5, port()), true),
            (FuzzMsg::Echo("e".into(), vec![1, 2, 3], port()), true),
        ];
        msgs.into_iter()
            .filter_map(|(m, call)| {
                let (variant, args) = fuzz::encode_message(m).ok()?;
                Some((variant, args, call))
            })
            .collect()
    }

    pub(super) fn targets() -> Vec<Target> {
        let samples = samples();
        let envelopes: Vec<Vec<u8>> = samples
            .iter()
            .filter_map(|(variant, args, _)| {
                fuzz::envelope("counter", "alice", 3, 1, variant, args).ok()
            })
            .collect();
        vec![
            Target {
                name: "wire::Envelope::decode",
                seeds: envelopes.clone(),
                decode: Box::new(|bytes| fuzz::decode_envelope(bytes).is_ok()),
            },
            Target {
                name: "wire::Reply::decode + fuzz::reply_payload",
                seeds: [&b""[..], b"reply", &[0xfd, 0, 0, 0, 0, 0, 0, 0, 9]]
                    .iter()
                    .flat_map(|p| fuzz::replies(p))
                    .collect(),
                decode: Box::new(|bytes| fuzz::decode_reply(bytes).is_ok()),
            },
            Target {
                name: "release: notices",
                seeds: vec![
                    fuzz::release_notices("node-a", &[("cart-1", 7 << 32 | 3)]),
                    fuzz::release_notices("n", &[("a", 0), ("b", u64::MAX), ("ü", 1)]),
                    fuzz::release_notices("", &[]),
                ],
                decode: Box::new(|bytes| fuzz::decode_release_notices(bytes).is_ok()),
            },
            Target {
                name: "remote: message decode",
                seeds: samples
                    .iter()
                    .map(|(variant, args, call)| pack(variant, args, *call))
                    .collect(),
                decode: Box::new(|bytes| {
                    let (call, variant, args) = unpack(bytes);
                    fuzz::decode_message::<FuzzMsg>(&variant, args, call).is_ok()
                }),
            },
            Target {
                name: "caller: a reply's value (Result<u64, Refusal>)",
                seeds: [
                    Ok(995),
                    Err(Refusal::OutOfStock {
                        sku: "sku-1".into(),
                        left: 0,
                    }),
                    Err(Refusal::Closed),
                ]
                .iter()
                .filter_map(|r: &Result<u64, Refusal>| overmind_core::codec::encode_state(r).ok())
                .collect(),
                decode: Box::new(|bytes| {
                    overmind_core::codec::decode_state::<Result<u64, Refusal>>(bytes).is_ok()
                }),
            },
            Target {
                name: "router: envelope then message",
                seeds: envelopes,
                decode: Box::new(|bytes| match fuzz::decode_envelope(bytes) {
                    Ok((variant, args)) => {
                        // The router gives a call a reply port; try both shapes.
                        let cast = fuzz::decode_message::<FuzzMsg>(&variant, &args, false);
                        let call = fuzz::decode_message::<FuzzMsg>(&variant, &args, true);
                        cast.is_ok() || call.is_ok()
                    }
                    Err(_) => false,
                }),
            },
        ]
    }
}

/// Every target this build has (the cluster ones need the `cluster` feature).
pub fn targets() -> Vec<Target> {
    #[allow(unused_mut)] // reason: only the cluster build adds targets
    let mut targets = core_targets();
    #[cfg(feature = "cluster")]
    targets.extend(cluster_targets::targets());
    targets
}

/// Byte patterns a decoder reads as lengths or counts near their largest values.
const HUGE: &[&[u8]] = &[
    // bincode varints: u64 (2^60 - 1, and u64::MAX), u32, u16.
    &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f],
    &[0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xfc, 0xff, 0xff, 0xff, 0x7f],
    &[0xfb, 0xff, 0xff],
    &[0xfa],
    // ractor's u64 big-endian field lengths; little-endian u64 and u16 (record lengths).
    &[0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    &[0xff; 8],
    &[0xff, 0xff],
    // JSON: huge numbers, deep nesting.
    b"18446744073709551616",
    b"1e999999999",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff];

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = if rng.below(8) == 0 {
        rng.below(4096)
    } else {
        rng.below(48)
    };
    (0..len)
        .map(|_| {
            if rng.below(4) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.next_u64() as u8
            }
        })
        .collect()
}

fn mutate(rng: &mut Rng, seed: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(9) {
            0 | 1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            2 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => b.truncate(at),
            4 => {
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                b.splice(at..at, bytes);
            }
            5 => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at.min(end)..end);
            }
            6 => {
                // A length field set to a huge value: overwrite in place.
                let pattern = HUGE[rng.below(HUGE.len())];
                let end = (at + pattern.len()).min(b.len());
                b.splice(at..end, pattern.iter().copied());
            }
            7 => {
                let pattern = HUGE[rng.below(HUGE.len())];
                b.splice(at..at, pattern.iter().copied());
            }
            _ => {
                // Splice in a piece of another valid input.
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let to = (from + rng.below(32)).min(other.len());
                b.splice(at..at, other[from..to].iter().copied());
            }
        }
    }
    b
}

/// What one target's run did.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub name: &'static str,
    pub executions: u64,
    /// Inputs that decoded (the rest were refused with an error).
    pub decoded: u64,
    pub panics: u64,
    /// Valid inputs that did not decode (the harness would test nothing deep).
    pub bad_seeds: u64,
    /// The first input that panicked, for reproduction.
    pub first_panic: Option<Vec<u8>>,
}

/// Runs every target for `per_target` each, from `seed`. `limit_allocations(Some(n))` is
/// called before each case with how many bytes it may allocate, and `(None)` after it; the
/// binary's capped allocator enforces it (an excess aborts the process).
pub fn run(
    targets: &[Target],
    per_target: Duration,
    seed: u64,
    limit_allocations: &dyn Fn(Option<usize>),
    mut progress: impl FnMut(&str),
) -> Vec<Stats> {
    targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            progress(target.name);
            let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mut stats = Stats {
                name: target.name,
                ..Stats::default()
            };
            let case = |input: &[u8], stats: &mut Stats| -> Option<bool> {
                // Room for what a decoder may hold for its input (a string as long as the
                // input, serde's preallocation up to 1 MiB per sequence being filled) and
                // nothing like the 2^60 bytes a declared length asks for.
                limit_allocations(Some((32 << 20) + 64 * input.len()));
                let outcome = catch_unwind(AssertUnwindSafe(|| (target.decode)(input)));
                limit_allocations(None);
                stats.executions += 1;
                match outcome {
                    Ok(decoded) => {
                        stats.decoded += u64::from(decoded);
                        Some(decoded)
                    }
                    Err(_) => {
                        stats.panics += 1;
                        stats.first_panic.get_or_insert_with(|| input.to_vec());
                        None
                    }
                }
            };
            for seed in &target.seeds {
                if case(seed, &mut stats) != Some(true) {
                    stats.bad_seeds += 1;
                }
            }
            let deadline = Instant::now() + per_target;
            while Instant::now() < deadline {
                for _ in 0..64 {
                    let input = if rng.below(4) == 0 || target.seeds.is_empty() {
                        random_bytes(&mut rng)
                    } else {
                        let seed = &target.seeds[rng.below(target.seeds.len())];
                        mutate(&mut rng, seed, &target.seeds)
                    };
                    case(&input, &mut stats);
                }
            }
            stats
        })
        .collect()
}
