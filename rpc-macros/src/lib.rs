//! The `#[service]` attribute: turns a trait into a typed client and a server dispatcher.
//!
//! # Layout
//! - `parse`: reads the trait into a model, as written.
//! - `validate`: rejects what the macro does not support, every problem at once.
//! - `streams`: the checks of `Streaming<T>` parameters and return types.
//! - `method_id`: the wire id of a method, and the exact rule that derives it.
//! - `expand`: generates the trait with `Send` futures, `FooClient` and `FooServer`.

mod expand;
mod method_id;
mod parse;
mod streams;
mod validate;

use proc_macro::TokenStream;

/// Turns a trait of `async fn`s into an RPC service: a typed client and a server dispatcher.
///
/// ```ignore
/// #[rpc_core::service]
/// pub trait Calculator {
///     /// Adds two numbers.
///     async fn add(&self, a: i64, b: i64) -> i64;
///     /// Divides `a` by `b`.
///     async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
/// }
/// ```
///
/// generates, next to the trait and with its visibility:
///
/// - the trait itself, each `async fn m(&self, ..) -> T` declared as
///   `fn m(&self, ..) -> impl Future<Output = T> + Send`, so that handlers can run on a
///   multi-thread runtime. Implement it with plain `async fn`s.
/// - `CalculatorClient`: `connect(endpoint)`, `new(rpc_core::Client)`, `with_timeout(duration)`,
///   `client()`, and one `async fn add(&self, a: i64, b: i64) -> Result<i64, rpc_core::Error>`
///   per method, with the method's docs. A method declared `-> Result<T, E>` returns
///   `Result<Result<T, E>, rpc_core::Error>`: application errors are `Ok(Err(e))`.
///   Its constants `ADD_ID`, `DIV_ID` are the methods' wire ids.
/// - `CalculatorServer<S>`: `new(service)`, `from_arc(Arc<S>)`, and
///   `impl rpc_core::Service for CalculatorServer<S> where S: Calculator + Send + Sync + 'static`;
///   pass it to `rpc_core::Server::serve`. One `S` serves every call, through `&self`.
///
/// # Methods
///
/// Every item of the trait is an `async fn` without a body that takes `&self`, then named
/// parameters of owned, concrete types that implement `serde::Serialize` and
/// `serde::de::DeserializeOwned`, and returns such a type (or nothing). A first parameter
/// `ctx: &rpc_core::Context` after `&self` gives the handler its call context; it is not sent, and
/// the client method does not have it. Anything else is a compile error that says what to write
/// instead.
///
/// # Streams
///
/// A method may return `rpc_core::Streaming<T>` (server streaming), take one parameter of that
/// type (client streaming), or both (bidirectional). The client method then returns
/// `Result<Streaming<T>, rpc_core::Error>` for a stream it receives, and takes
/// `impl Stream<Item = T> + Send + 'static` for one it sends; the handler returns and takes
/// `Streaming<T>`. A `Streaming` inside another type, a second stream parameter, one without
/// an item type, or a stream in a `#[rpc(oneway)]` method is a compile error.
///
/// # Method ids
///
/// A method is named on the wire by the FNV-1a 32-bit hash of the UTF-8 string
/// `{Service}.{method}({ArgType1},{ArgType2},...)->{ReturnType}`, each type spelled as written in
/// the trait with all whitespace removed, `()` for an omitted return type, the context parameter
/// left out, and names without a raw `r#` prefix: `Calculator.add(i64,i64)->i64`. Adding or
/// reordering methods keeps every other id; changing a signature changes that method's id, so an
/// old peer gets "unknown method" instead of misread bytes. Two methods of one service with the
/// same id are a compile error. WIRE.md has the full rule.
#[proc_macro_attribute]
pub fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let trait_item = match parse::parse_item(item.clone()) {
        Ok(trait_item) => trait_item,
        Err(error) => {
            // Not a trait: keep the item, so the error is the only one.
            let error = error.to_compile_error();
            return quote::quote!(#error #item).into();
        }
    };
    let service = parse::service(&trait_item);
    let errors = match (parse::parse_attr(attr.into()), validate::validate(&service)) {
        (Ok(()), Ok(())) => return expand::expand(&service).into(),
        (Err(mut first), Err(rest)) => {
            first.combine(rest);
            first
        }
        (Err(error), Ok(())) | (Ok(()), Err(error)) => error,
    };
    expand::fallback(&trait_item, &errors).into()
}
