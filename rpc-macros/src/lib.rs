//! The `#[service]` attribute: turns a trait into a typed client and a server dispatcher.

use proc_macro::TokenStream;

/// Placeholder until the macro issue lands: emits the trait unchanged.
#[proc_macro_attribute]
pub fn service(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
