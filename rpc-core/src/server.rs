//! The server: its builder, the accept loops of its listeners, and graceful shutdown; each
//! connection is served by `driver`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::accept::Acceptor;
use crate::builder::{ServerBuilder, ShutdownHandle};
use crate::config::Authorizer;
use crate::driver::serve_conn;
use crate::intercept::{Chain, Interceptor};
use crate::net::{Listener, Peer};
use crate::router::Router;
use crate::service::Service;
use crate::{Endpoint, Error, ServerConfig, ToEndpoint, fdlimit};

/// A server: one or more bound listening sockets (any mix of `tcp://` and `unix:`) serving
/// one or more services, with one graceful shutdown for all.
///
/// One service on one endpoint:
///
/// ```no_run
/// # async fn demo(service: impl rpc_core::Service) -> Result<(), rpc_core::Error> {
/// let server = rpc_core::Server::bind("tcp://127.0.0.1:0").await?;
/// println!("listening on {}", server.local_endpoint());
/// server.serve_with_shutdown(service, async { let _ = tokio::signal::ctrl_c().await; }).await?;
/// # Ok(()) }
/// ```
///
/// Several services on several endpoints, stopped from another task:
///
/// ```no_run
/// # async fn demo(a: impl rpc_core::Service, b: impl rpc_core::Service) -> Result<(), rpc_core::Error> {
/// let server = rpc_core::Server::builder()
///     .service(a)
///     .service(b)
///     .listen("tcp://127.0.0.1:7878")
///     .listen("unix:/tmp/app.sock")
///     .bind()
///     .await?;
/// let shutdown = server.shutdown_handle();
/// tokio::spawn(async move {
///     let _ = tokio::signal::ctrl_c().await;
///     shutdown.shutdown().await; // starts the graceful shutdown and waits for its end
/// });
/// server.run().await?;
/// # Ok(()) }
/// ```
pub struct Server {
    pub(crate) listeners: Vec<Listener>,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) authorize: Option<Authorizer>,
    pub(crate) services: Vec<Arc<dyn Service>>,
    pub(crate) interceptors: Vec<Arc<dyn Interceptor>>,
    pub(crate) shutdown: ShutdownHandle,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listeners", &self.listeners)
            .field("config", &self.config)
            .field("authorize", &self.authorize.is_some())
            .field("services", &self.services.iter().map(|s| s.name()).collect::<Vec<_>>())
            .field("interceptors", &self.interceptors.len())
            .finish()
    }
}

impl Server {
    /// A builder for a server with several services or endpoints, or interceptors.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

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
        Ok(Server {
            listeners: vec![listener],
            config: Arc::new(config),
            authorize: None,
            services: Vec::new(),
            interceptors: Vec::new(),
            shutdown: ShutdownHandle::new(),
        })
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

    /// The first bound address; for `tcp://…:0` it has the port the OS chose.
    pub fn local_endpoint(&self) -> &Endpoint {
        self.listeners[0].local()
    }

    /// Every bound address, in the order they were given.
    pub fn local_endpoints(&self) -> Vec<&Endpoint> {
        self.listeners.iter().map(Listener::local).collect()
    }

    /// A handle that starts this server's graceful shutdown and waits for its end.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
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
        mut self,
        service: S,
        signal: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        self.services.push(Arc::new(service));
        self.run_with_shutdown(signal).await
    }

    /// Serves the services given to the builder until shut down with a
    /// [`ShutdownHandle`].
    pub async fn run(self) -> Result<(), Error> {
        self.run_with_shutdown(std::future::pending()).await
    }

    /// Serves the services given to the builder until `signal` completes or a
    /// [`ShutdownHandle`] starts the shutdown, then shuts down gracefully as
    /// [`Server::serve_with_shutdown`] describes.
    pub async fn run_with_shutdown(self, signal: impl Future<Output = ()>) -> Result<(), Error> {
        let router = Arc::new(Router::new(self.services)?);
        let chain: Option<Chain> =
            (!self.interceptors.is_empty()).then(|| self.interceptors.into());
        let shutdown = self.shutdown;
        // Marks the end however this future ends, dropped included.
        let _done = shutdown.done.clone().drop_guard();
        let stop = shutdown.start.clone();
        let serving = Arc::new(AtomicUsize::new(0));
        let mut listeners = JoinSet::new();
        for listener in self.listeners {
            let accept = Accept {
                listener,
                router: router.clone(),
                chain: chain.clone(),
                config: self.config.clone(),
                authorize: self.authorize.clone(),
                serving: serving.clone(),
            };
            listeners.spawn(accept.run(stop.clone()));
        }
        // Dropped with this future, the listeners and their connections stop at once.
        let mut listeners = AbortOnDrop(listeners);
        tokio::select! {
            () = signal => stop.cancel(),
            () = stop.cancelled() => {}
        }
        while let Some(done) = listeners.0.join_next().await {
            log_panic(done);
        }
        Ok(())
    }
}

/// A JoinSet whose tasks are aborted when it is dropped (JoinSet does so too; named for
/// the reader).
struct AbortOnDrop(JoinSet<()>);

/// One listener's accept loop and its connections.
struct Accept {
    listener: Listener,
    router: Arc<Router>,
    chain: Option<Chain>,
    config: Arc<ServerConfig>,
    authorize: Option<Authorizer>,
    /// Connections served by every listener of the server, for `max_connections`.
    serving: Arc<AtomicUsize>,
}

impl Accept {
    async fn run(self, stop: CancellationToken) {
        let go_away = CancellationToken::new();
        let hard_stop = CancellationToken::new();
        let mut conns = JoinSet::new();
        let mut acceptor = Acceptor::new();
        tracing::info!(endpoint = %self.listener.local(), services = %self.router.names(), "serving");
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                stream = acceptor.accept(&self.listener) => {
                    let serving = self.serving.load(Ordering::Acquire);
                    match fdlimit::admit(serving, self.config.max_connections) {
                        Err(limit) => acceptor.refuse(stream, limit),
                        Ok(slot) => {
                            let stops = (go_away.clone(), hard_stop.clone());
                            let (config, authorize) = (self.config.clone(), self.authorize.clone());
                            let (router, chain) = (self.router.clone(), self.chain.clone());
                            let conn = serve_conn(router, chain, stream, config, authorize, stops);
                            let counted = Counted::new(self.serving.clone());
                            // The slot is given back when the connection ends, however it ends.
                            conns.spawn(async move {
                                let _slot = (slot, counted);
                                conn.await
                            });
                        }
                    }
                }
                Some(done) = conns.join_next(), if !conns.is_empty() => log_panic(done),
            }
        }
        tracing::info!(endpoint = %self.listener.local(), connections = conns.len(), "shutting down");
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
    }
}

/// One connection counted in a server's `serving` count while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::AcqRel);
        Counted(count)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
