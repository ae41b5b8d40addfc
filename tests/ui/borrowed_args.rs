// Arguments and results are decoded into owned values.
use std::borrow::Cow;

#[rpc_core::service]
pub trait Files {
    async fn read(&self, path: &str) -> Vec<u8>;
    async fn write(&self, path: String, data: &[u8]);
    async fn stat(&self, meta: &Meta) -> u64;
    async fn check(&self, items: &mut std::collections::HashMap<String, Vec<u8>>, size: &[[u8; 4]]);
    async fn name(&self) -> &'static str;
    async fn rename(&self, from: Cow<'_, str>, to: Cow<'static, str>);
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Meta;

fn main() {}
