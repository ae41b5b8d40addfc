//! Addresses: `tcp://HOST:PORT`, `unix:/PATH` and `unix:@NAME`, parsed and displayed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::Error;

/// Where a server listens or a client connects.
///
/// | form | meaning |
/// |---|---|
/// | `tcp://127.0.0.1:7878`, `tcp://localhost:7878` | TCP over IPv4 (host names are resolved) |
/// | `tcp://[::1]:7878` | TCP over IPv6 |
/// | `tcp://127.0.0.1:0` | TCP on a port the OS picks (the server reports the real one) |
/// | `unix:/run/calc.sock` | a Unix-domain socket file |
/// | `unix:@calc` | a Linux abstract Unix socket (no file) |
///
/// ```
/// use rpc_core::Endpoint;
/// let e: Endpoint = "tcp://[::1]:7878".parse().unwrap();
/// assert_eq!(e.to_string(), "tcp://[::1]:7878");
/// assert!("http://example.com".parse::<Endpoint>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// A TCP host (name or IP literal, without brackets) and port.
    Tcp {
        /// Host name or IP address.
        host: String,
        /// Port number; 0 lets the OS choose when binding.
        port: u16,
    },
    /// A Unix-domain socket at a filesystem path.
    Unix(PathBuf),
    /// A Linux abstract-namespace Unix socket, named without the leading NUL byte.
    UnixAbstract(String),
}

impl Endpoint {
    /// The endpoint of a resolved TCP socket address.
    pub fn tcp(addr: SocketAddr) -> Endpoint {
        Endpoint::Tcp { host: addr.ip().to_string(), port: addr.port() }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(input: &str) -> Result<Endpoint, Error> {
        let bad = |reason: &str| Error::InvalidEndpoint {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = input.strip_prefix("tcp://") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("missing :PORT"))?;
            let port =
                port.parse::<u16>().map_err(|_| bad("the port is not a number from 0 to 65535"))?;
            let host = match host.strip_prefix('[') {
                Some(v6) => {
                    let v6 = v6.strip_suffix(']').ok_or_else(|| bad("unclosed '[' in the host"))?;
                    v6.parse::<std::net::Ipv6Addr>()
                        .map_err(|_| bad("not an IPv6 address inside [ ]"))?;
                    v6
                }
                None if host.contains(':') => return Err(bad("IPv6 addresses go in brackets")),
                None => host,
            };
            if host.is_empty() {
                return Err(bad("missing host"));
            }
            if host.contains(['/', '?', '#', '@']) {
                return Err(bad("the host contains a character not allowed in host names"));
            }
            Ok(Endpoint::Tcp { host: host.to_owned(), port })
        } else if let Some(rest) = input.strip_prefix("unix:") {
            if let Some(name) = rest.strip_prefix('@') {
                if name.is_empty() {
                    return Err(bad("missing abstract socket name after '@'"));
                }
                Ok(Endpoint::UnixAbstract(name.to_owned()))
            } else if rest.is_empty() {
                Err(bad("missing socket path"))
            } else {
                Ok(Endpoint::Unix(PathBuf::from(rest)))
            }
        } else {
            Err(bad("unknown scheme"))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::UnixAbstract(name) => write!(f, "unix:@{name}"),
        }
    }
}

/// Anything that names an endpoint: an [`Endpoint`] or a string to parse.
pub trait ToEndpoint {
    /// The endpoint, or [`Error::InvalidEndpoint`].
    fn to_endpoint(&self) -> Result<Endpoint, Error>;
}

impl ToEndpoint for Endpoint {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        Ok(self.clone())
    }
}

impl ToEndpoint for &Endpoint {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        Ok((*self).clone())
    }
}

impl ToEndpoint for str {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        self.parse()
    }
}

impl ToEndpoint for &str {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        self.parse()
    }
}

impl ToEndpoint for String {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        self.parse()
    }
}

impl ToEndpoint for &String {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        self.parse()
    }
}
