//! The `raw` baseline: tokio + `LengthDelimitedCodec` frames + bincode 2, no RPC layer. Frames
//! are encoded in place in the `Framed` write buffer; the server answers every request already
//! read before it flushes; for throughput one client task keeps C requests in flight on its
//! connection (the ceiling for that many in flight).

use std::io;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use futures::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::sock::{Addr, Listener, Sock};
use crate::workloads::{self, Meter, Metrics, Sequential, Timing};

const CONFIG: bincode::config::Configuration = bincode::config::standard();
const MAX_FRAME: usize = 16 << 20;

#[derive(Serialize, Deserialize)]
enum Request {
    Add(i64, i64),
    Echo(Bytes),
    /// Send this many `Item`s (a size of 0) or `Blob`s of the size.
    Stream(u64, usize),
}

#[derive(Serialize, Deserialize)]
enum Response {
    Sum(i64),
    Echo(Bytes),
    Item(u64),
    Blob(Bytes),
}

type Conn = Framed<Sock, LengthDelimitedCodec>;

fn framed(sock: Sock) -> Conn {
    LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME).new_framed(sock)
}

/// Appends `value` as one frame to the connection's write buffer: length prefix, then bincode,
/// encoded in place (no intermediate buffer). [`flush`] writes it.
fn put_frame<T: Serialize>(conn: &mut Conn, value: &T) {
    let buf = conn.write_buffer_mut();
    let start = buf.len();
    buf.put_u32(0);
    bincode::serde::encode_into_std_write(value, &mut buf.writer(), CONFIG)
        .expect("encoding to memory cannot fail");
    let len = u32::try_from(buf.len() - start - 4).expect("frame under 4 GiB");
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Writes everything in the connection's write buffer.
async fn flush(conn: &mut Conn) -> io::Result<()> {
    SinkExt::<Bytes>::flush(conn).await
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> io::Result<T> {
    bincode::serde::decode_from_slice(payload, CONFIG)
        .map(|(v, _)| v)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Binds `addr` and serves every connection on its own task; returns the real address.
pub async fn start_server(addr: &Addr) -> io::Result<Addr> {
    let (listener, local) = Listener::bind(addr).await?;
    tokio::spawn(async move {
        while let Ok(sock) = listener.accept().await {
            tokio::spawn(serve_conn(framed(sock)));
        }
    });
    Ok(local)
}

async fn serve_conn(mut conn: Conn) {
    while let Some(Ok(frame)) = conn.next().await {
        if let Ok(Request::Stream(n, size)) = decode::<Request>(&frame) {
            let _ = stream(&mut conn, n, size).await;
            return;
        }
        if answer(&mut conn, &frame).is_err() {
            return;
        }
        // Answer every request that is already here, then write all answers at once.
        while let Some(next) = conn.next().now_or_never() {
            match next {
                Some(Ok(frame)) => {
                    if answer(&mut conn, &frame).is_err() {
                        return;
                    }
                }
                _ => {
                    let _ = flush(&mut conn).await;
                    return;
                }
            }
        }
        if flush(&mut conn).await.is_err() {
            return;
        }
    }
}

/// The streaming ceiling: `n` frames as fast as the socket takes them, no flow control; each
/// write carries at least 64 KiB when there is that much.
async fn stream(conn: &mut Conn, n: u64, size: usize) -> io::Result<()> {
    let blob = Bytes::from(vec![7u8; size]);
    for i in 0..n {
        if size == 0 {
            put_frame(conn, &Response::Item(i));
        } else {
            put_frame(conn, &Response::Blob(blob.clone()));
        }
        if conn.write_buffer().len() >= 64 * 1024 {
            flush(conn).await?;
        }
    }
    flush(conn).await
}

fn answer(conn: &mut Conn, frame: &[u8]) -> io::Result<()> {
    let response = match decode::<Request>(frame)? {
        Request::Add(a, b) => Response::Sum(a + b),
        Request::Echo(data) => Response::Echo(data),
        Request::Stream(..) => return Err(io::ErrorKind::InvalidData.into()),
    };
    put_frame(conn, &response);
    Ok(())
}

/// One client connection, used by one task.
pub struct RawConn {
    conn: Conn,
}

impl RawConn {
    pub async fn connect(addr: &Addr) -> io::Result<RawConn> {
        Ok(RawConn { conn: framed(Sock::connect(addr).await?) })
    }

    async fn call(&mut self, request: &Request) -> io::Result<Response> {
        put_frame(&mut self.conn, request);
        flush(&mut self.conn).await?;
        let reply = self.conn.next().await.ok_or(io::ErrorKind::UnexpectedEof)??;
        decode(&reply)
    }
}

impl Sequential for RawConn {
    async fn add(&mut self, a: i64, b: i64) -> i64 {
        match self.call(&Request::Add(a, b)).await.expect("raw add failed") {
            Response::Sum(sum) => sum,
            _ => panic!("raw add: wrong response"),
        }
    }

    async fn echo(&mut self, data: Bytes) -> Bytes {
        match self.call(&Request::Echo(data)).await.expect("raw echo failed") {
            Response::Echo(data) => data,
            _ => panic!("raw echo: wrong response"),
        }
    }
}

/// `w2`/`w3` for raw: on each of `conns` connections, one task keeps `depth` requests in flight;
/// returns `calls_per_s` over all of them.
pub async fn pipelined(
    timing: Timing,
    addr: &Addr,
    conns: usize,
    depth: usize,
) -> io::Result<Metrics> {
    let meter = Meter::new(conns);
    let mut tasks = Vec::new();
    for task in 0..conns {
        let conn = RawConn::connect(addr).await?;
        tasks.push(tokio::spawn(pipeline(conn, depth, meter.clone(), task)));
    }
    let rate = meter.rate(timing).await;
    for t in tasks {
        t.await.expect("pipeline task panicked")?;
    }
    Ok(rate)
}

async fn pipeline(mut c: RawConn, depth: usize, meter: Arc<Meter>, task: usize) -> io::Result<()> {
    let (mut sent, mut done) = (0i64, 0i64);
    let base = (task as i64) << 40;
    loop {
        if meter.running() {
            while sent - done < depth as i64 {
                put_frame(&mut c.conn, &Request::Add(base + sent, 1));
                sent += 1;
            }
            flush(&mut c.conn).await?;
        } else if done == sent {
            return Ok(());
        }
        // Wait for one answer, then take every answer already here.
        let mut next = Some(c.conn.next().await);
        while let Some(reply) = next {
            let reply = reply.ok_or(io::ErrorKind::UnexpectedEof)??;
            match decode(&reply)? {
                Response::Sum(sum) => workloads::check(sum, base + done + 1),
                _ => panic!("raw add: wrong response"),
            }
            done += 1;
            next = c.conn.next().now_or_never();
        }
        meter.set(task, done as u64);
    }
}

/// One raw stream of frames, read frame by frame: what `s1_8b` and `s2_64kib` are measured
/// against.
pub struct RawItems(Conn);

impl RawItems {
    /// Asks for a stream of 8-byte items (`size` 0) or of `size`-byte blobs.
    pub async fn open(addr: &Addr, size: usize) -> io::Result<RawItems> {
        let mut conn = framed(Sock::connect(addr).await?);
        put_frame(&mut conn, &Request::Stream(u64::MAX >> 8, size));
        flush(&mut conn).await?;
        Ok(RawItems(conn))
    }
}

impl workloads::Items for RawItems {
    async fn next(&mut self) -> usize {
        let frame = self.0.next().await.expect("the stream ended").expect("raw stream failed");
        match decode::<Response>(&frame).expect("a response") {
            Response::Item(_) => 8,
            Response::Blob(blob) => blob.len(),
            _ => panic!("raw stream: wrong response"),
        }
    }
}
