//! Server-side interceptors: code that sees every call before dispatch and its outcome after.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Code, Metadata, Peer};

/// What an interceptor knows about a call before it runs.
#[derive(Debug)]
#[non_exhaustive]
pub struct CallInfo<'a> {
    /// The service's name.
    pub service: &'static str,
    /// The method's name.
    pub method: &'static str,
    /// The method's wire id.
    pub method_id: u32,
    /// The request's metadata (empty if none).
    pub metadata: &'a Metadata,
    /// Who made the call.
    pub peer: &'a Peer,
    /// When the caller stops waiting; `None` for a call without a deadline.
    pub deadline: Option<Instant>,
    /// Whether the call is one-way (nobody waits for its outcome).
    pub oneway: bool,
}

/// How a call ended, as an interceptor's [`Interceptor::after`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned; its value was sent (or, for a value that could not be encoded,
    /// a framework error in its place).
    Returned,
    /// The call failed in the framework: deadline, panic.
    Failed(Code),
    /// The call was abandoned: cancelled by the client, connection lost, or shutdown.
    Abandoned,
}

/// A refusal of a call by an interceptor: the framework error the caller gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The code sent, such as `Unauthorized`.
    pub code: Code,
    /// The message sent.
    pub message: String,
}

impl Rejection {
    /// A rejection with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Rejection {
        Rejection { code, message: message.into() }
    }
}

/// Cross-cutting behaviour for every call of a server: authentication, metrics, rate limits.
///
/// Interceptors run in the order they were added: each `before` may reject the call (later
/// ones and the handler then never see it, and `after` is called for none); every interceptor
/// that passed it sees `after`, in reverse order, with the outcome and time taken. `before`
/// runs inline on the connection's reader, so it must not block.
///
/// ```
/// use rpc_core::{CallInfo, Code, Interceptor, Rejection};
///
/// /// Lets through only calls carrying the right token.
/// struct Token(&'static str);
///
/// impl Interceptor for Token {
///     fn before(&self, call: &CallInfo<'_>) -> Result<(), Rejection> {
///         match call.metadata.get_str("authorization") {
///             Some(token) if token == self.0 => Ok(()),
///             _ => Err(Rejection::new(Code::Unauthorized, "a valid token is required")),
///         }
///     }
/// }
/// ```
pub trait Interceptor: Send + Sync + 'static {
    /// Sees a call before it is dispatched; an error rejects it.
    fn before(&self, call: &CallInfo<'_>) -> Result<(), Rejection>;

    /// Sees how a call that `before` passed ended, and how long it took.
    fn after(&self, service: &'static str, method: &'static str, outcome: Outcome, took: Duration) {
        let _ = (service, method, outcome, took);
    }
}

/// The interceptors of a server, in order.
pub(crate) type Chain = Arc<[Arc<dyn Interceptor>]>;

/// Runs every interceptor's `before`; on a rejection, the ones that passed the call see
/// `after` at once.
pub(crate) fn before(chain: &Chain, call: &CallInfo<'_>) -> Result<Passed, Rejection> {
    let start = Instant::now();
    for (i, interceptor) in chain.iter().enumerate() {
        if let Err(rejection) = interceptor.before(call) {
            let passed = Passed { passed: i, service: call.service, method: call.method, start };
            passed.end(chain, Outcome::Failed(rejection.code));
            return Err(rejection);
        }
    }
    Ok(Passed { passed: chain.len(), service: call.service, method: call.method, start })
}

/// A call the interceptors passed, until they learn how it ended. Plain data, so a call that
/// ends at once costs no reference count on the chain; [`Observer`] carries one that runs on.
#[derive(Debug)]
pub(crate) struct Passed {
    passed: usize,
    service: &'static str,
    method: &'static str,
    start: Instant,
}

impl Passed {
    /// Tells the interceptors that passed the call how it ended, last first.
    pub(crate) fn end(self, chain: &Chain, outcome: Outcome) {
        let took = self.start.elapsed();
        for interceptor in chain[..self.passed].iter().rev() {
            interceptor.after(self.service, self.method, outcome, took);
        }
    }

    /// Carries the call onto its task, where it may also end by being dropped.
    pub(crate) fn observe(self, chain: &Chain) -> Observer {
        Observer { chain: chain.clone(), passed: Some(self) }
    }
}

/// A [`Passed`] call running on its own task. Dropped without [`Observer::end`] (cancelled,
/// connection lost, shutdown), the call was abandoned.
pub(crate) struct Observer {
    chain: Chain,
    passed: Option<Passed>,
}

impl Observer {
    /// The call ended with `outcome`.
    pub(crate) fn end(mut self, outcome: Outcome) {
        if let Some(passed) = self.passed.take() {
            passed.end(&self.chain, outcome);
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        if let Some(passed) = self.passed.take() {
            passed.end(&self.chain, Outcome::Abandoned);
        }
    }
}
