//! Temporary smoke test of the hand-written service path.

use rpc_core::{DispatchError, HandlerFuture, Responder, Server, Service};

struct Echo;

impl Service for Echo {
    fn name(&self) -> &'static str {
        "Echo"
    }
    fn method_name(&self, method: u32) -> Option<&'static str> {
        (method == 1).then_some("echo")
    }
    fn call(
        &self,
        method: u32,
        body: &[u8],
        reply: Responder,
    ) -> Result<HandlerFuture, DispatchError> {
        if method != 1 {
            return Err(DispatchError::UnknownMethod);
        }
        let (s,): (String,) = rpc_core::decode_args(body)?;
        Ok(Box::pin(async move {
            if s == "sleep" {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            reply.send(&s)
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    for ep in ["tcp://127.0.0.1:0".to_string(), format!("unix:{}/s.sock", dir.path().display())] {
        let server = Server::bind(ep.as_str()).await.unwrap();
        let local = server.local_endpoint().clone();
        tokio::spawn(server.serve(Echo));
        let client = rpc_core::Client::connect(&local).await.unwrap();
        let r: String = client.call(1, &("hi".to_string(),)).await.unwrap();
        assert_eq!(r, "hi");
        let r: String = client.call(1, &("sleep".to_string(),)).await.unwrap();
        assert_eq!(r, "sleep");
        let e = client.call::<_, String>(2, &("x".to_string(),)).await.unwrap_err();
        println!("{e}");
        let e = client.call::<_, String>(1, &(5u8,)).await.unwrap_err();
        println!("{e}");
        let mut tasks = Vec::new();
        for t in 0..100 {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..100 {
                    let s = format!("{t}-{i}");
                    let r: String = c.call(1, &(s.clone(),)).await.unwrap();
                    assert_eq!(r, s);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
}
