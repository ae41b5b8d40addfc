// A program that only calls compiles without warnings: no implementation, no server.
#![deny(warnings)]

#[rpc_core::service]
trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
}

async fn call(calc: CalculatorClient) -> Result<i64, rpc_core::Error> {
    calc.add(1, 2).await
}

fn main() {
    let _ = call;
}
