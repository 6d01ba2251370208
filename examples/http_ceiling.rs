//! The HTTP ceiling for the health-ingest benchmark: a bare hyper server that reads each
//! request body, parses it with homepot-core's health-check parser and answers 200 with a
//! small JSON document. No routing, authentication, middleware or storage, so homepot's
//! figure in `bench/health_load.sh` can be read as a fraction of what HTTP alone allows on
//! the same machine.
//!
//! `cargo run --release -p homepot-examples --example http_ceiling -- 127.0.0.1:18090`, then
//! `bench/ceiling_load.sh`.

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let listener = TcpListener::bind(&bind).await?;
    eprintln!("HTTP ceiling server on {bind}");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(answer)).await;
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, body) = match request.into_body().collect().await {
        Ok(body) => match homepot_core::ingest::health_json::parse_health_check(&body.to_bytes()) {
            Ok(check) => {
                (StatusCode::OK, format!(r#"{{"status":"success","is_healthy":{}}}"#, check.report().is_healthy))
            }
            Err(_) => (StatusCode::UNPROCESSABLE_ENTITY, r#"{"detail":"invalid health check"}"#.to_owned()),
        },
        Err(_) => (StatusCode::BAD_REQUEST, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    Ok(response)
}
