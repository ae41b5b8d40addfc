//! Generating the trait with `Send` futures, the `FooClient` stub and the `FooServer` dispatcher.
//!
//! Everything generated names items by absolute path (`::core::…`, `::rpc_core::…`), so it
//! compiles in any module, including one under `#![no_implicit_prelude]` or one that defines its
//! own `Result` or `Box`. The only names taken from the user's scope are the trait and the types
//! written in it.

use std::collections::HashSet;

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ItemTrait, LitInt, Pat, PatWild, ReturnType, TraitItem};

use crate::method_id;
use crate::parse::{Method, Service, cfg_key, plain_name};

/// The expansion of a valid service: the rewritten trait, the client and the server.
pub(crate) fn expand(service: &Service<'_>) -> TokenStream {
    let item = rewrite_trait(service.item);
    let client = client(service);
    let server = server(service);
    quote! {
        #item
        #client
        #server
    }
}

/// The expansion of an invalid service: the errors and the trait alone, rewritten as far as it
/// can be, so that the user's `impl` of it does not add errors of its own.
pub(crate) fn fallback(item: &ItemTrait, error: &syn::Error) -> TokenStream {
    let mut item = rewrite_trait(item);
    // A duplicate is reported once, by `validate`, not again by the compiler.
    let mut seen = HashSet::new();
    item.items.retain(|trait_item| match trait_item {
        TraitItem::Fn(f) => seen.insert((f.sig.ident.unraw(), cfg_key(&f.attrs))),
        _ => true,
    });
    let error = error.to_compile_error();
    quote! {
        #error
        #item
    }
}

/// Rewrites each `async fn m(&self, ..) -> T;` to `fn m(&self, ..) -> impl Future<Output = T> +
/// Send;`, keeping its attributes and docs. Implementations still write `async fn`.
///
/// Anything else is left as written, except what the compiler would reject again after
/// `validate` did: in a declaration without a body, a parameter pattern becomes `_` and a C
/// variadic `...` is dropped.
fn rewrite_trait(item: &ItemTrait) -> ItemTrait {
    let mut item = item.clone();
    for trait_item in &mut item.items {
        let TraitItem::Fn(f) = trait_item else { continue };
        // `#[rpc(...)]` is read by this macro; no such attribute exists for the compiler.
        f.attrs.retain(|attr| !attr.path().is_ident(crate::parse::OPTIONS_ATTR));
        if f.default.is_some() {
            continue;
        }
        for input in &mut f.sig.inputs {
            if let FnArg::Typed(arg) = input {
                if plain_name(&arg.pat).is_none() {
                    let underscore = syn::Token![_](arg.pat.span());
                    *arg.pat =
                        Pat::Wild(PatWild { attrs: Vec::new(), underscore_token: underscore });
                }
            }
        }
        // A comma that preceded the `...` now ends the list, which is fine.
        f.sig.variadic = None;
        let Some(asyncness) = f.sig.asyncness.take() else { continue };
        let output = match &f.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => quote!(#ty),
        };
        // Spanned on `async`, so "future is not `Send`" notes point at the method.
        f.sig.output = syn::parse_quote_spanned! {asyncness.span=>
            -> impl ::core::future::Future<Output = #output> + ::core::marker::Send
        };
    }
    item
}

/// `FooClient`: a typed stub over `rpc_core::Client`, one `async fn` per method.
fn client(service: &Service<'_>) -> TokenStream {
    let vis = &service.item.vis;
    let trait_ident = &service.item.ident;
    let client = format_ident!("{}Client", trait_ident);
    let doc = format!(
        " The client of [`{name}`]: one `async` method per service method.\n\n Each method \
         returns `Result<T, rpc_core::Error>`, where `T` is what the method declares and the \
         error is the framework's (transport, deadline, unknown method, …); a method declared \
         `-> Result<T, E>` gives `Ok(Err(e))` for an application error.\n\n Cheap to clone: \
         clones share one connection, and calls from many tasks are in flight at once. It \
         reconnects on its own (see `rpc_core::Client`); methods marked `#[rpc(idempotent)]` \
         are sent again after a lost connection, others only when the server never started them.",
        name = service.name
    );
    let ids = service.methods.iter().map(|method| {
        let cfgs = attrs_of(&method.item.attrs, "cfg");
        let ident = format_ident!("{}", method_id::const_name(method));
        let (signature, id) = method_id::id(&service.name, method);
        let doc = format!(" The wire id of `{}`: FNV-1a 32 of `{signature}`.", method.name);
        let id = LitInt::new(&format!("0x{:04x}_{:04x}", id >> 16, id & 0xffff), Span::call_site());
        quote! {
            #(#cfgs)*
            #[doc = #doc]
            #vis const #ident: ::core::primitive::u32 = #id;
        }
    });
    let methods = service.methods.iter().map(|method| client_method(service, method));
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        // A program that only serves never constructs the client.
        #[allow(dead_code)]
        #vis struct #client {
            client: ::rpc_core::Client,
        }

        #[allow(dead_code)]
        impl #client {
            #(#ids)*

            /// Connects to a server of this service at `endpoint`, such as `"tcp://127.0.0.1:7878"`
            /// or `"unix:/run/app.sock"`, with the default `rpc_core::ClientConfig`.
            #vis async fn connect(
                endpoint: impl ::rpc_core::ToEndpoint,
            ) -> ::core::result::Result<Self, ::rpc_core::Error> {
                ::rpc_core::Client::connect(endpoint).await.map(Self::new)
            }

            /// Calls this service over an existing connection, which other clients may share.
            #vis fn new(client: ::rpc_core::Client) -> Self {
                Self { client }
            }

            /// A handle on the same connection whose calls fail with
            /// `rpc_core::Error::DeadlineExceeded` after `timeout`.
            #vis fn with_timeout(&self, timeout: ::core::time::Duration) -> Self {
                Self { client: self.client.with_timeout(timeout) }
            }

            /// A handle on the same connection whose calls carry `metadata` (such as an
            /// authentication token), replacing this handle's.
            #vis fn with_metadata(&self, metadata: ::rpc_core::Metadata) -> Self {
                Self { client: self.client.with_metadata(metadata) }
            }

            /// The underlying connection.
            #vis fn client(&self) -> &::rpc_core::Client {
                &self.client
            }

            #(#methods)*
        }
    }
}

fn client_method(service: &Service<'_>, method: &Method<'_>) -> TokenStream {
    let vis = &service.item.vis;
    let ident = &method.item.sig.ident;
    let id = format_ident!("{}", method_id::const_name(method));
    let cfgs = attrs_of(&method.item.attrs, "cfg");
    let docs = attrs_of(&method.item.attrs, "doc");
    // Without docs of its own, the method still gets some, for crates that deny `missing_docs`.
    let docs = if docs.is_empty() {
        let doc = format!(" Calls [`{}::{}`] on the server.", service.name, method.name);
        quote!(#[doc = #doc])
    } else {
        quote!(#(#docs)*)
    };
    let names: Vec<&Ident> = method.args.iter().filter_map(|arg| arg.name).collect();
    let stream_arg = method.stream_arg();
    // A stream parameter takes any `Stream` of its items.
    let types = method.args.iter().enumerate().map(|(i, arg)| match stream_arg {
        Some((at, item)) if at == i => quote! {
            impl ::rpc_core::__private::Stream<Item = #item> + ::core::marker::Send + 'static
        },
        _ => {
            let ty = arg.ty();
            quote!(#ty)
        }
    });
    let output = match method.output {
        None => quote!(()),
        Some(ty) => quote!(#ty),
    };
    let (inputs, output_span) = wire_spans(method);
    // The argument tuple leaves the stream out: its items follow the request.
    let sent = names.iter().enumerate().filter(|(i, _)| stream_arg.is_none_or(|(at, _)| at != *i));
    let sent: Vec<&&Ident> = sent.map(|(_, name)| name).collect();
    let stream = stream_arg.and_then(|(at, _)| names.get(at));
    let call = match (stream, method.stream_output().is_some()) {
        // A one-way method sends its request and waits for no reply; an idempotent one may be
        // sent again after its connection is lost.
        (None, false) if method.options.oneway.is_some() => Ident::new("call_oneway", output_span),
        (None, false) if method.options.idempotent.is_some() => {
            Ident::new("call_idempotent", output_span)
        }
        (None, false) => Ident::new("call", output_span),
        (None, true) => Ident::new("server_stream", output_span),
        (Some(_), false) => Ident::new("client_stream", output_span),
        (Some(_), true) => Ident::new("bidi_stream", output_span),
    };
    let stream = stream.map(|name| quote!(#name,));
    // Spanned on the user's tokens, so that "`T: Serialize` is not satisfied" points at them.
    let call = quote_spanned!(inputs=> self.client.#call(Self::#id, &(#(#sent,)*), #stream).await);
    quote! {
        #(#cfgs)*
        #docs
        #vis async fn #ident(
            &self,
            #(#names: #types),*
        ) -> ::core::result::Result<#output, ::rpc_core::Error> {
            #call
        }
    }
}

/// `FooServer<S>`: decodes a request's arguments and calls `S`'s implementation.
fn server(service: &Service<'_>) -> TokenStream {
    let vis = &service.item.vis;
    let trait_ident = &service.item.ident;
    let name = &service.name;
    let server = format_ident!("{}Server", trait_ident);
    let server_name = server.to_string();
    let client = format_ident!("{}Client", trait_ident);
    // The implementation's type parameter; only a trait named `S` needs another name.
    let s = if service.name == "S" { format_ident!("Impl") } else { format_ident!("S") };
    let doc = format!(
        " Serves [`{name}`] with the implementation `{s}`: pass it to `rpc_core::Server::serve`.\n\n \
         One `{s}` value serves every connection and call, concurrently, through `&self`."
    );
    let names = service.methods.iter().map(|method| {
        let cfgs = attrs_of(&method.item.attrs, "cfg");
        let id = format_ident!("{}", method_id::const_name(method));
        let method_name = &method.name;
        quote! {
            #(#cfgs)*
            #client::#id => ::core::option::Option::Some(#method_name),
        }
    });
    let arms = service.methods.iter().map(|method| server_arm(service, method, &s));
    let listed = service.methods.iter().map(|method| {
        let cfgs = attrs_of(&method.item.attrs, "cfg");
        let id = format_ident!("{}", method_id::const_name(method));
        let method_name = &method.name;
        quote! {
            #(#cfgs)*
            methods.push((#client::#id, #method_name));
        }
    });
    let oneway = service.methods.iter().filter(|m| m.options.oneway.is_some()).map(|method| {
        let cfgs = attrs_of(&method.item.attrs, "cfg");
        let id = format_ident!("{}", method_id::const_name(method));
        quote! {
            #(#cfgs)*
            #client::#id => true,
        }
    });
    quote! {
        #[doc = #doc]
        // A program that only calls never constructs the server.
        #[allow(dead_code)]
        #vis struct #server<#s> {
            inner: ::rpc_core::__private::Arc<#s>,
        }

        #[allow(dead_code)]
        impl<#s> #server<#s> {
            /// Serves `service`.
            #vis fn new(service: #s) -> Self {
                Self::from_arc(::rpc_core::__private::Arc::new(service))
            }

            /// Serves a service value that other code shares.
            #vis fn from_arc(service: ::rpc_core::__private::Arc<#s>) -> Self {
                Self { inner: service }
            }
        }

        impl<#s> ::core::clone::Clone for #server<#s> {
            /// Another handle on the same service value, to serve it on another listener too.
            fn clone(&self) -> Self {
                Self { inner: ::core::clone::Clone::clone(&self.inner) }
            }
        }

        impl<#s> ::core::fmt::Debug for #server<#s> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(#server_name)
            }
        }

        impl<#s> ::rpc_core::__private::Service for #server<#s>
        where
            #s: #trait_ident + ::core::marker::Send + ::core::marker::Sync + 'static,
        {
            fn name(&self) -> &'static ::core::primitive::str {
                #name
            }

            fn method_name(
                &self,
                method: ::core::primitive::u32,
            ) -> ::core::option::Option<&'static ::core::primitive::str> {
                match method {
                    #(#names)*
                    _ => ::core::option::Option::None,
                }
            }

            fn methods(
                &self,
            ) -> ::rpc_core::__private::Vec<(::core::primitive::u32, &'static ::core::primitive::str)> {
                let mut methods = ::rpc_core::__private::Vec::new();
                #(#listed)*
                methods
            }

            fn is_oneway(&self, method: ::core::primitive::u32) -> ::core::primitive::bool {
                #[allow(clippy::match_single_binding)]
                match method {
                    #(#oneway)*
                    _ => false,
                }
            }

            fn call(
                &self,
                method: ::core::primitive::u32,
                body: &[::core::primitive::u8],
                reply: ::rpc_core::__private::Responder,
            ) -> ::core::result::Result<
                ::rpc_core::__private::HandlerFuture,
                ::rpc_core::__private::DispatchError,
            > {
                match method {
                    #(#arms)*
                    _ => ::core::result::Result::Err(
                        ::rpc_core::__private::DispatchError::UnknownMethod,
                    ),
                }
            }
        }
    }
}

/// One `match` arm of `Service::call`: decode the argument tuple before anything is spawned,
/// then run the method and send its value.
fn server_arm(service: &Service<'_>, method: &Method<'_>, s: &Ident) -> TokenStream {
    let trait_ident = &service.item.ident;
    let client = format_ident!("{}Client", trait_ident);
    let cfgs = attrs_of(&method.item.attrs, "cfg");
    let id = format_ident!("{}", method_id::const_name(method));
    let ident = &method.item.sig.ident;
    // The argument types are inferred from the trait method, so no user type is spelled inside
    // this generic impl, where a type named like `S` would be shadowed.
    let args: Vec<Ident> = (0..method.args.len()).map(|i| format_ident!("arg{i}")).collect();
    let stream_arg = method.stream_arg().map(|(at, _)| at);
    let sends_stream = method.stream_output().is_some();
    let decoded = args.iter().enumerate().filter(|(i, _)| Some(*i) != stream_arg);
    let decoded: Vec<&Ident> = decoded.map(|(_, arg)| arg).collect();
    let mut setup = TokenStream::new();
    if method.context.is_some() || stream_arg.is_some() || sends_stream {
        setup.extend(quote!(let mut reply = reply;));
    }
    if stream_arg.is_some() || sends_stream {
        let receives = stream_arg.is_some();
        setup.extend(quote!(reply.open_streams(#receives, #sends_stream);));
    }
    if let Some(at) = stream_arg {
        let arg = &args[at];
        setup.extend(quote!(let #arg = reply.input();));
    }
    let context = match method.context {
        Some(_) => {
            setup.extend(quote!(let context = reply.context();));
            quote!(&context,)
        }
        None => TokenStream::new(),
    };
    let (inputs, output_span) = wire_spans(method);
    // Spanned on the user's tokens, so that "`T: Serialize` is not satisfied" points at them.
    let decode = quote_spanned!(inputs=> ::rpc_core::__private::decode_args(body));
    let run = quote_spanned! {output_span=>
        <#s as #trait_ident>::#ident(&*inner, #context #(#args),*).await
    };
    let answer = if sends_stream {
        quote!(reply.send_stream(#run).await;)
    } else {
        let value = quote_spanned!(output_span=> &#run);
        quote!(reply.send(#value);)
    };
    quote! {
        #(#cfgs)*
        #client::#id => {
            let (#(#decoded,)*) = #decode?;
            let inner = ::core::clone::Clone::clone(&self.inner);
            #setup
            ::core::result::Result::Ok(::rpc_core::__private::Box::pin(async move {
                #answer
            }))
        }
    }
}

/// Where errors about a method's wire types point: its parameter list, and its return type (its
/// name when it has none).
fn wire_spans(method: &Method<'_>) -> (Span, Span) {
    let sig = &method.item.sig;
    let output = method.output.map_or_else(|| sig.ident.span(), |ty| ty.span());
    (sig.paren_token.span.join(), output)
}

/// The attributes of `attrs` whose path is `name` (`doc`, `cfg`).
fn attrs_of<'a>(attrs: &'a [Attribute], name: &str) -> Vec<&'a Attribute> {
    attrs.iter().filter(|attr| attr.path().is_ident(name)).collect()
}
