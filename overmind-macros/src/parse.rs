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
}

const KNOWN: &str = "expected `kind = \"...\"`, `passivate_after = \"...\"` or `crate = \"...\"`";

pub(crate) fn options(args: TokenStream, errors: &mut Errors) -> Options {
    let mut opts = Options {
        kind: None,
        passivate_after: None,
        krate: syn::parse_quote!(::overmind_ractor),
    };
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
