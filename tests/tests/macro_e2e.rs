//! Services defined with `#[service]`, served over TCP and called through their generated
//! clients: argument and result shapes, application errors, the call context, two services in
//! one program, and ids that survive reordering but not signature changes.

use std::time::Duration;

use rpc_core::{Code, Context, Error, Server, Service};
use serde::{Deserialize, Serialize};

/// Serves `service` on a loopback port of the OS's choosing until the test's runtime ends.
async fn serve(service: impl Service) -> rpc_core::Endpoint {
    let server = Server::bind("tcp://127.0.0.1:0").await.expect("bind a loopback port");
    let endpoint = server.local_endpoint().clone();
    drop(tokio::spawn(server.serve(service)));
    endpoint
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Circle { center: Point, radius: u32 },
    Polygon(Vec<Point>),
    Empty,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CalcError {
    DivideByZero,
}

mod v1 {
    use super::{CalcError, Context, Point, Shape};

    /// The first version of the calculator.
    #[rpc_core::service]
    pub(crate) trait Calculator {
        /// No arguments.
        async fn zero(&self) -> i64;
        /// One argument.
        async fn negate(&self, a: i64) -> i64;
        async fn add(&self, a: i64, b: i64) -> i64;
        /// Many arguments of many shapes.
        async fn describe(
            &self,
            name: String,
            shape: Shape,
            points: Vec<Point>,
            label: Option<String>,
            scale: Option<u8>,
        ) -> (String, usize, Option<Shape>);
        /// Nothing returned.
        async fn forget(&self, note: String);
        /// An application error.
        async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
        /// The call context.
        async fn whoami(&self, ctx: &Context, greeting: String) -> String;
        /// Never answers.
        async fn hang(&self);
    }

    pub(crate) struct Calc;

    impl Calculator for Calc {
        async fn zero(&self) -> i64 {
            0
        }
        async fn negate(&self, a: i64) -> i64 {
            -a
        }
        async fn add(&self, a: i64, b: i64) -> i64 {
            a + b
        }
        async fn describe(
            &self,
            name: String,
            shape: Shape,
            points: Vec<Point>,
            label: Option<String>,
            scale: Option<u8>,
        ) -> (String, usize, Option<Shape>) {
            let label = label.unwrap_or_default();
            let shape = (scale != Some(0)).then_some(shape);
            (format!("{name}:{label}"), points.len(), shape)
        }
        async fn forget(&self, _note: String) {}
        async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError> {
            a.checked_div(b).ok_or(CalcError::DivideByZero)
        }
        async fn whoami(&self, ctx: &Context, greeting: String) -> String {
            format!("{greeting} #{} from {}", ctx.request_id(), ctx.peer())
        }
        async fn hang(&self) {
            std::future::pending::<()>().await;
        }
    }
}

/// A later version: methods reordered, one added. Ids do not depend on order.
mod v2 {
    use super::CalcError;

    #[rpc_core::service]
    pub(crate) trait Calculator {
        async fn div(&self, a: i64, b: i64) -> Result<i64, CalcError>;
        async fn mul(&self, a: i64, b: i64) -> i64;
        async fn add(&self, a: i64, b: i64) -> i64;
    }
}

/// An incompatible version: `add` takes other types, so it is another method.
mod narrow {
    #[rpc_core::service]
    pub(crate) trait Calculator {
        async fn add(&self, a: i32, b: i32) -> i32;
    }
}

/// Two services in one module.
mod pair {
    use std::sync::atomic::{AtomicU64, Ordering};

    #[rpc_core::service]
    pub(crate) trait Echo {
        async fn echo(&self, text: String) -> String;
    }

    #[rpc_core::service]
    pub(crate) trait Counter {
        async fn next(&self) -> u64;
    }

    pub(crate) struct Parrot;

    impl Echo for Parrot {
        async fn echo(&self, text: String) -> String {
            text
        }
    }

    #[derive(Default)]
    pub(crate) struct Count(AtomicU64);

    impl Counter for Count {
        async fn next(&self) -> u64 {
            self.0.fetch_add(1, Ordering::Relaxed) + 1
        }
    }
}

use v1::{Calc, CalculatorClient, CalculatorServer};

async fn calculator() -> Result<CalculatorClient, Error> {
    CalculatorClient::connect(serve(CalculatorServer::new(Calc)).await).await
}

#[tokio::test]
async fn methods_with_zero_one_and_two_arguments() -> Result<(), Error> {
    let calc = calculator().await?;
    assert_eq!(calc.zero().await?, 0);
    assert_eq!(calc.negate(5).await?, -5);
    assert_eq!(calc.add(2, 3).await?, 5);
    Ok(())
}

#[tokio::test]
async fn structs_enums_vecs_strings_and_options_cross_the_wire() -> Result<(), Error> {
    let calc = calculator().await?;
    let circle = Shape::Circle { center: Point { x: 1, y: -1 }, radius: 3 };
    let points = vec![Point { x: 0, y: 0 }, Point { x: 2, y: 2 }];
    let got = calc
        .describe("c".to_owned(), circle.clone(), points.clone(), Some("big".to_owned()), None)
        .await?;
    assert_eq!(got, ("c:big".to_owned(), 2, Some(circle)));
    let polygon = Shape::Polygon(points);
    let got = calc.describe(String::new(), polygon, Vec::new(), None, Some(0)).await?;
    assert_eq!(got, (":".to_owned(), 0, None));
    let got = calc.describe("e".to_owned(), Shape::Empty, Vec::new(), None, Some(1)).await?;
    assert_eq!(got, ("e:".to_owned(), 0, Some(Shape::Empty)));
    Ok(())
}

#[tokio::test]
async fn a_method_without_a_result_returns_unit() -> Result<(), Error> {
    let calc = calculator().await?;
    let () = calc.forget("note".to_owned()).await?;
    Ok(())
}

#[tokio::test]
async fn an_application_error_is_ok_err() -> Result<(), Error> {
    let calc = calculator().await?;
    assert_eq!(calc.div(7, 2).await?, Ok(3));
    assert_eq!(calc.div(7, 0).await?, Err(CalcError::DivideByZero));
    Ok(())
}

#[tokio::test]
async fn the_handler_gets_the_call_context_and_the_client_does_not_send_it() -> Result<(), Error> {
    let calc = calculator().await?;
    let answer = calc.whoami("hi".to_owned()).await?;
    let local = calc.client().endpoint().expect("made from an endpoint").to_string();
    assert!(answer.starts_with("hi #"), "{answer}");
    assert!(answer.contains("127.0.0.1"), "{answer} (server at {local})");
    Ok(())
}

#[tokio::test]
async fn with_timeout_gives_the_generated_client_a_deadline() -> Result<(), Error> {
    let calc = calculator().await?;
    // `hang` never answers, so the deadline is what ends the call, however slow the machine.
    let err = calc.with_timeout(Duration::from_millis(50)).hang().await.expect_err("no answer");
    assert!(matches!(err, Error::DeadlineExceeded(_)), "{err}");
    // The original handle keeps its own deadline and still works.
    assert_eq!(calc.add(1, 1).await?, 2);
    Ok(())
}

#[tokio::test]
async fn clients_share_a_connection_and_calls_run_from_many_tasks() -> Result<(), Error> {
    let calc = calculator().await?;
    let shared = CalculatorClient::new(calc.client().clone());
    let calls: Vec<_> = (0..32)
        .map(|i| {
            let calc = if i % 2 == 0 { calc.clone() } else { shared.clone() };
            tokio::spawn(async move { calc.add(i, i).await })
        })
        .collect();
    for (i, call) in (0..).zip(calls) {
        assert_eq!(call.await.expect("the task runs")?, 2 * i);
    }
    Ok(())
}

#[tokio::test]
async fn two_services_of_one_module_in_one_program() -> Result<(), Error> {
    let echo = pair::EchoClient::connect(serve(pair::EchoServer::new(pair::Parrot)).await).await?;
    let count = pair::Count::default();
    let counter =
        pair::CounterClient::connect(serve(pair::CounterServer::new(count)).await).await?;
    assert_eq!(echo.echo("one".to_owned()).await?, "one");
    assert_eq!(counter.next().await?, 1);
    assert_eq!(counter.next().await?, 2);
    assert_eq!(echo.echo("two".to_owned()).await?, "two");
    Ok(())
}

#[tokio::test]
async fn reordered_and_added_methods_keep_talking_to_the_old_server() -> Result<(), Error> {
    let endpoint = serve(CalculatorServer::new(Calc)).await;
    let newer = v2::CalculatorClient::connect(endpoint).await?;
    assert_eq!(newer.add(2, 3).await?, 5);
    assert_eq!(newer.div(1, 0).await?, Err(CalcError::DivideByZero));
    // The old server does not have the added method.
    let err = newer.mul(2, 3).await.expect_err("the old server has no `mul`");
    assert_eq!(err.code(), Some(Code::UnknownMethod), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_changed_signature_is_an_unknown_method() -> Result<(), Error> {
    let endpoint = serve(CalculatorServer::new(Calc)).await;
    let narrow = narrow::CalculatorClient::connect(endpoint).await?;
    let err = narrow.add(2, 3).await.expect_err("the server has no `add(i32, i32)`");
    assert_eq!(err.code(), Some(Code::UnknownMethod), "{err}");
    Ok(())
}
