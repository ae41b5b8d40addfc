//! The calculator service shared by the example binaries, and the little they share besides.
//!
//! - [`Calculator`]: the service trait; `#[rpc_core::service]` generates [`CalculatorClient`]
//!   and [`CalculatorServer`] from it.
//! - [`Calc`]: the implementation the servers run.
//! - [`Call`]: one method call with its arguments, as `calculator-client` parses it and the
//!   demo prints it.
//! - [`Stats`]: a second service on the same listeners (calls served per method, uptime, and
//!   a one-way `log`), fed by the [`CallCounter`] interceptor.
//! - [`bind_calculator`], [`shutdown_signal`] and [`init_tracing`]: what the binaries share
//!   besides the services.
//! - [`HumanDuration`] and [`HumanSize`]: `2s`, `500ms`, `4MiB` and the like, for
//!   `calculator-server`'s flags.
//!
//! The binaries: `calculator` (a one-command demo over TCP and a Unix socket),
//! `calculator-server` and `calculator-client`.

mod call;
mod process;
mod stats;
mod units;

pub use call::Call;
pub use process::{bind_calculator, init_tracing, shutdown_signal};
pub use stats::{CallCounter, Report, Stats, StatsClient, StatsServer, StatsService, stats};
pub use units::{HumanDuration, HumanSize};

use serde::{Deserialize, Serialize};

/// Why a calculation has no answer. An application error: a call that fails with it returns
/// `Ok(Err(_))` to the client, unlike the framework's `rpc_core::Error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum CalcError {
    /// The divisor was zero.
    #[error("division by zero")]
    DivideByZero,
    /// The exact result does not fit in an `i64`.
    #[error("overflow: the result does not fit in an i64")]
    Overflow,
}

/// A calculator on 64-bit signed integers. Results are exact or an error: nothing wraps.
#[rpc_core::service]
pub trait Calculator {
    /// Returns `a + b`.
    async fn add(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    /// Returns `a - b`.
    async fn sub(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    /// Returns `a * b`.
    async fn mul(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    /// Returns `a / b`, rounded toward zero.
    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
    /// Returns the sum of `numbers`; 0 for none.
    async fn sum(&self, numbers: Vec<i64>) -> Result<i64, CalcError>;
    /// Streams the primes up to and including `limit`, smallest first.
    async fn primes(&self, limit: u64) -> rpc_core::Streaming<u64>;
    /// Returns the sum of the streamed `numbers`; 0 for none.
    async fn sum_stream(&self, numbers: rpc_core::Streaming<i64>) -> Result<i64, CalcError>;
    /// Streams the running total of the streamed `numbers`: one total per number. An
    /// overflow is the last item.
    async fn running_total(
        &self,
        numbers: rpc_core::Streaming<i64>,
    ) -> rpc_core::Streaming<Result<i64, CalcError>>;
}

/// The calculator the servers run. It holds no state, so one value serves every connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_add(b).ok_or(CalcError::Overflow)
    }

    async fn sub(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_sub(b).ok_or(CalcError::Overflow)
    }

    async fn mul(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        a.checked_mul(b).ok_or(CalcError::Overflow)
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
        if b == 0 {
            return Err(CalcError::DivideByZero);
        }
        // Only i64::MIN / -1 is left to fail.
        a.checked_div(b).ok_or(CalcError::Overflow)
    }

    async fn sum(&self, numbers: Vec<i64>) -> Result<i64, CalcError> {
        numbers.iter().try_fold(0_i64, |total, &n| total.checked_add(n)).ok_or(CalcError::Overflow)
    }

    async fn primes(&self, limit: u64) -> rpc_core::Streaming<u64> {
        // Made one at a time as the client's credit lets them go: a huge limit costs nothing
        // up front, and a client that stops reading stops the search.
        rpc_core::Streaming::from_iter((2..=limit).filter(|&n| is_prime(n)))
    }

    async fn sum_stream(&self, mut numbers: rpc_core::Streaming<i64>) -> Result<i64, CalcError> {
        let mut total = 0_i64;
        while let Some(Ok(n)) = numbers.next().await {
            total = total.checked_add(n).ok_or(CalcError::Overflow)?;
        }
        Ok(total)
    }

    async fn running_total(
        &self,
        numbers: rpc_core::Streaming<i64>,
    ) -> rpc_core::Streaming<Result<i64, CalcError>> {
        use futures::StreamExt;
        // `Some(total)` while the total fits; the item after an overflow ends the stream.
        let totals = numbers.scan(Some(0_i64), |total, n| {
            let item = match (*total, n) {
                (Some(t), Ok(n)) => t.checked_add(n).ok_or(CalcError::Overflow),
                _ => return futures::future::ready(None),
            };
            *total = item.clone().ok();
            futures::future::ready(Some(item))
        });
        rpc_core::Streaming::from_stream(totals)
    }
}

/// Whether `n` is prime, by trial division.
fn is_prime(n: u64) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
