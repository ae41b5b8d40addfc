//! The server: configuration, the accept loop, and graceful shutdown; each connection is
//! served by `driver`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::accept::Acceptor;
use crate::config::Authorizer;
use crate::driver::serve_conn;
use crate::net::{Listener, Peer};
use crate::service::Service;
use crate::{Endpoint, Error, ServerConfig, ToEndpoint, fdlimit};

/// A bound listening socket, ready to serve a [`Service`].
///
/// ```no_run
/// # async fn demo(service: impl rpc_core::Service) -> Result<(), rpc_core::Error> {
/// let server = rpc_core::Server::bind("tcp://127.0.0.1:0").await?;
/// println!("listening on {}", server.local_endpoint());
/// server.serve_with_shutdown(service, async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
pub struct Server {
    listener: Listener,
    config: Arc<ServerConfig>,
    authorize: Option<Authorizer>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("config", &self.config)
            .field("authorize", &self.authorize.is_some())
            .finish()
    }
}

impl Server {
    /// Binds `endpoint` with the default [`ServerConfig`].
    ///
    /// A Unix socket file left behind by a dead server (connecting to it is refused) is
    /// replaced; anything else at the path is an "address in use" error saying why: a socket
    /// a live server answers on, one we may not connect to, a symlink or any other file. The
    /// file appears with [`ServerConfig::unix_mode`] already set, and is removed when the
    /// server stops.
    pub async fn bind(endpoint: impl ToEndpoint) -> Result<Server, Error> {
        Server::bind_with(endpoint, ServerConfig::default()).await
    }

    /// Binds `endpoint` with `config`.
    ///
    /// The first server of a process raises the process's soft open-file limit to its hard
    /// limit. Connections count against that limit across every server of the process, less
    /// a reserve of 64 descriptors: past it, as past [`ServerConfig::max_connections`], peers
    /// are refused with an `Overloaded` Close frame.
    pub async fn bind_with(
        endpoint: impl ToEndpoint,
        config: ServerConfig,
    ) -> Result<Server, Error> {
        fdlimit::raise_limit();
        crate::budget::set_limit(config.buffer_budget);
        let listener =
            Listener::bind(&endpoint.to_endpoint()?, config.unix_mode, config.tcp_keepalive)
                .await?;
        Ok(Server { listener, config: Arc::new(config), authorize: None })
    }

    /// Checks every new connection's peer before anything else is exchanged. A refused peer
    /// gets a Close frame with code `Unauthorized` and the reason, and the refusal is logged
    /// with the peer. Calls on accepted connections can check [`Context::peer`] as well.
    ///
    /// Allow only the server's own user on a Unix socket:
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use rpc_core::{Peer, Server};
    /// use std::os::unix::fs::MetadataExt;
    /// let me = std::fs::metadata("/proc/self")?.uid();
    /// let server = Server::bind("unix:/tmp/calc.sock").await?.authorize(move |peer| match peer {
    ///     Peer::Unix { uid, .. } if *uid == me => Ok(()),
    ///     other => Err(format!("{other} is not uid {me}")),
    /// });
    /// # Ok(()) }
    /// ```
    ///
    /// [`Context::peer`]: crate::Context::peer
    pub fn authorize<F>(mut self, hook: F) -> Server
    where
        F: Fn(&Peer) -> Result<(), String> + Send + Sync + 'static,
    {
        self.authorize = Some(Arc::new(hook));
        self
    }

    /// The bound address; for `tcp://…:0` it has the port the OS chose.
    pub fn local_endpoint(&self) -> &Endpoint {
        self.listener.local()
    }

    /// Serves `service` until the task is dropped.
    pub async fn serve<S: Service>(self, service: S) -> Result<(), Error> {
        self.serve_with_shutdown(service, std::future::pending()).await
    }

    /// Serves `service` until `signal` completes, then shuts down gracefully: stops accepting,
    /// sends GoAway on every connection, lets in-flight calls finish within
    /// [`ServerConfig::shutdown_grace`], answers the rest with `ShuttingDown`, closes every
    /// connection and returns.
    pub async fn serve_with_shutdown<S: Service>(
        self,
        service: S,
        signal: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        let service = Arc::new(service);
        let go_away = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let mut conns = JoinSet::new();
        let mut signal = std::pin::pin!(signal);
        let mut acceptor = Acceptor::new();
        tracing::info!(endpoint = %self.listener.local(), service = service.name(), "serving");
        loop {
            tokio::select! {
                () = &mut signal => break,
                stream = acceptor.accept(&self.listener) => {
                    match fdlimit::admit(conns.len(), self.config.max_connections) {
                        Err(limit) => acceptor.refuse(stream, limit),
                        Ok(slot) => {
                            let stops = (go_away.clone(), hard_stop.clone());
                            let (config, authorize) = (self.config.clone(), self.authorize.clone());
                            let conn = serve_conn(service.clone(), stream, config, authorize, stops);
                            // The slot is given back when the connection ends, however it ends.
                            conns.spawn(async move {
                                let _slot = slot;
                                conn.await
                            });
                        }
                    }
                }
                Some(done) = conns.join_next(), if !conns.is_empty() => log_panic(done),
            }
        }
        tracing::info!(connections = conns.len(), "shutting down");
        drop(self.listener);
        go_away.cancel();
        let drain = async {
            while let Some(done) = conns.join_next().await {
                log_panic(done);
            }
        };
        if tokio::time::timeout(self.config.shutdown_grace, drain).await.is_err() {
            hard_stop.cancel();
            let drain = async {
                while let Some(done) = conns.join_next().await {
                    log_panic(done);
                }
            };
            if tokio::time::timeout(Duration::from_secs(1), drain).await.is_err() {
                conns.shutdown().await;
            }
        }
        Ok(())
    }
}

/// Logs a connection task that panicked; its connection is gone, the server goes on.
fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        let panic = crate::task::panic_message(e.into_panic().as_ref());
        tracing::error!(panic, "a connection task panicked; its connection is closed");
    }
}
