//! The state of a trace across its passes, and the pass loop.
//!
//! A pass deserializes one `T` from [`Tracer`](super::de::Tracer), which asks this state what
//! to hand each visitor (which enum variant, which candidate value, how many elements) and
//! tells it what was asked for. A pass explores one variant per enum encounter (the visitor
//! is consumed), so passes run until every variant of every enum met is recorded.

use std::{any::type_name, collections::HashMap, fmt};

use serde::de::DeserializeOwned;

use super::{
    TraceError,
    de::{Error, Tracer},
    model::{ContainerKey, Entry, Kind, Node, Payload, finite_choices},
};

/// Deeper than this, a type is taken for infinite (a `struct S(Box<S>)`, or a hand-written
/// `Deserialize` that always recurses). It keeps the tracer's own stack use bounded.
pub(super) const MAX_DEPTH: usize = 256;
/// A bound on passes, so a type that never completes cannot loop forever.
pub(super) const MAX_PASSES: usize = 10_000;
/// A bound on `deserialize_*` calls over all passes, so a type whose tree of non-recursive
/// repeats is exponential (`A { x: B, y: B }`, `B { x: C, y: C }`, ...) cannot run for hours.
pub(super) const MAX_STEPS: usize = 5_000_000;

/// Candidate strings, in order. Beyond the empty string, each is the zero value of a
/// common validating type: RFC 3339 and ISO 8601 dates and times (chrono, time, jiff), a
/// UUID in its text form, IP and socket addresses, ISO 8601 and humantime durations, a URL.
pub(super) const STRS: [&str; 12] = [
    "",
    "0",
    "a",
    "1970-01-01T00:00:00Z",
    "1970-01-01",
    "00:00:00",
    "00000000-0000-0000-0000-000000000000",
    "127.0.0.1",
    "127.0.0.1:1",
    "PT0S",
    "0s",
    "http://localhost/",
];
/// Candidate byte strings: empty, then the lengths fixed-size types check for (a UUID is
/// 16 bytes when not human-readable, a hash or key 32, a u64 8, an IPv4 address 4).
pub(super) const BYTES: [&[u8]; 5] = [&[], &[0; 16], &[0; 32], &[0; 8], &[0; 4]];
/// Candidate chars.
pub(super) const CHARS: [char; 2] = ['a', '0'];

/// What kind of decision a site makes, and so which candidates it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Choice {
    /// `false`, `true`.
    Bool,
    /// `0`, `1` (of any integer type).
    Int,
    /// `0.0`, `1.0`.
    Float,
    Char,
    Str,
    Bytes,
    /// A quiet `Option`: `None` (ends a recursion), then `Some`.
    QuietOption,
    /// A quiet sequence or map: empty (ends a recursion), then one element.
    QuietLen,
}

impl Choice {
    /// How many candidates the site has.
    fn count(self) -> usize {
        match self {
            Choice::Str => STRS.len(),
            Choice::Bytes => BYTES.len(),
            Choice::Char => CHARS.len(),
            Choice::Bool | Choice::Int | Choice::Float | Choice::QuietOption | Choice::QuietLen => {
                2
            }
        }
    }

    fn text(self) -> &'static str {
        match self {
            Choice::Bool => "bool value",
            Choice::Int => "integer value",
            Choice::Float => "float value",
            Choice::Char => "char value",
            Choice::Str => "string value",
            Choice::Bytes => "byte string value",
            Choice::QuietOption => "option (in a recursive occurrence)",
            Choice::QuietLen => "sequence length (in a recursive occurrence)",
        }
    }
}

/// A place in the type where a candidate is chosen: the innermost named container (or the
/// root), the variant and element within it, and the how-manieth choice of that element.
/// Every occurrence of a type shares its sites, which is right: it validates the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Site {
    container: Option<ContainerKey>,
    variant: Option<usize>,
    element: usize,
    /// A quiet occurrence reads fewer values (no `Some`, no elements), so its choices are
    /// numbered differently from a recorded one's and must not share their candidates.
    quiet: bool,
    ordinal: usize,
    choice: Choice,
}

/// A site as a person reads it, for [`TraceError::Untraceable`].
#[derive(Debug, Clone, Copy)]
struct Label {
    type_name: &'static str,
    variant: Option<&'static str>,
    /// `None` at the root, which has no elements of its own.
    element: Option<usize>,
    element_name: Option<&'static str>,
    choice: Option<Choice>,
    ordinal: usize,
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", self.type_name)?;
        if let Some(variant) = self.variant {
            write!(f, " variant `{variant}`")?;
        }
        match (self.element_name, self.element) {
            (Some(name), _) => write!(f, " field `{name}`")?,
            (None, Some(element)) => write!(f, " element {element}")?,
            (None, None) => {}
        }
        if let Some(choice) = self.choice {
            write!(f, ", {} #{}", choice.text(), self.ordinal)?;
        }
        Ok(())
    }
}

/// One named container (or the root) on the stack of the current pass.
#[derive(Debug)]
struct Frame {
    /// `None` for the root.
    key: Option<ContainerKey>,
    type_name: &'static str,
    /// Its entry; `None` for the root, and for a quiet occurrence of a type never recorded.
    id: Option<usize>,
    /// A quiet occurrence records nothing and reads as little as it can, so that a
    /// recursive type ends.
    quiet: bool,
    /// The variant chosen, for an enum.
    variant: Option<usize>,
    /// The variant was a guess (a quiet occurrence of an enum whose recorded variants do
    /// not show a finite value yet), so running too deep may be the guess's fault.
    guessed: bool,
    element: usize,
    /// Names of the elements (struct fields), for labels.
    element_names: &'static [&'static str],
    /// Choices made so far within the current element.
    ordinal: usize,
    /// What the chosen variant's `VariantAccess` call read, for an enum.
    payload: Option<Payload>,
}

impl Frame {
    fn new(
        key: Option<ContainerKey>,
        type_name: &'static str,
        id: Option<usize>,
        quiet: bool,
    ) -> Frame {
        Frame {
            key,
            type_name,
            id,
            quiet,
            variant: None,
            guessed: false,
            element: 0,
            element_names: &[],
            ordinal: 0,
            payload: None,
        }
    }

    fn label(&self, choice: Option<Choice>) -> Label {
        let variant = match self.key {
            Some(key) if key.kind == Kind::Enum => {
                self.variant.and_then(|v| key.members.get(v).copied())
            }
            _ => None,
        };
        Label {
            type_name: self.type_name,
            variant,
            element: self.key.is_some().then_some(self.element),
            element_name: self.element_names.get(self.element).copied(),
            choice,
            ordinal: self.ordinal,
        }
    }
}

/// Why a pass was stopped by the tracer itself rather than by a visitor's error.
#[derive(Debug)]
enum Stop {
    /// Tracing cannot succeed.
    Fatal(TraceError),
    /// A quiet occurrence found no finite value with what is recorded so far; a later
    /// pass, knowing more, may.
    Stuck(String),
}

/// Everything a trace knows: kept across passes (entries, candidates) or reset at each
/// pass start (the stack).
#[derive(Debug)]
pub(super) struct Tracing {
    root_type: &'static str,
    entries: Vec<Entry>,
    ids: HashMap<ContainerKey, usize>,
    /// The candidate index of each site that needed more than its first.
    candidates: HashMap<Site, usize>,
    /// [`finite_choices`] of the entries as they were at the start of the pass.
    finite: Vec<Option<usize>>,
    /// A slot was recorded since `finite` was computed.
    finite_stale: bool,
    steps: usize,
    frames: Vec<Frame>,
    depth: usize,
    /// The node the innermost finished `deserialize_*` call read; its caller takes it.
    last: Option<Node>,
    /// The site of the last choice: when a visitor errs, the one whose candidate changes.
    last_site: Option<(Site, Label)>,
    stop: Option<Stop>,
}

/// Traces `T`: the root node and the table of entries it refers to.
pub(super) fn trace<T: DeserializeOwned>() -> Result<(Node, Vec<Entry>), TraceError> {
    let mut st = Tracing::new(type_name::<T>());
    let mut root: Option<Node> = None;
    let mut stuck: Option<String> = None;
    for _ in 0..MAX_PASSES {
        st.begin_pass();
        let result = T::deserialize(Tracer::new(&mut st)).map(drop);
        let node = st.take_last();
        match (st.stop.take(), result) {
            (Some(Stop::Fatal(error)), _) => return Err(error),
            (Some(Stop::Stuck(site)), _) => stuck = Some(site),
            (None, Err(error)) => st.retry(error)?,
            (None, Ok(())) => {
                stuck = None;
                st.check_root(&mut root, node)?;
                if st.entries.iter().all(Entry::is_complete) {
                    let root = root.unwrap_or(Node::Unknown);
                    return Ok((root, st.entries));
                }
            }
        }
    }
    Err(match stuck {
        Some(site) => TraceError::Untraceable {
            type_name: st.root_type,
            site,
            reason: "no finite value found: every variant tried leads back into a value being read"
                .to_owned(),
        },
        None => TraceError::TooManyPasses {
            type_name: st.root_type,
            limit: MAX_PASSES,
        },
    })
}

impl Tracing {
    fn new(root_type: &'static str) -> Tracing {
        Tracing {
            root_type,
            entries: Vec::new(),
            ids: HashMap::new(),
            candidates: HashMap::new(),
            finite: Vec::new(),
            finite_stale: false,
            steps: 0,
            frames: Vec::new(),
            depth: 0,
            last: None,
            last_site: None,
            stop: None,
        }
    }

    fn begin_pass(&mut self) {
        if self.finite_stale {
            self.finite = finite_choices(&self.entries);
            self.finite_stale = false;
        }
        self.frames.clear();
        self.frames
            .push(Frame::new(None, self.root_type, None, false));
        self.depth = 0;
        self.last = None;
        self.last_site = None;
        self.stop = None;
    }

    /// A visitor refused a value: the next pass hands the last site its next candidate.
    fn retry(&mut self, error: Error) -> Result<(), TraceError> {
        let Some((site, label)) = self.last_site else {
            return Err(TraceError::Untraceable {
                type_name: self.root_type,
                site: "before any value was read".to_owned(),
                reason: error.to_string(),
            });
        };
        let next = self.candidates.get(&site).map_or(1, |c| c + 1);
        if next >= site.choice.count() {
            return Err(TraceError::Untraceable {
                type_name: self.root_type,
                site: label.to_string(),
                reason: error.to_string(),
            });
        }
        self.candidates.insert(site, next);
        Ok(())
    }

    /// Every successful pass reads the same root; one that does not is data-dependent.
    fn check_root(&self, root: &mut Option<Node>, node: Node) -> Result<(), TraceError> {
        match root {
            None => *root = Some(node),
            Some(known) if *known == node => {}
            Some(_) => {
                return Err(TraceError::Inconsistent {
                    type_name: self.root_type,
                    container: self.root_type,
                });
            }
        }
        Ok(())
    }

    // ---- Called by the deserializer. ----

    /// Counts one `deserialize_*` call into the current depth.
    pub(super) fn enter(&mut self) -> Result<(), Error> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            let error = TraceError::TooLarge {
                type_name: self.root_type,
                limit: MAX_STEPS,
            };
            return Err(self.halt(Stop::Fatal(error)));
        }
        if self.depth >= MAX_DEPTH {
            return Err(self.too_deep());
        }
        self.depth += 1;
        Ok(())
    }

    /// Ends the call [`enter`](Self::enter) counted; `node` is what it read.
    pub(super) fn exit(&mut self, node: Node) {
        self.depth = self.depth.saturating_sub(1);
        self.last = Some(node);
    }

    /// Forgets the last node, before a nested call whose node the caller will take.
    pub(super) fn clear_last(&mut self) {
        self.last = None;
    }

    /// The node the nested call read; `Unknown` if its `Deserialize` never asked.
    pub(super) fn take_last(&mut self) -> Node {
        self.last.take().unwrap_or(Node::Unknown)
    }

    pub(super) fn quiet(&self) -> bool {
        self.frames.last().is_some_and(|frame| frame.quiet)
    }

    /// The candidate index for the next choice of the current element.
    pub(super) fn choose(&mut self, choice: Choice) -> usize {
        let Some(frame) = self.frames.last_mut() else {
            return 0;
        };
        let site = Site {
            container: frame.key,
            variant: frame.variant,
            element: frame.element,
            quiet: frame.quiet,
            ordinal: frame.ordinal,
            choice,
        };
        let label = frame.label(Some(choice));
        frame.ordinal += 1;
        self.last_site = Some((site, label));
        self.candidates.get(&site).copied().unwrap_or(0)
    }

    /// Starts a named container. It is quiet inside a quiet one, and when its type is
    /// already on the stack: that is a recursion, and reading it again in full would not end.
    pub(super) fn open(&mut self, key: ContainerKey, type_name: &'static str) -> Result<(), Error> {
        self.enter()?;
        let quiet = self.quiet() || self.frames.iter().any(|frame| frame.key == Some(key));
        let id = if quiet {
            self.ids.get(&key).copied()
        } else {
            Some(self.entry_id(key))
        };
        self.frames
            .push(Frame::new(Some(key), type_name, id, quiet));
        Ok(())
    }

    fn entry_id(&mut self, key: ContainerKey) -> usize {
        let next = self.entries.len();
        let id = *self.ids.entry(key).or_insert(next);
        if id == next {
            self.entries.push(Entry::new(key));
        }
        id
    }

    /// Ends the innermost container. If it is recorded and its visitor succeeded, its
    /// payload (given here for a struct-like one, set by the variant for an enum) is kept.
    pub(super) fn close(&mut self, ok: bool, payload: Option<Payload>) {
        let Some(frame) = self.frames.pop() else {
            self.exit(Node::Unknown);
            return;
        };
        let node = match frame.id {
            Some(id) if !frame.quiet => {
                if ok {
                    self.record(id, frame, payload);
                }
                Node::Named(id)
            }
            Some(id) => Node::Named(id),
            None => Node::Unknown,
        };
        self.exit(node);
    }

    fn record(&mut self, id: usize, frame: Frame, payload: Option<Payload>) {
        let is_enum = frame.key.is_some_and(|key| key.kind == Kind::Enum);
        let slot = match (is_enum, frame.variant) {
            (false, _) => 0,
            (true, Some(variant)) => variant,
            (true, None) => {
                let what = format!("`{}`: its visitor read no variant", frame.type_name);
                self.unsupported(what);
                return;
            }
        };
        // A variant whose visitor never called `VariantAccess` read nothing more.
        let payload = payload.or(frame.payload).unwrap_or(Payload::Unit);
        let Some(known) = self
            .entries
            .get_mut(id)
            .and_then(|entry| entry.slots.get_mut(slot))
        else {
            return;
        };
        match known {
            None => {
                *known = Some(payload);
                self.finite_stale = true;
            }
            Some(known) if *known == payload => {}
            Some(_) => {
                let error = TraceError::Inconsistent {
                    type_name: self.root_type,
                    container: frame.type_name,
                };
                self.halt(Stop::Fatal(error));
            }
        }
    }

    /// The current container's element `index` starts (a field, or a tuple element).
    pub(super) fn start_element(&mut self, index: usize) {
        if let Some(frame) = self.frames.last_mut() {
            frame.element = index;
            frame.ordinal = 0;
        }
    }

    /// The current variant is a struct variant with these fields.
    pub(super) fn set_element_names(&mut self, names: &'static [&'static str]) {
        if let Some(frame) = self.frames.last_mut() {
            frame.element_names = names;
        }
    }

    /// What the current enum's chosen variant read.
    pub(super) fn set_payload(&mut self, payload: Payload) {
        if let Some(frame) = self.frames.last_mut() {
            frame.payload = Some(payload);
        }
    }

    /// Chooses the variant of the current (innermost) enum.
    pub(super) fn choose_variant(&mut self, key: ContainerKey) -> Result<usize, Error> {
        if key.members.is_empty() {
            let site = self.location();
            let reason = "an enum without variants has no value".to_owned();
            return Err(self.untraceable(site, reason));
        }
        let (id, quiet) = match self.frames.last() {
            Some(frame) => (frame.id, frame.quiet),
            None => (None, true),
        };
        let variant = match id {
            Some(id) if !quiet => self.variant_to_explore(id),
            _ => self.finite_variant(key, id)?,
        };
        if let Some(frame) = self.frames.last_mut() {
            frame.variant = Some(variant);
            frame.element = 0;
            frame.ordinal = 0;
        }
        Ok(variant)
    }

    /// A recorded encounter explores: the first unrecorded variant from the enum's
    /// rotation point on, or the variant at that point if all are recorded. Rotating
    /// (rather than always taking the first unrecorded) moves on from a variant whose pass
    /// failed, and reaches enums nested in variants recorded already.
    fn variant_to_explore(&mut self, id: usize) -> usize {
        let Some(entry) = self.entries.get_mut(id) else {
            return 0;
        };
        let n = entry.slots.len().max(1);
        let start = entry.rotation % n;
        let variant = (0..n)
            .map(|i| (start + i) % n)
            .find(|&v| entry.slots.get(v).is_some_and(Option::is_none))
            .unwrap_or(start);
        entry.rotation = variant + 1;
        variant
    }

    /// A quiet encounter must end: the variant the recorded definitions show a finite value
    /// through, or else a guess: the first variant not already in progress further up the
    /// stack (taking one that is would start the same recursion again).
    fn finite_variant(&mut self, key: ContainerKey, id: Option<usize>) -> Result<usize, Error> {
        if let Some(variant) = id.and_then(|id| self.finite.get(id).copied().flatten()) {
            return Ok(variant);
        }
        let below = &self.frames[..self.frames.len().saturating_sub(1)];
        let in_progress = |v: usize| {
            below
                .iter()
                .any(|frame| frame.key == Some(key) && frame.variant == Some(v))
        };
        match (0..key.members.len()).find(|&v| !in_progress(v)) {
            Some(variant) => {
                if let Some(frame) = self.frames.last_mut() {
                    frame.guessed = true;
                }
                Ok(variant)
            }
            None => {
                let site = self.location();
                Err(self.halt(Stop::Stuck(site)))
            }
        }
    }

    /// The enum's identifier refused the index of one of its own variants.
    pub(super) fn variant_refused(&mut self, variant: usize, error: Error) -> Error {
        let site = format!("{} (variant index {variant})", self.location());
        self.untraceable(site, error.to_string())
    }

    /// The type asks for something bincode cannot decode.
    pub(super) fn unsupported_call(&mut self, value_type: &str, method: &str) -> Error {
        let what = format!(
            "`{value_type}` calls `{method}` (at {}): bincode cannot decode that either. \
             Untagged and internally tagged enums, #[serde(flatten)] and self-describing \
             values like serde_json::Value need it",
            self.location()
        );
        self.unsupported(what)
    }

    fn unsupported(&mut self, what: String) -> Error {
        let error = TraceError::Unsupported {
            type_name: self.root_type,
            what,
        };
        self.halt(Stop::Fatal(error))
    }

    fn untraceable(&mut self, site: String, reason: String) -> Error {
        let error = TraceError::Untraceable {
            type_name: self.root_type,
            site,
            reason,
        };
        self.halt(Stop::Fatal(error))
    }

    /// Too deep is fatal unless a guessed variant is on the stack: then knowing more (in a
    /// later pass) may find a shorter way out.
    fn too_deep(&mut self) -> Error {
        if self.frames.iter().any(|frame| frame.guessed) {
            let site = self.location();
            return self.halt(Stop::Stuck(site));
        }
        let error = TraceError::TooDeep {
            type_name: self.root_type,
            limit: MAX_DEPTH,
        };
        self.halt(Stop::Fatal(error))
    }

    /// Where the pass is, for messages.
    fn location(&self) -> String {
        match self.frames.last() {
            Some(frame) => frame.label(None).to_string(),
            None => format!("`{}`", self.root_type),
        }
    }

    /// Stops the pass: the error goes up through the visitors (which may rewrap it, or
    /// even swallow it, so the reason is kept here). A fatal stop wins over a stuck one.
    fn halt(&mut self, stop: Stop) -> Error {
        let message = match &stop {
            Stop::Fatal(error) => error.to_string(),
            Stop::Stuck(site) => format!("no finite value found at {site} yet"),
        };
        match (&self.stop, stop) {
            (None, stop) | (Some(Stop::Stuck(_)), stop @ Stop::Fatal(_)) => self.stop = Some(stop),
            _ => {}
        }
        Error::new(message)
    }
}
