//! Sockets: one `Listener` and one `Stream` type over TCP and Unix, so the rest of the crate
//! has a single code path for both.

use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::sockfile::{self, SocketFile};
use crate::{Endpoint, Error};

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// A TCP peer's address.
    Tcp(SocketAddr),
    /// A Unix-socket peer's credentials, read with `SO_PEERCRED` when it connected.
    Unix {
        /// Process id, when the OS reports one.
        pid: Option<i32>,
        /// User id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix { pid: Some(pid), uid, gid } => {
                write!(f, "unix pid={pid} uid={uid} gid={gid}")
            }
            Peer::Unix { pid: None, uid, gid } => write!(f, "unix uid={uid} gid={gid}"),
        }
    }
}

/// TCP keepalive probes, which notice a peer that vanished without closing the connection (it
/// lost power, a cable or a NAT mapping went away): the connection then fails like any other
/// lost connection, ending its calls. Set on both ends by default; see
/// `ServerConfig::tcp_keepalive` and `ClientConfig::tcp_keepalive`.
///
/// After `idle` with nothing received, the kernel sends a probe every `interval`; after
/// `retries` unanswered probes it closes the socket. The defaults (60 s, 10 s, 3) notice a
/// dead peer within 60 + 3 × 10 = 90 s of its last sign of life. Probes cost a few bytes per
/// idle connection per minute. (Data that the peer never acknowledges is a separate case,
/// left to the kernel's retransmission timeout, about 15 minutes by default on Linux.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Keepalive {
    /// Time without traffic before the first probe. Default: 60 s.
    pub idle: Duration,
    /// Time between probes. Default: 10 s.
    pub interval: Duration,
    /// Unanswered probes after which the connection is dropped. Default: 3.
    pub retries: u32,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive { idle: Duration::from_secs(60), interval: Duration::from_secs(10), retries: 3 }
    }
}

/// Sets the socket options every TCP connection gets: TCP_NODELAY, and keepalive if asked.
fn configure_tcp(stream: &TcpStream, keepalive: Option<Keepalive>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if let Some(k) = keepalive {
        let params = socket2::TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval)
            .with_retries(k.retries);
        socket2::SockRef::from(stream).set_tcp_keepalive(&params)?;
    }
    Ok(())
}

/// A connected socket. Reads and writes use readiness plus `try_*` calls on `&self`, so one
/// task can read while others write without splitting the socket.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    /// Connects to `endpoint`; a TCP socket gets TCP_NODELAY and `keepalive`.
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        keepalive: Option<Keepalive>,
    ) -> io::Result<Stream> {
        match endpoint {
            Endpoint::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                configure_tcp(&stream, keepalive)?;
                Ok(Stream::Tcp(stream))
            }
            Endpoint::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            Endpoint::UnixAbstract(name) => {
                let std = std::os::unix::net::UnixStream::connect_addr(&abstract_addr(name)?)?;
                std.set_nonblocking(true)?;
                Ok(Stream::Unix(UnixStream::from_std(std)?))
            }
        }
    }

    pub(crate) fn peer(&self) -> io::Result<Peer> {
        match self {
            Stream::Tcp(s) => Ok(Peer::Tcp(s.peer_addr()?)),
            Stream::Unix(s) => {
                let cred = s.peer_cred()?;
                Ok(Peer::Unix { pid: cred.pid(), uid: cred.uid(), gid: cred.gid() })
            }
        }
    }

    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
        }
    }

    /// [`Stream::readable`] as a poll, for a connection's reader loop: no future to make on
    /// every turn, and the waker goes to the socket's one reader slot rather than a list of
    /// waiters behind a lock. Only the last task to poll is woken: one reader per socket.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
        }
    }

    /// Reads what the socket has into `buf`'s spare capacity, without waiting.
    ///
    /// A read that leaves spare capacity has drained the socket, so the readiness tokio
    /// recorded is cleared as well, as its own `poll_read` does. Otherwise the next
    /// [`Stream::readable`] would return at once and cost a read that finds nothing: one
    /// wasted syscall per wakeup on the path of every call.
    pub(crate) fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        let spare = buf.capacity() - buf.len();
        let mut read = 0;
        let result = match self {
            Stream::Tcp(s) => s.try_io(Interest::READABLE, || {
                read = s.try_read_buf(buf)?;
                drained(read, spare)
            }),
            Stream::Unix(s) => s.try_io(Interest::READABLE, || {
                read = s.try_read_buf(buf)?;
                drained(read, spare)
            }),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && read > 0 => Ok(read),
            Err(e) => Err(e),
            Ok(()) => Ok(read),
        }
    }

    pub(crate) async fn writable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.writable().await,
            Stream::Unix(s) => s.writable().await,
        }
    }

    /// Shuts down one or both directions, so the peer sees the end of the stream although
    /// this socket stays open until its last user drops it.
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s).shutdown(how),
            Stream::Unix(s) => socket2::SockRef::from(s).shutdown(how),
        }
    }

    pub(crate) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_write(buf),
            Stream::Unix(s) => s.try_write(buf),
        }
    }

    /// Writes what the socket takes of `buf` at once, with a plain `send`: unlike
    /// [`Stream::try_write`], it does not wait for the runtime to have seen the socket
    /// writable, which a socket just accepted has not. For a last frame before closing.
    pub(crate) fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        self.sock_ref().send(buf)
    }

    /// Reads and drops what the peer has sent so far, up to `limit` bytes, without waiting.
    /// Closing a socket with unread bytes resets the connection (RST) instead of ending it
    /// (FIN), and a reset can destroy the last frame before the peer reads it.
    pub(crate) fn discard_received(&self, limit: usize) {
        let socket = self.sock_ref();
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
        let mut discarded = 0;
        while discarded < limit {
            match socket.recv(&mut buf) {
                Ok(n) if n > 0 => discarded += n,
                _ => break,
            }
        }
    }

    fn sock_ref(&self) -> socket2::SockRef<'_> {
        match self {
            Stream::Tcp(s) => socket2::SockRef::from(s),
            Stream::Unix(s) => socket2::SockRef::from(s),
        }
    }
}

/// `WouldBlock` (which makes `try_io` clear the readiness) when a read of `read` bytes into
/// `spare` bytes of room shows the socket is empty.
fn drained(read: usize, spare: usize) -> io::Result<()> {
    if read > 0 && read < spare { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
}

/// A listening socket. A Unix socket file is removed when the listener is dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    socket: ListenSocket,
    /// The bound address, with the real port for `tcp://…:0`.
    local: Endpoint,
    /// Keepalive for accepted TCP connections.
    keepalive: Option<Keepalive>,
}

#[derive(Debug)]
enum ListenSocket {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        /// Held only to remove the socket file on drop; `None` for abstract sockets.
        _file: Option<SocketFile>,
    },
}

impl Listener {
    /// Binds `endpoint`; a Unix socket file gets permission bits `unix_mode`, if given, and
    /// accepted TCP connections get `keepalive`.
    pub(crate) async fn bind(
        endpoint: &Endpoint,
        unix_mode: Option<u32>,
        keepalive: Option<Keepalive>,
    ) -> Result<Listener, Error> {
        let bind_err = |source| Error::Bind { endpoint: endpoint.to_string(), source };
        match endpoint {
            Endpoint::Tcp { host, port } => {
                let listener = TcpListener::bind((host.as_str(), *port)).await.map_err(bind_err)?;
                let local = Endpoint::tcp(listener.local_addr().map_err(bind_err)?);
                Ok(Listener { socket: ListenSocket::Tcp(listener), local, keepalive })
            }
            Endpoint::Unix(path) => {
                let (listener, file) = sockfile::bind(path, unix_mode).map_err(bind_err)?;
                listener.set_nonblocking(true).map_err(bind_err)?;
                let listener = UnixListener::from_std(listener).map_err(bind_err)?;
                Ok(Listener {
                    socket: ListenSocket::Unix { listener, _file: Some(file) },
                    local: endpoint.clone(),
                    keepalive,
                })
            }
            Endpoint::UnixAbstract(name) => {
                let bind = || {
                    let std = std::os::unix::net::UnixListener::bind_addr(&abstract_addr(name)?)?;
                    std.set_nonblocking(true)?;
                    UnixListener::from_std(std)
                };
                let listener = bind().map_err(bind_err)?;
                let socket = ListenSocket::Unix { listener, _file: None };
                Ok(Listener { socket, local: endpoint.clone(), keepalive })
            }
        }
    }

    pub(crate) fn local(&self) -> &Endpoint {
        &self.local
    }

    /// Accepts one connection; a TCP socket gets TCP_NODELAY and the listener's keepalive.
    pub(crate) async fn accept(&self) -> Result<Stream, AcceptError> {
        match &self.socket {
            ListenSocket::Tcp(l) => {
                let (stream, _) = l.accept().await.map_err(AcceptError::Accept)?;
                configure_tcp(&stream, self.keepalive).map_err(AcceptError::Setup)?;
                Ok(Stream::Tcp(stream))
            }
            ListenSocket::Unix { listener, .. } => {
                Ok(Stream::Unix(listener.accept().await.map_err(AcceptError::Accept)?.0))
            }
        }
    }
}

/// Why [`Listener::accept`] produced no connection.
#[derive(Debug)]
pub(crate) enum AcceptError {
    /// `accept` failed: for want of descriptors or memory, or with the error of a connection
    /// that died in the backlog (Linux reports those from `accept`).
    Accept(io::Error),
    /// A connection was accepted but failed as it was set up; it is closed.
    Setup(io::Error),
}

fn abstract_addr(name: &str) -> io::Result<std::os::unix::net::SocketAddr> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = name;
        Err(io::Error::new(io::ErrorKind::Unsupported, "abstract unix sockets need Linux"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::SockRef;

    /// The keepalive settings of a TCP stream, read back from the kernel.
    fn keepalive_of(stream: &Stream) -> Option<Keepalive> {
        let Stream::Tcp(tcp) = stream else { panic!("a tcp stream") };
        let sock = SockRef::from(tcp);
        if !sock.keepalive().expect("SO_KEEPALIVE") {
            return None;
        }
        Some(Keepalive {
            idle: sock.tcp_keepalive_time().expect("TCP_KEEPIDLE"),
            interval: sock.tcp_keepalive_interval().expect("TCP_KEEPINTVL"),
            retries: sock.tcp_keepalive_retries().expect("TCP_KEEPCNT"),
        })
    }

    /// Accepted and connected TCP sockets get exactly the keepalive asked for, or none.
    #[tokio::test]
    async fn tcp_sockets_on_both_ends_get_the_configured_keepalive() {
        let custom = Keepalive {
            idle: Duration::from_secs(7),
            interval: Duration::from_secs(2),
            retries: 5,
        };
        for keepalive in [Some(Keepalive::default()), Some(custom), None] {
            let endpoint: Endpoint = "tcp://127.0.0.1:0".parse().expect("an endpoint");
            let listener = Listener::bind(&endpoint, None, keepalive).await.expect("bind");
            let (connected, accepted) =
                tokio::join!(Stream::connect(listener.local(), keepalive), listener.accept());
            let (connected, accepted) = (connected.expect("connect"), accepted.expect("accept"));
            assert_eq!(keepalive_of(&connected), keepalive, "the connecting side");
            assert_eq!(keepalive_of(&accepted), keepalive, "the accepting side");
        }
    }
}
