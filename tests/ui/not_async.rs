// A service method must be `async fn`; returning `impl Future` by hand is not needed.
use std::future::Future;

#[rpc_core::service]
pub trait Calculator {
    fn add(&self, a: i64, b: i64) -> i64;
    fn sub(&self, a: i64, b: i64) -> impl Future<Output = i64> + Send;
}

struct Calc;

impl Calculator for Calc {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    fn sub(&self, a: i64, b: i64) -> impl Future<Output = i64> + Send {
        async move { a - b }
    }
}

fn main() {}
