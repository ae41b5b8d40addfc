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
    /// Streams the primes up to LIMIT, one per line
    Primes {
        /// The largest number to test
        limit: u64,
    },
    /// Adds up NUMBERS, sent as a stream
    SumStream {
        /// The numbers to stream
        #[arg(allow_negative_numbers = true)]
        numbers: Vec<i64>,
    },
    /// Streams NUMBERS and prints the running total after each, one per line
    RunningTotal {
        /// The numbers to stream
        #[arg(allow_negative_numbers = true)]
        numbers: Vec<i64>,
    },
}

impl Call {
    /// Makes the call through `calc`, giving each value to `each` as it comes: one for most
    /// methods, many for the streaming ones. The outer `Result` is the framework's (the call
    /// did not complete), the inner one the calculator's.
    pub async fn run(
        &self,
        calc: &CalculatorClient,
        mut each: impl FnMut(i64),
    ) -> Result<Result<(), CalcError>, rpc_core::Error> {
        let one = match self {
            Call::Add { a, b } => calc.add(*a, *b).await?,
            Call::Sub { a, b } => calc.sub(*a, *b).await?,
            Call::Mul { a, b } => calc.mul(*a, *b).await?,
            Call::Div { a, b } => calc.div(*a, *b).await?,
            Call::Sum { numbers } => calc.sum(numbers.clone()).await?,
            Call::SumStream { numbers } => {
                calc.sum_stream(futures::stream::iter(numbers.clone())).await?
            }
            Call::Primes { limit } => {
                let mut primes = calc.primes(*limit).await?;
                while let Some(prime) = primes.next().await {
                    // Primes are at most `limit`, itself an i64 on the command line in practice.
                    each(i64::try_from(prime?).unwrap_or(i64::MAX));
                }
                return Ok(Ok(()));
            }
            Call::RunningTotal { numbers } => {
                let numbers = futures::stream::iter(numbers.clone());
                let mut totals = calc.running_total(numbers).await?;
                while let Some(total) = totals.next().await {
                    match total? {
                        Ok(total) => each(total),
                        Err(refused) => return Ok(Err(refused)),
                    }
                }
                return Ok(Ok(()));
            }
        };
        Ok(one.map(each))
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
            Call::Primes { limit } => write!(f, "primes({limit})"),
            Call::SumStream { numbers } => write!(f, "sum_stream(stream {numbers:?})"),
            Call::RunningTotal { numbers } => write!(f, "running_total(stream {numbers:?})"),
        }
    }
}
