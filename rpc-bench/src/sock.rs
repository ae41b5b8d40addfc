//! Plain sockets for the `raw` and `tarpc` systems: one address, listener and stream type over
//! TCP and Unix, with TCP_NODELAY on both ends.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Which kind of socket a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Unix,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Tcp, Transport::Unix];

    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
        }
    }

    pub fn parse(name: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// Where a server listens; displays in rpc-core's endpoint syntax (`tcp://…`, `unix:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Addr {
    /// A fresh address of kind `transport`: an OS-chosen loopback port, or a socket file named
    /// `name` in the run's temporary directory.
    pub fn fresh(transport: Transport, name: &str) -> Addr {
        match transport {
            Transport::Tcp => Addr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
            Transport::Unix => Addr::Unix(socket_dir().join(format!("{name}.sock"))),
        }
    }

    pub fn parse(text: &str) -> Option<Addr> {
        if let Some(rest) = text.strip_prefix("tcp://") {
            rest.parse().ok().map(Addr::Tcp)
        } else {
            text.strip_prefix("unix:").map(|p| Addr::Unix(PathBuf::from(p)))
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "tcp://{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The directory holding this process's Unix socket files.
pub fn socket_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rpc-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A listening socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `addr`; returns the listener and its real address (the port the OS chose).
    pub async fn bind(addr: &Addr) -> io::Result<(Listener, Addr)> {
        match addr {
            Addr::Tcp(a) => {
                let l = TcpListener::bind(a).await?;
                let local = Addr::Tcp(l.local_addr()?);
                Ok((Listener::Tcp(l), local))
            }
            Addr::Unix(p) => {
                let _ = std::fs::remove_file(p);
                Ok((Listener::Unix(UnixListener::bind(p)?), addr.clone()))
            }
        }
    }

    pub async fn accept(&self) -> io::Result<Sock> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok(Sock::Tcp(s))
            }
            Listener::Unix(l) => Ok(Sock::Unix(l.accept().await?.0)),
        }
    }
}

/// A connected socket.
pub enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    pub async fn connect(addr: &Addr) -> io::Result<Sock> {
        match addr {
            Addr::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                Ok(Sock::Tcp(s))
            }
            Addr::Unix(p) => Ok(Sock::Unix(UnixStream::connect(p).await?)),
        }
    }
}

impl AsyncRead for Sock {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Sock::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Sock::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Sock {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Sock::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Sock::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Sock::Tcp(s) => Pin::new(s).poll_flush(cx),
            Sock::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Sock::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Sock::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
