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

/// Runs every interceptor's `before`; on a rejection, the passed ones see `after` at once.
pub(crate) fn before(chain: &Chain, call: &CallInfo<'_>) -> Result<Observer, Rejection> {
    for (i, interceptor) in chain.iter().enumerate() {
        if let Err(rejection) = interceptor.before(call) {
            let passed = Observer::new(chain.clone(), i, call.service, call.method);
            passed.end(Outcome::Failed(rejection.code));
            return Err(rejection);
        }
    }
    Ok(Observer::new(chain.clone(), chain.len(), call.service, call.method))
}

/// A call that passed the interceptors: tells them how it ended, once. Dropped without
/// [`Observer::end`], the call was abandoned.
pub(crate) struct Observer {
    chain: Chain,
    passed: usize,
    service: &'static str,
    method: &'static str,
    start: Instant,
    ended: bool,
}

impl Observer {
    fn new(chain: Chain, passed: usize, service: &'static str, method: &'static str) -> Observer {
        Observer { chain, passed, service, method, start: Instant::now(), ended: false }
    }

    /// The call ended with `outcome`.
    pub(crate) fn end(mut self, outcome: Outcome) {
        self.report(outcome);
    }

    fn report(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let took = self.start.elapsed();
        for interceptor in self.chain[..self.passed].iter().rev() {
            interceptor.after(self.service, self.method, outcome, took);
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.report(Outcome::Abandoned);
    }
}
