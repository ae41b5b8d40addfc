//! The process-wide buffer budget: a peer whose frame would need more than what is left is
//! closed with `Overloaded`, and other clients go on. Alone in its binary, as the budget is
//! the process's.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rpc_core::{Client, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_that_would_pass_the_buffer_budget_closes_its_connection_with_overloaded() {
    let mut config = ServerConfig::default();
    config.buffer_budget = 2 << 20;
    let server = start_with("tcp://127.0.0.1:0", config).await;
    let good = Client::connect(&server.endpoint).await.unwrap();
    assert_eq!(good.call::<_, i64>(ADD, &(1_i64, 2_i64)).await.unwrap(), 3);

    let mut greedy = TcpStream::connect(tcp_addr(&server.endpoint)).await.unwrap();
    greedy.write_all(&HELLO_4MIB).await.unwrap();
    assert_eq!(frame(&expect_frame(&mut greedy).await), HELLO_4MIB);
    // A frame of 3 MiB, within the 4 MiB frame limit but not the 2 MiB budget.
    let (mut read, mut write) = greedy.into_split();
    let sending = tokio::spawn(async move {
        let _ = write.write_all(&(3_u32 << 20).to_be_bytes()).await;
        let _ = write.write_all(&vec![0_u8; 3 << 20]).await;
        write
    });
    let (code, message) = decode_close(&expect_frame(&mut read).await);
    assert_eq!(code, 5, "{message}");
    assert!(message.contains("budget of 2097152 bytes"), "{message}");
    drop(read);
    drop(within(sending).await);
    // The budget was given back: the good client, and a new one, are served.
    assert_eq!(within(good.call::<_, i64>(ADD, &(2_i64, 2_i64))).await.unwrap(), 4);
    let fresh = within(Client::connect(&server.endpoint)).await.unwrap();
    assert_eq!(within(fresh.call::<_, i64>(ADD, &(3_i64, 3_i64))).await.unwrap(), 6);
    server.stop().await.unwrap();
}
