// What the macro accepts, in a crate that denies warnings and missing docs.
#![deny(warnings, missing_docs, missing_debug_implementations)]
//! A documented service.

use std::collections::HashMap;

/// Anything a service method may take or return: owned serde types.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
}

/// Supertraits and a `where` clause without parameters are kept as written.
#[rpc_core::service]
pub trait Everything: Send + Sync
where
    Self: 'static,
{
    /// No arguments, no result.
    async fn ping(&self);
    /// The call context first, then arguments.
    async fn whoami(&self, ctx: &rpc_core::Context, prefix: String) -> String;
    /// Nested generic types, paths, tuples, arrays and `'static`.
    async fn mixed(
        &self,
        map: HashMap<String, Vec<Option<Entry>>>,
        pair: (u8, std::string::String),
        bytes: [u8; 4],
        name: std::borrow::Cow<'static, str>,
    ) -> Result<Vec<Entry>, String>;
    /// A raw identifier.
    async fn r#type(&self) -> u8;
    /// Only one of two same-named methods exists in any build.
    #[cfg(unix)]
    async fn platform(&self) -> String;
    /// Only one of two same-named methods exists in any build.
    #[cfg(not(unix))]
    async fn platform(&self) -> String;
    /// Never compiled, so its unknown type does not matter.
    #[cfg(any())]
    async fn never(&self, x: NoSuchType);
    #[allow(missing_docs)] // The client method gets docs of its own.
    async fn undocumented(&self) -> bool;
    /// One-way, with the call context (to read metadata).
    #[rpc(oneway)]
    async fn note(&self, ctx: &rpc_core::Context, text: String);
    /// One-way, with `()` spelled out.
    #[rpc(oneway)]
    async fn tick(&self) -> ();
}

fn main() {
    // The ids are distinct constants of the client.
    let ids = [
        EverythingClient::PING_ID,
        EverythingClient::WHOAMI_ID,
        EverythingClient::MIXED_ID,
        EverythingClient::TYPE_ID,
        EverythingClient::PLATFORM_ID,
        EverythingClient::UNDOCUMENTED_ID,
        EverythingClient::NOTE_ID,
        EverythingClient::TICK_ID,
    ];
    for (i, id) in ids.iter().enumerate() {
        assert!(!ids[..i].contains(id));
    }
}
