//! Starting one call on a server connection: route to its service, check one-way-ness, run the
//! interceptors, decode, then run the handler inline until it first waits, then on a task.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use super::Driver;
use crate::conn::Outbox;
use crate::intercept::{self, CallInfo, Chain, Observer, Outcome, Passed};
use crate::proto::server;
use crate::service::{DispatchError, ONEWAY_ID, Responder, Sink};
use crate::task::{CatchUnwind, panic_message};
use crate::{Code, Error, Metadata, TraceContext};

impl Driver {
    /// Starts one call: route, intercept, decode, run it inline until it first waits, then on
    /// its own task. `deadline` is `None` for a call without one. An error breaks the
    /// protocol (a one-way mismatch).
    pub(super) fn start(
        &mut self,
        id: u64,
        method: u32,
        deadline: Option<Instant>,
        body: &[u8],
        metadata: Option<Arc<Metadata>>,
    ) -> Result<(), Error> {
        let outbox = &self.sink.outbox;
        let Some((service, name)) =
            self.router.route(method).and_then(|s| Some((s, s.method_name(method)?)))
        else {
            let message = if self.router.is_single() {
                let service = self.router.names();
                format!("{service} has no method with id {method:#010x}")
            } else {
                let services = self.router.names();
                format!("unknown method: no service here ({services}) has method id {method:#010x}")
            };
            if id == ONEWAY_ID {
                tracing::debug!(%message, "one-way request dropped");
            } else {
                outbox.fail_call(id, Code::UnknownMethod, &message);
            }
            return Ok(());
        };
        let service_name = service.name();
        server::check_oneway(id, service.is_oneway(method), service_name, name)?;
        let trace = metadata
            .as_deref()
            .and_then(|m| m.get_str(crate::trace::TRACEPARENT))
            .and_then(TraceContext::parse);
        let span = tracing::debug_span!(
            "call",
            service = service_name,
            method = name,
            id,
            peer = %self.sink.peer,
            trace_id = tracing::field::Empty,
        );
        if let Some(trace) = &trace
            && !span.is_disabled()
        {
            span.record("trace_id", trace.trace_id_hex());
        }
        let _entered = span.enter();
        let observer = match &self.chain {
            None => None,
            Some(chain) => {
                let info = CallInfo {
                    service: service_name,
                    method: name,
                    method_id: method,
                    metadata: metadata.as_deref().unwrap_or(Metadata::empty()),
                    peer: &self.sink.peer,
                    deadline,
                    oneway: id == ONEWAY_ID,
                };
                match intercept::before(chain, &info) {
                    Ok(passed) => Some(passed),
                    Err(rejection) => {
                        if id != ONEWAY_ID {
                            outbox.fail_call(id, rejection.code, &rejection.message);
                        }
                        return Ok(());
                    }
                }
            }
        };
        let sink: Arc<dyn Sink> = self.sink.clone();
        let reply = Responder::new(sink, id, deadline.unwrap_or_else(far_future), metadata);
        // A hand-written Service may panic while decoding; that fails this call only.
        let dispatched =
            std::panic::catch_unwind(AssertUnwindSafe(|| service.call(method, body, reply)));
        let (service, name) = (service_name, name);
        let chain = &self.chain;
        let fail = |observer: Option<Passed>, code: Code, message: &str| {
            end(chain, observer, Outcome::Failed(code));
            if id != ONEWAY_ID {
                outbox.fail_call(id, code, message);
            }
        };
        let future = match dispatched {
            Ok(Ok(future)) => future,
            Ok(Err(DispatchError::UnknownMethod)) => {
                let message = format!("{service} has no method with id {method:#010x}");
                fail(observer, Code::UnknownMethod, &message);
                return Ok(());
            }
            Ok(Err(DispatchError::BadRequest(why))) => {
                let message = format!("bad arguments for {service}.{name}: {why}");
                fail(observer, Code::BadRequest, &message);
                return Ok(());
            }
            Err(panic) => {
                let panic = panic_message(&*panic);
                tracing::error!(service, method = name, id, panic, "handler panicked");
                fail(
                    observer,
                    Code::HandlerPanicked,
                    &format!("handler {service}.{name} panicked: {panic}"),
                );
                return Ok(());
            }
        };
        // A call in a trace runs in it, so the calls it makes carry the trace on.
        let future = match trace {
            Some(trace) => Box::pin(crate::trace::scope(trace, future)),
            None => future,
        };
        let mut call = CatchUnwind(future);
        // Most handlers finish without waiting: run them here and skip the spawn. One that
        // waits re-registers its waker when the spawned task polls it again.
        match Pin::new(&mut call).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => {
                end(&self.chain, observer, Outcome::Returned);
                return Ok(());
            }
            Poll::Ready(Err(panic)) => {
                end(&self.chain, observer, Outcome::Failed(Code::HandlerPanicked));
                panicked(outbox, id, service, name, &panic);
                return Ok(());
            }
            Poll::Pending => {}
        }
        let outbox = outbox.clone();
        let observer: Option<Observer> =
            observer.zip(self.chain.as_ref()).map(|(passed, chain)| passed.observe(chain));
        let call = tracing::Instrument::instrument(call, span.clone());
        let handle = self.handlers.spawn(async move {
            let finished = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, call).await,
                None => Ok(call.await),
            };
            let outcome = match finished {
                Ok(Ok(())) => Outcome::Returned,
                Ok(Err(panic)) => {
                    panicked(&outbox, id, service, name, &panic);
                    Outcome::Failed(Code::HandlerPanicked)
                }
                Err(_) => {
                    let message = format!("{service}.{name} did not finish within its deadline");
                    if id == ONEWAY_ID {
                        tracing::debug!(%message, "one-way call stopped");
                    } else {
                        outbox.fail_call(id, Code::DeadlineExceeded, &message);
                    }
                    Outcome::Failed(Code::DeadlineExceeded)
                }
            };
            if let Some(observer) = observer {
                observer.end(outcome);
            }
        });
        self.proto.spawned(id, handle.id());
        self.tasks.insert(handle.id(), handle);
        Ok(())
    }
}

/// Tells the interceptors, if any, how a call ended.
#[inline]
fn end(chain: &Option<Chain>, passed: Option<Passed>, outcome: Outcome) {
    if let (Some(chain), Some(passed)) = (chain, passed) {
        passed.end(chain, outcome);
    }
}

/// A deadline for a call that has none: far enough never to come, near enough to compute with.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

fn panicked(outbox: &Outbox, id: u64, service: &str, method: &str, panic: &str) {
    tracing::error!(service, method, id, panic, "handler panicked");
    if id != ONEWAY_ID {
        let message = format!("handler {service}.{method} panicked: {panic}");
        outbox.fail_call(id, Code::HandlerPanicked, &message);
    }
}
