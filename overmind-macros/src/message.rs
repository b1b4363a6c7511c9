//! Code generation for `#[derive(VirtualMessage)]`: each variant leaves as its name and a
//! tuple of its fields (all but its reply port), and is rebuilt from them on arrival.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Data, DeriveInput, Fields, Ident, Type, ext::IdentExt, spanned::Spanned};

use crate::parse::Errors;

/// The derive's output: the impls (through `__virtual_message!`, which drops them without
/// the `cluster` feature), or the errors.
pub(crate) fn derive(input: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let input: DeriveInput = match syn::parse2(input) {
        Ok(input) => input,
        Err(e) => return e.to_compile_error(),
    };
    let krate = crate_path(&input, &mut errors);
    if !input.generics.params.is_empty() {
        errors.push(
            input.generics.span(),
            "a VirtualMessage cannot be generic: it is the message type of one actor kind",
        );
    }
    let variants: Vec<Variant> = match &input.data {
        Data::Enum(data) => data
            .variants
            .iter()
            .filter_map(|v| Variant::new(Some(&v.ident), &v.fields, &mut errors))
            .collect(),
        Data::Struct(data) => Variant::new(None, &data.fields, &mut errors)
            .into_iter()
            .collect(),
        Data::Union(_) => {
            errors.push(
                input.ident.span(),
                "derive VirtualMessage on an enum (each variant one message) or a struct",
            );
            return errors.into_tokens();
        }
    };
    if !errors.is_empty() {
        return errors.into_tokens();
    }
    let names = Names::new();
    let checks = variants.iter().flat_map(|v| v.field_checks(&krate));
    let encode_arms = variants.iter().map(|v| v.encode_arm(&krate, &names));
    let decode_arms = variants.iter().map(|v| v.decode_arm(&krate, &names));
    let ident = &input.ident;
    let Names {
        variant,
        args,
        call,
        other,
        ..
    } = &names;
    quote! {
        #krate::__virtual_message! { #ident {
            fn __encode(self) -> ::core::result::Result<
                #krate::__private::Encoded,
                #krate::__private::Unsent<Self>,
            > {
                #(#checks)*
                match self {
                    #(#encode_arms)*
                }
            }

            #[allow(unused_mut, unused_variables)]
            fn __decode(
                #variant: &str,
                #args: &[u8],
                #call: ::core::option::Option<&mut #krate::__private::Incoming>,
            ) -> ::core::result::Result<Self, #krate::__private::DecodeError> {
                let mut #call = #call;
                match #variant {
                    #(#decode_arms)*
                    #other => ::core::result::Result::Err(
                        #krate::__private::DecodeError::UnknownVariant {
                            variant: ::std::string::ToString::to_string(#other),
                        },
                    ),
                }
            }
        }}
    }
}

/// The generated code's own variables, named so that no item of the user's is likely to share
/// a name with them (a constant with a variable's name would turn its binding into a pattern;
/// hygiene does not cover items on stable Rust).
struct Names {
    variant: Ident,
    args: Ident,
    call: Ident,
    other: Ident,
    error: Ident,
}

impl Names {
    fn new() -> Self {
        let name = |n: &str| Ident::new(&format!("__overmind_{n}"), Span::mixed_site());
        Self {
            variant: name("variant"),
            args: name("args"),
            call: name("call"),
            other: name("other"),
            error: name("error"),
        }
    }
}

/// `#[virtual_message(crate = "path")]`, for a renamed `overmind-ractor`.
fn crate_path(input: &DeriveInput, errors: &mut Errors) -> syn::Path {
    let mut krate: syn::Path = syn::parse_quote!(::overmind_ractor);
    for attr in input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("virtual_message"))
    {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                let value: syn::LitStr = meta.value()?.parse()?;
                krate = value.parse()?;
                Ok(())
            } else {
                Err(meta.error("the only option is `crate = \"path\"`"))
            }
        });
        if let Err(e) = parsed {
            errors.push_error(e);
        }
    }
    krate
}

/// One variant (or the struct): how its fields are bound, which are encoded, and which is
/// the reply port.
struct Variant {
    /// `None` for a struct.
    ident: Option<Ident>,
    /// What travels as the variant name (a struct's is empty).
    name: String,
    shape: Shape,
    /// Every field's binding, in declaration order.
    bindings: Vec<Ident>,
    /// The fields that travel (all but the reply port): binding and type.
    args: Vec<(Ident, Type)>,
    /// The reply port's binding and type, for a call.
    port: Option<(Ident, Type)>,
}

enum Shape {
    Unit,
    Tuple,
    Named(Vec<Ident>),
}

impl Variant {
    fn new(ident: Option<&Ident>, all: &Fields, errors: &mut Errors) -> Option<Self> {
        let fields: Vec<&syn::Field> = all.iter().collect();
        let shape = match all {
            Fields::Unit => Shape::Unit,
            Fields::Unnamed(_) => Shape::Tuple,
            Fields::Named(_) => Shape::Named(
                fields
                    .iter()
                    .filter_map(|f| f.ident.clone())
                    .collect::<Vec<_>>(),
            ),
        };
        let bindings: Vec<Ident> = (0..fields.len())
            .map(|i| Ident::new(&format!("__overmind_field{i}"), Span::mixed_site()))
            .collect();
        let mut args = Vec::new();
        let mut port = None;
        for (field, binding) in fields.iter().zip(&bindings) {
            if !is_reply_port(&field.ty) {
                args.push((binding.clone(), field.ty.clone()));
            } else if port.is_some() {
                errors.push(
                    field.ty.span(),
                    "a message variant has at most one RpcReplyPort: a call has one reply",
                );
                return None;
            } else {
                port = Some((binding.clone(), field.ty.clone()));
            }
        }
        Some(Self {
            ident: ident.cloned(),
            // `r#type` travels as `type`, as serde names it.
            name: ident.map(|i| i.unraw().to_string()).unwrap_or_default(),
            shape,
            bindings,
            args,
            port,
        })
    }

    /// `Self::V(a, b)`, `Self::V { x: a, y: b }` or `Self::V` (`Self(a, b)` and so on for a
    /// struct): a pattern and an expression.
    fn path_with_fields(&self) -> TokenStream {
        let path = match &self.ident {
            Some(ident) => quote! { Self::#ident },
            None => quote! { Self },
        };
        let bindings = &self.bindings;
        match &self.shape {
            Shape::Unit => path,
            Shape::Tuple => quote! { #path(#(#bindings),*) },
            Shape::Named(names) => quote! { #path { #(#names: #bindings),* } },
        }
    }

    /// A check per field that it can travel, spanned at its type, so that a field that
    /// cannot is reported there (before the errors in the generated code that uses it).
    fn field_checks(&self, krate: &syn::Path) -> Vec<TokenStream> {
        let mut checks: Vec<TokenStream> = self
            .args
            .iter()
            .map(|(_, ty)| quote_spanned! {ty.span()=> #krate::__private::can_travel::<#ty>(); })
            .collect();
        if let Some(reply) = self.port.as_ref().and_then(|(_, ty)| reply_type(ty)) {
            checks
                .push(quote_spanned! {reply.span()=> #krate::__private::can_travel::<#reply>(); });
        }
        checks
    }

    fn encode_arm(&self, krate: &syn::Path, names: &Names) -> TokenStream {
        let Names { args, error, .. } = names;
        let name = &self.name;
        let whole = self.path_with_fields();
        let arg_bindings = self.args.iter().map(|(b, _)| b);
        let encoded = match &self.port {
            Some((port, _)) => quote! { #krate::__private::Encoded::call(#name, #args, #port) },
            None => quote! { #krate::__private::Encoded::cast(#name, #args) },
        };
        quote! {
            #whole => {
                let #args = match #krate::__private::encode_args(&(#(&#arg_bindings,)*)) {
                    ::core::result::Result::Ok(#args) => #args,
                    ::core::result::Result::Err(#error) => {
                        return ::core::result::Result::Err(#krate::__private::Unsent::new(#whole, #error));
                    }
                };
                ::core::result::Result::Ok(#encoded)
            }
        }
    }

    fn decode_arm(&self, krate: &syn::Path, names: &Names) -> TokenStream {
        let Names { args, call, .. } = names;
        let name = &self.name;
        let whole = self.path_with_fields();
        let arg_bindings = self.args.iter().map(|(b, _)| b);
        // Spanned at the field types: one that is not Deserialize is reported there.
        let arg_types = self
            .args
            .iter()
            .map(|(_, ty)| quote_spanned! {ty.span()=> #ty });
        let port = match &self.port {
            Some((port, _)) => quote! {
                let #port = #krate::__private::reply_port(#name, &mut #call)?;
            },
            None => quote! { #krate::__private::no_reply(#name, &#call)?; },
        };
        quote! {
            #name => {
                let (#(#arg_bindings,)*): (#(#arg_types,)*) =
                    #krate::__private::decode_args(#name, #args)?;
                #port
                ::core::result::Result::Ok(#whole)
            }
        }
    }
}

/// Whether a field is a call's reply port: a type named `RpcReplyPort<..>` (with any path).
fn is_reply_port(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "RpcReplyPort"),
        _ => false,
    }
}

/// The `T` of `RpcReplyPort<T>`.
fn reply_type(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let syn::PathArguments::AngleBracketed(args) = &p.path.segments.last()?.arguments else {
        return None;
    };
    args.args.iter().find_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}
