// Every problem is reported at once, and the user's impl and calls add no errors of their own.
#[rpc_core::service]
pub trait Calculator {
    async fn add(&self, a: &i64, b: i64) -> i64;
    fn sub(&self, a: i64, b: i64) -> i64;
    async fn neg(&mut self, a: i64) -> i64;
    async fn mul(&self, a: i64, b: i64) -> i64;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: &i64, b: i64) -> i64 {
        a + b
    }
    fn sub(&self, a: i64, b: i64) -> i64 {
        a - b
    }
    async fn neg(&mut self, a: i64) -> i64 {
        -a
    }
    async fn mul(&self, a: i64, b: i64) -> i64 {
        a * b
    }
}

async fn use_it(calc: &Calc) -> i64 {
    calc.mul(2, 3).await + calc.sub(1, 1)
}

fn main() {
    let _ = use_it;
}
