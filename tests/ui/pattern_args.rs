// Parameters are named: the client method takes them by name.
#[rpc_core::service]
pub trait Geometry {
    async fn area(&self, (w, h): (u32, u32)) -> u32;
    async fn scale(&self, _: u32) -> u32;
    async fn shift(&self, mut by: i32) -> i32;
}

struct Geo;

impl Geometry for Geo {
    async fn area(&self, (w, h): (u32, u32)) -> u32 {
        w * h
    }
    async fn scale(&self, _: u32) -> u32 {
        1
    }
    async fn shift(&self, mut by: i32) -> i32 {
        by += 1;
        by
    }
}

fn main() {}
