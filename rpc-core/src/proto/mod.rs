//! The protocol apart from I/O: each side of a connection as state machines that take bytes
//! and frames in and say what to send and what happened, with no socket, task or clock. The
//! I/O layer (`conn.rs`, `driver.rs`, `client.rs`) drives them; their unit tests script every
//! transition.
//!
//! - `inbound`: bytes in, frame payloads out.
//! - `outbound`: frames in, bytes to write out; who writes, holds, closing and failure.
//! - `server`: a server connection's calls: what a client's frame means, which calls run.
//! - `client`: what a server's frame means to a client.
//! - `stream`: credit accounting of the streams within calls.

pub(crate) mod client;
pub(crate) mod inbound;
pub(crate) mod outbound;
pub(crate) mod server;
pub(crate) mod stream;
