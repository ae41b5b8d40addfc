//! Checks a parsed service against what the macro supports, reporting every problem at once.
//!
//! Each error is spanned on the user's offending token and says what to write instead.

use std::collections::HashMap;

use proc_macro2::Span;
use quote::ToTokens;
use syn::visit::{self, Visit};
use syn::{Lifetime, PatType, TraitItem, Type, TypeImplTrait, TypeInfer, TypePath, TypeReference};

use crate::method_id::{self, const_name};
use crate::parse::{Method, Service, is_context, is_streaming, plain_name};
use crate::streams;

/// Inherent items of the generated client besides the service's methods; a service method of
/// the same name would collide with them (`clone` would hide `Clone::clone`).
const CLIENT_ITEMS: [&str; 5] = ["connect", "new", "with_timeout", "client", "clone"];

/// Returns every problem with `service`, combined into one error, or `Ok` if it can be expanded.
pub(crate) fn validate(service: &Service<'_>) -> syn::Result<()> {
    let mut errors = Errors::default();
    check_trait(service, &mut errors);
    for method in &service.methods {
        check_method(method, &mut errors);
    }
    check_names(service, &mut errors);
    check_ids(service, &mut errors);
    errors.finish()
}

fn check_trait(service: &Service<'_>, errors: &mut Errors) {
    let item = service.item;
    if let Some(unsafety) = &item.unsafety {
        errors.push(unsafety, "a service trait cannot be `unsafe`: remove `unsafe`");
    }
    if let Some(auto) = &item.auto_token {
        errors.push(auto, "a service trait cannot be an auto trait: remove `auto`");
    }
    if !item.generics.params.is_empty() {
        errors.push(
            &item.generics,
            "a service trait cannot be generic: the server decodes arguments into concrete \
             types; remove the parameters and use concrete types in the methods",
        );
    }
    for other in &service.others {
        let what = match other {
            TraitItem::Const(_) => "an associated const",
            TraitItem::Type(_) => "an associated type",
            TraitItem::Macro(_) => "a macro invocation",
            _ => "this item",
        };
        errors.push(
            other,
            format!(
                "a service trait can only contain `async fn` methods, not {what}: \
                 move it out of the trait"
            ),
        );
    }
    if service.methods.is_empty() {
        errors.push(
            &item.ident,
            "a service needs at least one method: add `async fn name(&self) -> T;`",
        );
    }
}

fn check_method(method: &Method<'_>, errors: &mut Errors) {
    for error in &method.options.errors {
        errors.add(error.clone());
    }
    let sig = &method.item.sig;
    if let Some(constness) = &sig.constness {
        errors.push(constness, "a service method cannot be `const`: remove `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(unsafety, "a service method cannot be `unsafe`: remove `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.push(abi, "a service method cannot declare an ABI: remove it");
    }
    let is_async = sig.asyncness.is_some();
    if !is_async {
        errors.push(
            sig.fn_token,
            format!(
                "service methods are `async`: write `async fn {}` (the macro makes the future \
                 `Send`, so do not return `impl Future` yourself)",
                sig.ident
            ),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.push(
            &sig.generics,
            "a service method cannot be generic: the server decodes arguments into concrete \
             types; remove the parameters and use concrete types",
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(where_clause, "a service method cannot have a `where` clause: remove it");
    }
    check_receiver(method, errors);
    if let Some(variadic) = &sig.variadic {
        errors.push(variadic, "a service method cannot be variadic: take a `Vec<T>` instead");
    }
    if let Some(context) = method.context {
        check_context(context, errors);
    }
    streams::check_streams(method, errors);
    for arg in &method.args {
        if let Some(attr) = arg.pat_type.attrs.first() {
            errors.push(attr, "attributes on service method parameters are not supported");
        }
        if arg.name.is_none() {
            errors.push(
                &arg.pat_type.pat,
                "service method parameters need a plain name, like `value: T`; destructure or \
                 add `mut` in the impl instead",
            );
        }
        if let Some(ty) = streams::wire_type(arg.ty()) {
            TypeCheck { position: Position::Arg, errors: &mut *errors }.visit_type(ty);
        }
    }
    // The return type of a non-async method is already reported, and often `impl Future`.
    if let (Some(output), true) = (method.output, is_async) {
        if let Some(ty) = streams::wire_type(output) {
            TypeCheck { position: Position::Return, errors: &mut *errors }.visit_type(ty);
        }
    }
    check_oneway(method, errors);
    if let Some(body) = &method.item.default {
        errors.push(
            body,
            "a service method cannot have a default body: its future must be `Send`, which a \
             default body cannot promise for every implementation; end the declaration with \
             `;` and write the body in the impl",
        );
    }
}

/// A one-way method sends no reply, so it returns `()`; and, as nothing tells its caller that
/// it ran, it is not also `idempotent` (which is about sending it again after a lost reply).
fn check_oneway(method: &Method<'_>, errors: &mut Errors) {
    let Some(oneway) = method.options.oneway else { return };
    let returns_unit = match method.output {
        None => true,
        Some(syn::Type::Tuple(tuple)) => tuple.elems.is_empty(),
        Some(_) => false,
    };
    if !returns_unit {
        let output = method.output.map_or(oneway, syn::spanned::Spanned::span);
        errors.push_span(
            output,
            format!(
                "a `#[rpc(oneway)]` method returns nothing: its caller gets no reply; remove \
                 the return type of `{}`, or remove `oneway` to get one",
                method.name
            ),
        );
    }
    if let Some(idempotent) = method.options.idempotent {
        errors.push_span(
            idempotent,
            "`idempotent` and `oneway` do not go together: a one-way call is never sent again, \
             as its caller never learns whether it arrived; remove one",
        );
    }
}

fn check_receiver(method: &Method<'_>, errors: &mut Errors) {
    let sig = &method.item.sig;
    let Some(receiver) = method.receiver else {
        errors.push_span(
            sig.paren_token.span.join(),
            "a service method takes `&self` first: write `(&self, ...)`",
        );
        return;
    };
    let message = match (&receiver.reference, &receiver.mutability, &receiver.colon_token) {
        (_, _, Some(_)) => {
            "write `&self`: the server holds one service value in an `Arc` and calls every \
             method on a shared reference to it"
        }
        (None, _, None) => {
            "write `&self`: one service value serves every call, so a method cannot take it \
             by value"
        }
        (Some(_), Some(_), None) => {
            "write `&self`: calls run concurrently on one shared service value; keep mutable \
             state behind a `Mutex` or an atomic"
        }
        (Some((_, Some(_))), None, None) => "write `&self`, without a lifetime",
        (Some((_, None)), None, None) => return,
    };
    errors.push(receiver, message);
}

/// The call context must be `&Context`: a shared borrow the server lends for the call.
fn check_context(context: &PatType, errors: &mut Errors) {
    if let Type::Reference(reference) = &*context.ty {
        if let Some(lifetime) = &reference.lifetime {
            errors.push(lifetime, "write `&Context`, without a lifetime");
        }
        if let Some(mutability) = &reference.mutability {
            errors.push(mutability, "the call context is shared: write `&Context`");
        }
    }
    if let Some(attr) = context.attrs.first() {
        errors.push(attr, "attributes on service method parameters are not supported");
    }
    if plain_name(&context.pat).is_none() {
        errors.push(&context.pat, "name the call context, like `ctx: &Context`");
    }
}

/// Method names must be unique and must not collide with the client's own items.
fn check_names(service: &Service<'_>, errors: &mut Errors) {
    let client = format!("{}Client", service.name);
    for (i, method) in service.methods.iter().enumerate() {
        let (ident, name) = (&method.item.sig.ident, &method.name);
        if name == "clone" {
            errors.push(
                ident,
                format!(
                    "a method named `clone` would hide `Clone::clone` on the generated \
                     `{client}`: rename the method"
                ),
            );
        } else if CLIENT_ITEMS.contains(&name.as_str()) {
            errors.push(
                ident,
                format!("`{name}` is taken by the generated `{client}::{name}`: rename the method"),
            );
        }
        let compiled_together = |other: &&Method<'_>| other.cfg == method.cfg;
        // Each clash between two methods is reported once, on the later one.
        for other in service.methods[..i].iter().filter(compiled_together) {
            if other.name == *name {
                errors.push(
                    ident,
                    format!("duplicate method `{name}`: each method needs its own name"),
                );
            } else if const_name(other) == const_name(method) {
                errors.push(
                    ident,
                    format!(
                        "`{}` and `{name}` would both generate the id constant `{client}::{}`: \
                         rename one",
                        other.name,
                        const_name(method)
                    ),
                );
            }
        }
        let mut compiled = service.methods.iter().filter(compiled_together);
        if let Some(other) = compiled.find(|other| const_name(other) == *name) {
            errors.push(
                ident,
                format!(
                    "`{name}` is taken by the generated id constant of `{}`, \
                     `{client}::{name}`: rename the method",
                    other.name
                ),
            );
        }
    }
}

/// Two methods of one service must not share an id: the server could not tell them apart.
fn check_ids(service: &Service<'_>, errors: &mut Errors) {
    let mut seen: HashMap<(u32, String), (String, String)> = HashMap::new();
    for method in &service.methods {
        let (signature, id) = method_id::id(&service.name, method);
        let key = (id, method.cfg.clone());
        match seen.get(&key) {
            // Same name: reported as a duplicate method.
            Some((name, _)) if *name == method.name => {}
            Some((_, first)) => errors.push(
                &method.item.sig.ident,
                format!(
                    "method id collision: `{signature}` and `{first}` both hash to {id:#010x}; \
                     rename this method"
                ),
            ),
            None => {
                seen.insert(key, (method.name.clone(), signature));
            }
        }
    }
}

/// Where a type appears, which decides what it may contain and how an error reads.
#[derive(Clone, Copy)]
enum Position {
    Arg,
    Return,
}

impl Position {
    /// Why the type must own its data.
    fn decoded(self) -> &'static str {
        match self {
            Position::Arg => "arguments are decoded into owned values",
            Position::Return => "the result is decoded into an owned value",
        }
    }
}

/// Finds what cannot cross the wire in a type: borrows, `impl Trait`, `Self`, `_`.
struct TypeCheck<'a> {
    position: Position,
    errors: &'a mut Errors,
}

impl<'ast> Visit<'ast> for TypeCheck<'_> {
    fn visit_type_reference(&mut self, reference: &'ast TypeReference) {
        let decoded = self.position.decoded();
        let message = if matches!(self.position, Position::Arg) && is_context(reference) {
            "the call context must be the first parameter after `&self`".to_owned()
        } else {
            let owned = match &*reference.elem {
                Type::Path(p) if p.path.is_ident("str") => "String".to_owned(),
                Type::Slice(slice) => format!("Vec<{}>", spell(&slice.elem)),
                elem => spell(elem),
            };
            format!("{decoded}: use `{owned}` instead of `{}`", spell(reference))
        };
        self.errors.push(reference, message);
    }

    fn visit_lifetime(&mut self, lifetime: &'ast Lifetime) {
        if lifetime.ident != "static" {
            let decoded = self.position.decoded();
            self.errors.push(
                lifetime,
                format!(
                    "{decoded}, which cannot borrow: use `'static` or an owned type instead \
                     of `{lifetime}`"
                ),
            );
        }
    }

    fn visit_type_impl_trait(&mut self, impl_trait: &'ast TypeImplTrait) {
        let message = match self.position {
            Position::Arg => {
                "`impl Trait` cannot be decoded: the server needs a concrete argument type; \
                 write one, like `String` or `Vec<T>`"
            }
            Position::Return => {
                "`impl Trait` cannot be decoded: the client needs a concrete result type; \
                 write one (`async fn` already makes the future)"
            }
        };
        self.errors.push(impl_trait, message);
    }

    fn visit_type_infer(&mut self, infer: &'ast TypeInfer) {
        self.errors.push(infer, "write the type: `_` cannot be inferred in a service method");
    }

    fn visit_type_path(&mut self, path: &'ast TypePath) {
        if is_streaming(&Type::Path(path.clone())) {
            self.errors.push(
                path,
                "`Streaming<T>` is a whole parameter type or the whole return type, never inside \
                 another type: write `items: Streaming<T>` or `-> Streaming<T>` (for items that \
                 may fail, `Streaming<Result<T, E>>`)",
            );
            return;
        }
        if path.qself.is_none() && path.path.segments.first().is_some_and(|s| s.ident == "Self") {
            self.errors.push(
                path,
                "`Self` is the server's type, unknown to the client: name the type instead",
            );
            return;
        }
        visit::visit_type_path(self, path);
    }
}

/// A type as a user would write it, near enough for a message: `Vec<u8>`, not `Vec < u8 >`.
fn spell(ty: &impl ToTokens) -> String {
    let mut text = ty.to_token_stream().to_string();
    for (spaced, tight) in [(" <", "<"), ("< ", "<"), (" >", ">"), (" ,", ","), (" ::", "::")] {
        text = text.replace(spaced, tight);
    }
    text.replace(":: ", "::").replace("& ", "&").replace(" ;", ";")
}

/// Errors in the order found, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.add(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn push_span(&mut self, span: Span, message: impl std::fmt::Display) {
        self.add(syn::Error::new(span, message));
    }

    fn add(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}
