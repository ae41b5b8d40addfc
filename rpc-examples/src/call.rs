//! [`Call`]: one calculator call with its arguments, parsed from a command line or printed.

use std::fmt;

use crate::{CalcError, CalculatorClient};

/// One call of a [`Calculator`](crate::Calculator) method with its arguments.
///
/// `calculator-client` parses it from its command line (it is a clap subcommand, so each
/// method checks its own arity); the demo prints it as `add(2, 3)`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Call {
    /// Adds A and B
    Add {
        /// The first addend
        #[arg(allow_negative_numbers = true)]
        a: i64,
        /// The second addend
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// Subtracts B from A
    Sub {
        /// The number to subtract from
        #[arg(allow_negative_numbers = true)]
        a: i64,
        /// The number to subtract
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// Multiplies A by B
    Mul {
        /// The first factor
        #[arg(allow_negative_numbers = true)]
        a: i64,
        /// The second factor
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// Divides A by B, rounding toward zero
    Div {
        /// The dividend
        #[arg(allow_negative_numbers = true)]
        a: i64,
        /// The divisor
        #[arg(allow_negative_numbers = true)]
        b: i64,
    },
    /// Adds up NUMBERS (0 when there are none)
    Sum {
        /// The numbers to add up
        #[arg(allow_negative_numbers = true)]
        numbers: Vec<i64>,
    },
}

impl Call {
    /// Makes the call through `calc`. The outer `Result` is the framework's (the call did not
    /// complete), the inner one the calculator's.
    pub async fn run(
        &self,
        calc: &CalculatorClient,
    ) -> Result<Result<i64, CalcError>, rpc_core::Error> {
        match self {
            Call::Add { a, b } => calc.add(*a, *b).await,
            Call::Sub { a, b } => calc.sub(*a, *b).await,
            Call::Mul { a, b } => calc.mul(*a, *b).await,
            Call::Div { a, b } => calc.div(*a, *b).await,
            Call::Sum { numbers } => calc.sum(numbers.clone()).await,
        }
    }
}

/// Writes the call as it would read in Rust: `add(2, 3)`, `sum([1, 2, 3])`.
impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Add { a, b } => write!(f, "add({a}, {b})"),
            Call::Sub { a, b } => write!(f, "sub({a}, {b})"),
            Call::Mul { a, b } => write!(f, "mul({a}, {b})"),
            Call::Div { a, b } => write!(f, "div({a}, {b})"),
            Call::Sum { numbers } => write!(f, "sum({numbers:?})"),
        }
    }
}
