//! Parsing and validation of `#[virtual_actor(...)]`: the attribute's options and the impl block
//! it sits on. Every problem found is collected and reported at the span of the code at fault.

use proc_macro2::{Span, TokenStream};
use syn::{ImplItem, ItemImpl, LitStr, Path, Type, spanned::Spanned};

use crate::duration;

/// Collects errors so they are all reported at once.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        let error = syn::Error::new(span, message);
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn push_error(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn into_tokens(self) -> TokenStream {
        self.0.map(|e| e.into_compile_error()).unwrap_or_default()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// The validated options.
pub(crate) struct Options {
    pub(crate) kind: Option<LitStr>,
    /// Milliseconds; `Some(None)` is "never"; `None` means the default.
    pub(crate) passivate_after: Option<Option<u64>>,
    /// The path to the overmind-ractor crate, for users who renamed it.
    pub(crate) krate: Path,
    /// The declared state version; `None` means the default (1).
    pub(crate) state_version: Option<u32>,
    /// How older states are read.
    pub(crate) migrations: Option<MigrationsOption>,
    /// How many idempotent calls an actor remembers; `None` means the default.
    pub(crate) remembered_calls: Option<usize>,
}

/// `migrate_from(1 = V1, 2 = V2)` or `migrations = "path::to::fn"`.
pub(crate) enum MigrationsOption {
    /// Old versions and the types they were stored as, oldest first.
    Chain(Vec<(u32, Type)>),
    /// A function returning the kind's `Migrations`.
    Function(Path),
}

/// One `version = Type` of `migrate_from`.
struct Step {
    version: syn::LitInt,
    ty: Type,
}

impl syn::parse::Parse for Step {
    fn parse(input: syn::parse::ParseStream<'_>) -> syn::Result<Self> {
        let version = input.parse()?;
        input.parse::<syn::Token![=]>()?;
        Ok(Self {
            version,
            ty: input.parse()?,
        })
    }
}

const KNOWN: &str = "expected `kind = \"...\"`, `passivate_after = \"...\"`, `state_version = N`, `migrate_from(N = OldType, ...)`, `migrations = \"path::to::fn\"`, `remembered_calls = N` or `crate = \"...\"`";

pub(crate) fn options(args: TokenStream, errors: &mut Errors) -> Options {
    let mut opts = Options {
        kind: None,
        passivate_after: None,
        krate: syn::parse_quote!(::overmind_ractor),
        state_version: None,
        migrations: None,
        remembered_calls: None,
    };
    // The span of the migrations option, for errors found once all options are read.
    let mut migrations_span = None;
    let mut seen_crate = false;
    let parser = syn::meta::parser(|meta| {
        let name = meta
            .path
            .get_ident()
            .map(ToString::to_string)
            .unwrap_or_default();
        let duplicate = |what: &str| meta.error(format!("duplicate option `{what}`"));
        match name.as_str() {
            "kind" => {
                let lit: LitStr = meta.value()?.parse()?;
                if opts.kind.is_some() {
                    return Err(duplicate("kind"));
                }
                if let Err(reason) = check_kind(&lit.value()) {
                    errors.push(lit.span(), reason);
                }
                opts.kind = Some(lit);
            }
            "passivate_after" => {
                let lit: LitStr = meta.value()?.parse()?;
                if opts.passivate_after.is_some() {
                    return Err(duplicate("passivate_after"));
                }
                match duration::parse(&lit.value()) {
                    Ok(ms) => opts.passivate_after = Some(ms),
                    Err(reason) => {
                        errors.push(lit.span(), reason);
                        opts.passivate_after = Some(None);
                    }
                }
            }
            "state_version" => {
                let lit: syn::LitInt = meta.value()?.parse()?;
                if opts.state_version.is_some() {
                    return Err(duplicate("state_version"));
                }
                match lit.base10_parse::<u32>() {
                    Ok(v) if v >= 1 => opts.state_version = Some(v),
                    _ => {
                        errors.push(
                            lit.span(),
                            "state_version is a whole number from 1 to 4294967295",
                        );
                        opts.state_version = Some(1);
                    }
                }
            }
            "remembered_calls" => {
                let lit: syn::LitInt = meta.value()?.parse()?;
                if opts.remembered_calls.is_some() {
                    return Err(duplicate("remembered_calls"));
                }
                match lit.base10_parse::<usize>() {
                    Ok(n) if n <= 10_000 => opts.remembered_calls = Some(n),
                    _ => errors.push(
                        lit.span(),
                        "remembered_calls is a whole number from 0 to 10000 (each one is stored with every save)",
                    ),
                }
            }
            "migrate_from" | "migrations" if opts.migrations.is_some() => {
                return Err(
                    meta.error("give either `migrate_from(...)` or `migrations = \"...\"`, once")
                );
            }
            "migrate_from" => {
                let content;
                syn::parenthesized!(content in meta.input);
                let steps =
                    content.parse_terminated(<Step as syn::parse::Parse>::parse, syn::Token![,])?;
                let mut chain = Vec::new();
                for step in steps {
                    match step.version.base10_parse::<u32>() {
                        Ok(v) if v >= 1 => {
                            if chain.iter().any(|(seen, _)| *seen == v) {
                                errors.push(
                                    step.version.span(),
                                    format!("version {v} is given twice"),
                                );
                            }
                            chain.push((v, step.ty));
                        }
                        _ => errors.push(step.version.span(), "a version is a whole number from 1"),
                    }
                }
                if chain.is_empty() {
                    return Err(meta.error("migrate_from lists `version = OldStateType` pairs"));
                }
                chain.sort_by_key(|(v, _)| *v);
                migrations_span = Some(meta.path.span());
                opts.migrations = Some(MigrationsOption::Chain(chain));
            }
            "migrations" => {
                let lit: LitStr = meta.value()?.parse()?;
                opts.migrations = Some(MigrationsOption::Function(lit.parse()?));
            }
            "crate" => {
                let lit: LitStr = meta.value()?.parse()?;
                if seen_crate {
                    return Err(duplicate("crate"));
                }
                seen_crate = true;
                opts.krate = lit.parse()?;
            }
            _ => {
                return Err(meta.error(format!(
                    "unknown #[virtual_actor] option `{}`; {KNOWN}",
                    meta.path
                        .segments
                        .iter()
                        .map(|s| s.ident.to_string())
                        .collect::<Vec<_>>()
                        .join("::")
                )));
            }
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        errors.push_error(e);
    }
    if let (Some(MigrationsOption::Chain(chain)), Some(span)) = (&opts.migrations, migrations_span)
    {
        let current = opts.state_version.unwrap_or(1);
        if let Some((v, _)) = chain.iter().find(|(v, _)| *v >= current) {
            errors.push(
                span,
                format!(
                    "migrate_from names version {v}, but state_version is {current}: migrations come from older versions (raise `state_version`)"
                ),
            );
        }
    }
    opts
}

/// The same rule as `overmind_core::validate_kind`, checked at compile time.
fn check_kind(kind: &str) -> Result<(), String> {
    let ok = !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid kind {kind:?}: use 1 to 64 characters from A-Z, a-z, 0-9, '_', '-', '.' (the kind is part of every stored key)"
        ))
    }
}

/// What the expansion needs from the impl block.
pub(crate) struct Target {
    pub(crate) item: ItemImpl,
    pub(crate) self_ty: Type,
    pub(crate) state_ty: Option<Type>,
    pub(crate) has_arguments: bool,
    pub(crate) has_pre_start: bool,
}

pub(crate) fn target(item: TokenStream, errors: &mut Errors) -> Result<Target, TokenStream> {
    let item: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            let span = item
                .clone()
                .into_iter()
                .next()
                .map_or_else(Span::call_site, |t| t.span());
            errors.push(
                span,
                "#[virtual_actor] goes on an `impl Actor for YourActor` block",
            );
            // Hand the item back untouched so the rest of the crate still compiles.
            return Err(item);
        }
    };
    if item.trait_.is_none() {
        errors.push(
            item.self_ty.span(),
            "#[virtual_actor] goes on an `impl Actor for YourActor` block, not an inherent impl",
        );
    }
    if !item.generics.params.is_empty() {
        errors.push(
            item.generics.span(),
            "a virtual actor cannot be generic: each kind names exactly one actor type",
        );
    }
    let mut state_ty = None;
    let mut has_arguments = false;
    let mut has_pre_start = false;
    for member in &item.items {
        match member {
            ImplItem::Type(t) if t.ident == "State" => state_ty = Some(t.ty.clone()),
            ImplItem::Type(t) if t.ident == "Arguments" => has_arguments = true,
            ImplItem::Fn(f) if f.sig.ident == "pre_start" => has_pre_start = true,
            _ => {}
        }
    }
    if state_ty.is_none() && item.trait_.is_some() {
        errors.push(
            item.self_ty.span(),
            "a virtual actor needs `type State = ...;`: the state Overmind loads and stores",
        );
    }
    Ok(Target {
        self_ty: (*item.self_ty).clone(),
        item,
        state_ty,
        has_arguments,
        has_pre_start,
    })
}
