//! Method ids: the FNV-1a 32 hash of `{Service}.{method}({args})->{ret}`, as WIRE.md specifies,
//! computed here independently of the macro.

use rpc_core::Service;
use serde::{Deserialize, Serialize};

/// FNV-1a, 32 bits, straight from the definition.
fn fnv1a32(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[derive(Debug, Serialize, Deserialize)]
enum CalcError {
    DivideByZero,
}

#[rpc_core::service]
trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    async fn reset(&self);
    async fn sum(&self, numbers: Vec<i64>) -> i64;
    async fn whoami(&self, ctx: &rpc_core::Context) -> String;
    async fn r#type(&self) -> u8;
}

/// The same service written with odd spacing, line breaks and an explicit `-> ()`.
#[rustfmt::skip]
mod spaced {
    use super::CalcError;

    #[rpc_core::service]
    pub(crate) trait Calculator {
        async fn add(&self, a : i64 , b:i64)->i64;
        async fn div(&self, a: i64, b: i64) -> Result <
            i64 ,
            CalcError
        >;
        async fn reset(&self) -> ( );
        async fn sum(&self, numbers: Vec < i64 >) -> i64;
    }
}

/// The same service spelling `Vec` by its full path.
mod full_paths {
    #[rpc_core::service]
    pub(crate) trait Calculator {
        async fn sum(&self, numbers: std::vec::Vec<i64>) -> i64;
    }
}

#[test]
fn the_id_is_fnv1a_of_the_spelled_signature() {
    assert_eq!(CalculatorClient::ADD_ID, fnv1a32("Calculator.add(i64,i64)->i64"));
    assert_eq!(CalculatorClient::DIV_ID, fnv1a32("Calculator.div(i64,i64)->Result<i64,CalcError>"));
    assert_eq!(CalculatorClient::SUM_ID, fnv1a32("Calculator.sum(Vec<i64>)->i64"));
}

#[test]
fn ids_are_pinned() {
    // A change here is a wire change: old peers would no longer find the method.
    assert_eq!(fnv1a32("Calculator.add(i64,i64)->i64"), 0xe8fa_7895);
    assert_eq!(CalculatorClient::ADD_ID, 0xe8fa_7895);
}

#[test]
fn an_omitted_return_type_is_spelled_unit() {
    assert_eq!(CalculatorClient::RESET_ID, fnv1a32("Calculator.reset()->()"));
    assert_eq!(spaced::CalculatorClient::RESET_ID, CalculatorClient::RESET_ID);
}

#[test]
fn the_call_context_is_not_part_of_the_signature() {
    assert_eq!(CalculatorClient::WHOAMI_ID, fnv1a32("Calculator.whoami()->String"));
}

#[test]
fn raw_identifiers_are_spelled_without_their_prefix() {
    assert_eq!(CalculatorClient::TYPE_ID, fnv1a32("Calculator.type()->u8"));
}

#[test]
fn whitespace_does_not_change_an_id() {
    assert_eq!(spaced::CalculatorClient::ADD_ID, CalculatorClient::ADD_ID);
    assert_eq!(spaced::CalculatorClient::DIV_ID, CalculatorClient::DIV_ID);
    assert_eq!(spaced::CalculatorClient::SUM_ID, CalculatorClient::SUM_ID);
}

#[test]
fn spelling_a_type_differently_changes_the_id() {
    assert_eq!(
        full_paths::CalculatorClient::SUM_ID,
        fnv1a32("Calculator.sum(std::vec::Vec<i64>)->i64")
    );
    assert_ne!(full_paths::CalculatorClient::SUM_ID, CalculatorClient::SUM_ID);
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_div(b).ok_or(CalcError::DivideByZero)
    }
    async fn reset(&self) {}
    async fn sum(&self, numbers: Vec<i64>) -> i64 {
        numbers.iter().sum()
    }
    async fn whoami(&self, ctx: &rpc_core::Context) -> String {
        ctx.peer().to_string()
    }
    async fn r#type(&self) -> u8 {
        0
    }
}

#[test]
fn the_server_names_the_service_and_its_methods_by_id() {
    let server = CalculatorServer::new(Calc);
    assert_eq!(server.name(), "Calculator");
    assert_eq!(server.method_name(CalculatorClient::ADD_ID), Some("add"));
    assert_eq!(server.method_name(CalculatorClient::TYPE_ID), Some("type"));
    assert_eq!(server.method_name(fnv1a32("Calculator.add(i32,i32)->i32")), None);
    assert_eq!(format!("{:?}", server.clone()), "CalculatorServer");
}
