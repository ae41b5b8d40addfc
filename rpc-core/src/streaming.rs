//! [`Streaming`]: a stream of items within a call, as handlers and clients see it.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::{Error, wire};

/// A stream of `T` items within a call: a method's return type `-> Streaming<T>` (server
/// streaming), a parameter `items: Streaming<T>` (client streaming), or both (bidirectional).
///
/// The side that receives one reads it as a [`Stream`] of `Result<T, rpc_core::Error>`, or with
/// [`Streaming::next`]: `Ok` items in order, then `None` at the end; an `Err` (the connection
/// was lost, the deadline passed, the server failed the call) is the last item. The side that
/// sends one makes it from any stream ([`Streaming::from_stream`]), an iterator
/// ([`Streaming::from_iter`]) or a channel ([`Streaming::channel`]). Items move under flow
/// control: a sender never gets further ahead of the receiver than the receiver's window.
///
/// ```
/// #[rpc_core::service]
/// pub trait Numbers {
///     /// The numbers from 0 below `n`.
///     async fn count(&self, n: u64) -> rpc_core::Streaming<u64>;
/// }
///
/// struct Impl;
///
/// impl Numbers for Impl {
///     async fn count(&self, n: u64) -> rpc_core::Streaming<u64> {
///         rpc_core::Streaming::from_iter(0..n)
///     }
/// }
///
/// # async fn demo(client: NumbersClient) -> Result<(), rpc_core::Error> {
/// let mut numbers = client.count(3).await?;
/// while let Some(n) = numbers.next().await {
///     println!("{}", n?);
/// }
/// # Ok(()) }
/// ```
pub struct Streaming<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    /// Made by the side that sends: items of its own.
    Local(Pin<Box<dyn Stream<Item = T> + Send>>),
    /// Received from the peer: encoded items, decoded as they are taken.
    Remote(Box<dyn Source>, PhantomData<fn() -> T>),
    /// Over, or never had items: a decode error ended it.
    Done,
}

/// Where a received stream's encoded items come from: a client's call or a server's request.
pub(crate) trait Source: Send {
    /// The next item's body, where the source holds it until the next poll; an error that
    /// ends the stream, or `None` at its end.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<&[u8], Error>>>;
}

impl<T> Streaming<T> {
    /// A stream that sends the items of `stream`.
    pub fn from_stream(stream: impl Stream<Item = T> + Send + 'static) -> Streaming<T> {
        Streaming { inner: Inner::Local(Box::pin(stream)) }
    }

    /// A stream that sends the items of `items`.
    #[allow(clippy::should_implement_trait)] // also a constructor users find by this name
    pub fn from_iter<I>(items: I) -> Streaming<T>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: Send + 'static,
    {
        Streaming::from_stream(Iter(Box::new(items.into_iter())))
    }

    /// A stream without items.
    pub fn empty() -> Streaming<T>
    where
        T: Send + 'static,
    {
        Streaming::from_iter(std::iter::empty())
    }

    /// A stream whose items are sent through the returned [`StreamSender`]; it ends when the
    /// sender is dropped. `capacity` items (at least 1) wait in the channel before
    /// [`StreamSender::send`] waits.
    pub fn channel(capacity: usize) -> (StreamSender<T>, Streaming<T>)
    where
        T: Send + 'static,
    {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (StreamSender { tx }, Streaming::from_stream(Receiver(rx)))
    }

    pub(crate) fn done() -> Streaming<T> {
        Streaming { inner: Inner::Done }
    }

    pub(crate) fn remote(source: Box<dyn Source>) -> Streaming<T> {
        Streaming { inner: Inner::Remote(source, PhantomData) }
    }
}

impl<T: DeserializeOwned> Streaming<T> {
    /// The next item: `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Result<T, Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl<T: DeserializeOwned> Stream for Streaming<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.inner {
            Inner::Local(stream) => stream.as_mut().poll_next(cx).map(|item| item.map(Ok)),
            Inner::Remote(source, _) => match source.poll_next(cx) {
                Poll::Ready(Some(Ok(body))) => match wire::decode_body(body) {
                    Ok(item) => Poll::Ready(Some(Ok(item))),
                    Err(e) => {
                        // Dropping the source ends the call: the rest would be misread too.
                        self.inner = Inner::Done;
                        Poll::Ready(Some(Err(Error::Decode(format!("a stream item: {e}")))))
                    }
                },
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
            Inner::Done => Poll::Ready(None),
        }
    }
}

impl<T> fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner {
            Inner::Local(_) => "local",
            Inner::Remote(..) => "remote",
            Inner::Done => "done",
        };
        f.debug_struct("Streaming").field("kind", &kind).finish()
    }
}

/// Sends the items of a [`Streaming`] made with [`Streaming::channel`]; dropping it ends the
/// stream.
#[derive(Debug)]
pub struct StreamSender<T> {
    tx: mpsc::Sender<T>,
}

impl<T> Clone for StreamSender<T> {
    fn clone(&self) -> Self {
        StreamSender { tx: self.tx.clone() }
    }
}

impl<T> StreamSender<T> {
    /// Sends one item, waiting while the channel is full (the receiver is behind). Fails with
    /// the item when nobody takes items any more: the call ended or was cancelled.
    pub async fn send(&self, item: T) -> Result<(), T> {
        self.tx.send(item).await.map_err(|e| e.0)
    }

    /// Completes when nobody takes items any more.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// Boxed, so that any iterator is `Unpin` here.
struct Iter<I>(Box<I>);

impl<I: Iterator> Stream for Iter<I> {
    type Item = I::Item;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<I::Item>> {
        Poll::Ready(self.0.next())
    }
}

struct Receiver<T>(mpsc::Receiver<T>);

impl<T> Stream for Receiver<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.0.poll_recv(cx)
    }
}
