//! Code generation for `#[virtual_actor]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::{ImplItem, spanned::Spanned};

use crate::parse::{MigrationsOption, Options, Target};

/// Fills in what a virtual actor's `impl Actor` may leave out: `type Arguments` and a
/// `pre_start` that takes the stored state (or the default for a new id).
pub(crate) fn complete_impl(target: &mut Target, opts: &Options) {
    let krate = &opts.krate;
    let Some(state_ty) = target.state_ty.clone() else {
        return;
    };
    if !target.has_arguments {
        let item: ImplItem = syn::parse_quote! {
            type Arguments = #krate::Activation<#state_ty>;
        };
        target.item.items.push(item);
    }
    if !target.has_pre_start {
        // Spanned at the state type, so "State: Default is not satisfied" points at it.
        let body = quote_spanned! {state_ty.span()=>
            ::core::result::Result::Ok(<#state_ty as #krate::__private::DefaultState>::from_activation(activation))
        };
        let item: ImplItem = syn::parse_quote! {
            async fn pre_start(
                &self,
                _myself: #krate::ractor::ActorRef<<Self as #krate::ractor::Actor>::Msg>,
                activation: #krate::Activation<#state_ty>,
            ) -> ::core::result::Result<#state_ty, #krate::ractor::ActorProcessingErr> {
                #body
            }
        };
        target.item.items.push(item);
    }
}

/// The `VirtualActor` impl that names the kind and its options.
pub(crate) fn virtual_actor_impl(target: &Target, opts: &Options) -> TokenStream {
    let krate = &opts.krate;
    let self_ty = &target.self_ty;
    let (Some(kind), Some(state_ty)) = (&opts.kind, &target.state_ty) else {
        return TokenStream::new();
    };
    let passivate = opts.passivate_after.map(|ms| match ms {
        Some(ms) => quote! {
            const PASSIVATE_AFTER: ::core::option::Option<::core::time::Duration> =
                ::core::option::Option::Some(::core::time::Duration::from_millis(#ms));
        },
        None => quote! {
            const PASSIVATE_AFTER: ::core::option::Option<::core::time::Duration> = ::core::option::Option::None;
        },
    });
    // Spanned at the user's state type: a state that is not serde-serializable is reported there.
    let persisted = quote_spanned! {state_ty.span()=>
        type PersistedState = #state_ty;
    };
    let version = opts.state_version.map(|v| {
        quote! { const STATE_VERSION: u32 = #v; }
    });
    let remembered = opts.remembered_calls.map(|n| {
        quote! { const REMEMBERED_CALLS: usize = #n; }
    });
    let migrations = opts
        .migrations
        .as_ref()
        .map(|m| migrations_fn(m, state_ty, opts));
    quote! {
        #[automatically_derived]
        impl #krate::VirtualActor for #self_ty {
            #persisted
            const KIND: &'static str = #kind;
            #passivate
            #version
            #remembered
            #migrations
        }
    }
}

/// `fn migrations()`: for `migrate_from`, one step per old version, converting through the
/// chain of `From` impls up to the current state (`V1` → `V2` → ... → `State`).
fn migrations_fn(m: &MigrationsOption, state_ty: &syn::Type, opts: &Options) -> TokenStream {
    let krate = &opts.krate;
    let body = match m {
        MigrationsOption::Function(path) => quote! { #path() },
        MigrationsOption::Chain(chain) => {
            let steps = chain.iter().enumerate().map(|(i, (version, old))| {
                let mut value = quote! { old };
                let mut from = old;
                for (_, next) in &chain[i + 1..] {
                    // Spanned at the type, so a missing `From` impl is reported there.
                    value = quote_spanned! {next.span()=>
                        <#next as ::core::convert::From<#from>>::from(#value)
                    };
                    from = next;
                }
                let value = quote_spanned! {from.span()=>
                    <#state_ty as ::core::convert::From<#from>>::from(#value)
                };
                quote! {
                    .from_version(#version, |old: #old| {
                        ::core::result::Result::<#state_ty, ::core::convert::Infallible>::Ok(#value)
                    })
                }
            });
            quote! { #krate::Migrations::new() #(#steps)* }
        }
    };
    quote! {
        fn migrations() -> #krate::Migrations<#state_ty> {
            #body
        }
    }
}
