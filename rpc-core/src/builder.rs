//! Building a [`Server`] with several services, listeners and interceptors
//! ([`ServerBuilder`]), and stopping it from anywhere ([`ShutdownHandle`]).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Authorizer;
use crate::intercept::Interceptor;
use crate::net::{Listener, Peer};
use crate::router::Router;
use crate::service::Service;
use crate::{Endpoint, Error, Server, ServerConfig, ToEndpoint, fdlimit};

/// Collects a [`Server`]'s services, endpoints, interceptors and configuration; see
/// [`Server::builder`].
#[derive(Default)]
#[must_use = "a builder does nothing until `bind` is awaited"]
pub struct ServerBuilder {
    endpoints: Vec<Result<Endpoint, Error>>,
    config: ServerConfig,
    authorize: Option<Authorizer>,
    services: Vec<Arc<dyn Service>>,
    interceptors: Vec<Arc<dyn Interceptor>>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("endpoints", &self.endpoints)
            .field("services", &self.services.iter().map(|s| s.name()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Serves `service` too. Services are told apart by their method ids.
    pub fn service<S: Service>(mut self, service: S) -> ServerBuilder {
        self.services.push(Arc::new(service));
        self
    }

    /// Listens on `endpoint` too.
    pub fn listen(mut self, endpoint: impl ToEndpoint) -> ServerBuilder {
        self.endpoints.push(endpoint.to_endpoint());
        self
    }

    /// Uses `config` for every listener (default: [`ServerConfig::default`]).
    pub fn config(mut self, config: ServerConfig) -> ServerBuilder {
        self.config = config;
        self
    }

    /// Adds an interceptor after those added before; see [`Interceptor`].
    pub fn intercept<I: Interceptor>(mut self, interceptor: I) -> ServerBuilder {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Checks every new connection's peer; see [`Server::authorize`].
    pub fn authorize<F>(mut self, hook: F) -> ServerBuilder
    where
        F: Fn(&Peer) -> Result<(), String> + Send + Sync + 'static,
    {
        self.authorize = Some(Arc::new(hook));
        self
    }

    /// Checks the services (two of one name, or a method id in two, is an error naming both)
    /// and binds every endpoint, as [`Server::bind_with`] does.
    pub async fn bind(self) -> Result<Server, Error> {
        Router::new(self.services.clone())?;
        if self.endpoints.is_empty() {
            return Err(Error::Config("a server needs at least one endpoint to listen on".into()));
        }
        fdlimit::raise_limit();
        let mut listeners = Vec::new();
        for endpoint in self.endpoints {
            let (mode, keepalive) = (self.config.unix_mode, self.config.tcp_keepalive);
            listeners.push(Listener::bind(&endpoint?, mode, keepalive).await?);
        }
        Ok(Server {
            listeners,
            config: Arc::new(self.config),
            authorize: self.authorize,
            services: self.services,
            interceptors: self.interceptors,
            shutdown: ShutdownHandle::new(),
        })
    }
}

/// Starts a [`Server`]'s graceful shutdown from anywhere, and waits for its end. Cheap to
/// clone; every clone controls the same server.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    pub(crate) start: CancellationToken,
    pub(crate) done: CancellationToken,
}

impl ShutdownHandle {
    pub(crate) fn new() -> ShutdownHandle {
        ShutdownHandle { start: CancellationToken::new(), done: CancellationToken::new() }
    }

    /// Starts the graceful shutdown (stop accepting, GoAway, let calls finish within
    /// [`ServerConfig::shutdown_grace`]) without waiting for it.
    pub fn start(&self) {
        self.start.cancel();
    }

    /// Starts the graceful shutdown and waits until the server has stopped.
    pub async fn shutdown(&self) {
        self.start();
        self.stopped().await;
    }

    /// Waits until the server has stopped: its `run`/`serve` future returned or was dropped.
    /// A server that is dropped without ever being run never stops, so this never returns.
    pub async fn stopped(&self) {
        self.done.cancelled().await;
    }
}
