//! Reading a `#[service]` trait into the model the other modules work on, as written.
//!
//! Nothing is rejected here except input that is not a trait at all: every unsupported shape is
//! kept in the model so that `validate` can report it, spanned on the user's token, together
//! with every other problem.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, ItemTrait, Pat, PatType, Receiver, ReturnType, TraitItem};
use syn::{TraitItemFn, Type, TypeReference};

/// A service trait: the trait as written and its methods.
pub(crate) struct Service<'a> {
    /// The trait as written.
    pub(crate) item: &'a ItemTrait,
    /// The trait's name without a raw `r#` prefix, as used on the wire.
    pub(crate) name: String,
    /// The `fn` items, in declaration order.
    pub(crate) methods: Vec<Method<'a>>,
    /// Every item that is not a `fn`: associated types, consts, macros.
    pub(crate) others: Vec<&'a TraitItem>,
}

/// One `fn` of the trait.
pub(crate) struct Method<'a> {
    /// The method as written.
    pub(crate) item: &'a TraitItemFn,
    /// The method's name without a raw `r#` prefix, as used on the wire.
    pub(crate) name: String,
    /// The method's `#[cfg]` attributes, spelled: see [`cfg_key`].
    pub(crate) cfg: String,
    /// The receiver, if the first parameter is some form of `self`.
    pub(crate) receiver: Option<&'a Receiver>,
    /// The call-context parameter: a first parameter after the receiver of type
    /// `&Context` (see [`is_context`]). Not sent on the wire.
    pub(crate) context: Option<&'a PatType>,
    /// The parameters sent on the wire, in order.
    pub(crate) args: Vec<Arg<'a>>,
    /// The declared return type; `None` for `()` left implicit.
    pub(crate) output: Option<&'a Type>,
    /// What `#[rpc(...)]` attributes on the method say.
    pub(crate) options: Options,
}

impl Method<'_> {
    /// The parameter that is a stream of items from the client, if one is (the first).
    pub(crate) fn stream_arg(&self) -> Option<(usize, &Type)> {
        self.args.iter().enumerate().find_map(|(i, arg)| streaming_item(arg.ty()).map(|t| (i, t)))
    }

    /// The item type of a `-> Streaming<T>` return type.
    pub(crate) fn stream_output(&self) -> Option<&Type> {
        self.output.and_then(streaming_item)
    }
}

/// Whether a type is spelled as a stream of items: a path ending in `Streaming`.
pub(crate) fn is_streaming(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none()
        && path.path.segments.last().is_some_and(|s| s.ident == "Streaming"))
}

/// The item type `T` of a type spelled `Streaming<T>` (any path ending so), if it is one with
/// exactly one type argument.
pub(crate) fn streaming_item(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last().filter(|_| is_streaming(ty))?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return None };
    match args.args.iter().collect::<Vec<_>>()[..] {
        [syn::GenericArgument::Type(item)] => Some(item),
        _ => None,
    }
}

/// The options of a method, from `#[rpc(option, ...)]` attributes; each is the span of where
/// it was given, if it was.
#[derive(Default)]
pub(crate) struct Options {
    /// `#[rpc(idempotent)]`: running the call twice does no harm, so a client may send it
    /// again after losing the connection it was sent on.
    pub(crate) idempotent: Option<Span>,
    /// `#[rpc(oneway)]`: the caller wants no reply; the server sends none.
    pub(crate) oneway: Option<Span>,
    /// What could not be read, for `validate` to report.
    pub(crate) errors: Vec<syn::Error>,
}

/// The path of the attribute that carries a method's options.
pub(crate) const OPTIONS_ATTR: &str = "rpc";

/// A parameter sent on the wire.
pub(crate) struct Arg<'a> {
    /// The parameter as written.
    pub(crate) pat_type: &'a PatType,
    /// Its name, when the pattern is a plain identifier (no `mut`, `ref` or `@`).
    pub(crate) name: Option<&'a Ident>,
}

impl Arg<'_> {
    /// The parameter's type.
    pub(crate) fn ty(&self) -> &Type {
        &self.pat_type.ty
    }
}

/// Parses the item, which must be a trait; nothing else is checked here.
pub(crate) fn parse_item(item: TokenStream) -> syn::Result<ItemTrait> {
    match syn::parse2::<syn::Item>(item)? {
        syn::Item::Trait(item) => Ok(item),
        other => Err(syn::Error::new_spanned(
            other,
            "#[service] applies to a trait: write `pub trait Name { async fn method(&self, ...) -> T; }`",
        )),
    }
}

/// Checks that the attribute was given no arguments: `#[service]`, not `#[service(...)]`.
pub(crate) fn parse_attr(attr: TokenStream) -> syn::Result<()> {
    if attr.is_empty() {
        return Ok(());
    }
    Err(syn::Error::new_spanned(attr, "#[service] takes no arguments: write `#[service]`"))
}

/// Reads a trait into the model.
pub(crate) fn service(item: &ItemTrait) -> Service<'_> {
    let mut methods = Vec::new();
    let mut others = Vec::new();
    for trait_item in &item.items {
        match trait_item {
            TraitItem::Fn(f) => methods.push(method(f)),
            other => others.push(other),
        }
    }
    Service { item, name: item.ident.unraw().to_string(), methods, others }
}

fn method(item: &TraitItemFn) -> Method<'_> {
    let mut inputs = item.sig.inputs.iter().peekable();
    // syn only accepts a receiver as the first parameter.
    let receiver = match inputs.peek() {
        Some(FnArg::Receiver(r)) => {
            inputs.next();
            Some(r)
        }
        _ => None,
    };
    let mut typed = inputs.filter_map(|arg| match arg {
        FnArg::Typed(t) => Some(t),
        FnArg::Receiver(_) => None,
    });
    let mut args: Vec<Arg<'_>> = Vec::new();
    let mut context = None;
    if let Some(first) = typed.next() {
        if matches!(&*first.ty, Type::Reference(reference) if is_context(reference)) {
            context = Some(first);
        } else {
            args.push(arg(first));
        }
    }
    args.extend(typed.map(arg));
    let output = match &item.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(&**ty),
    };
    let name = item.sig.ident.unraw().to_string();
    let options = options(&item.attrs);
    Method { item, name, cfg: cfg_key(&item.attrs), receiver, context, args, output, options }
}

/// Reads every `#[rpc(...)]` attribute of a method.
fn options(attrs: &[Attribute]) -> Options {
    let mut options = Options::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident(OPTIONS_ATTR)) {
        let read = attr.parse_nested_meta(|meta| {
            let slot = if meta.path.is_ident("idempotent") {
                &mut options.idempotent
            } else if meta.path.is_ident("oneway") {
                &mut options.oneway
            } else {
                return Err(
                    meta.error("unknown option: write `#[rpc(idempotent)]` or `#[rpc(oneway)]`")
                );
            };
            if slot.replace(meta.path.span()).is_some() {
                return Err(meta.error("this option is given twice: remove one"));
            }
            Ok(())
        });
        if let Err(error) = read {
            options.errors.push(error);
        }
    }
    options
}

fn arg(pat_type: &PatType) -> Arg<'_> {
    Arg { pat_type, name: plain_name(&pat_type.pat) }
}

/// The name a parameter pattern binds, if it is a plain identifier (no `mut`, `ref` or `@`).
pub(crate) fn plain_name(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(p) if p.by_ref.is_none() && p.mutability.is_none() && p.subpat.is_none() => {
            Some(&p.ident)
        }
        _ => None,
    }
}

/// A method's `#[cfg]` attributes, spelled. Two methods whose keys differ may never be compiled
/// together, so clashes between them are not errors.
pub(crate) fn cfg_key(attrs: &[Attribute]) -> String {
    let cfgs = attrs.iter().filter(|attr| attr.path().is_ident("cfg"));
    cfgs.map(|attr| attr.to_token_stream().to_string()).collect()
}

/// Whether a reference type names the call context: a reference to a path ending in `Context`,
/// such as `&Context` or `&rpc_core::Context`.
///
/// A macro cannot resolve names, so this goes by spelling; a reference is never a valid wire
/// argument, so nothing that could be one is taken for the context. If the path names some
/// other `Context`, the generated server fails to type-check where it passes the context.
pub(crate) fn is_context(reference: &TypeReference) -> bool {
    let Type::Path(path) = &*reference.elem else { return false };
    path.qself.is_none()
        && path.path.segments.last().is_some_and(|s| s.ident == "Context" && s.arguments.is_none())
}
