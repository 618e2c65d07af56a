//! The floor of the stack, for `bench/run.sh` (issue #11): an axum server that forwards every
//! request to one upstream with no policy at all — no auth, no limits, no logs, no traces, no
//! metrics — through either the same pooled reqwest client the gateway uses or hyper-util's bare
//! client. It is what any gateway built on these crates costs before it does anything, so the
//! benchmark can say how much of the gap to nginx is the stack and how much is the gateway.
//!
//! `passthrough reqwest|hyper LISTEN_ADDR UPSTREAM_BASE` (single-threaded runtime, like the
//! gateway on one CPU). Not part of the product; never deployed.
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
enum Upstream {
    Reqwest(reqwest::Client),
    // Boxed: the hyper client is much larger than reqwest's handle (clippy large_enum_variant).
    Hyper(Box<Client<HttpConnector, Body>>),
}

#[derive(Clone)]
struct Pass {
    client: Upstream,
    base: String,
}

async fn forward(State(pass): State<Pass>, req: Request) -> Response {
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{pq}", pass.base);
    let (parts, body) = req.into_parts();
    match &pass.client {
        Upstream::Reqwest(client) => {
            let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            let sent = client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await;
            match sent {
                Ok(res) => {
                    let status = res.status();
                    let headers = res.headers().clone();
                    let body = Body::from_stream(res.bytes_stream());
                    (status, headers, body).into_response()
                }
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Upstream::Hyper(client) => {
            let mut parts = parts;
            let Ok(uri) = url.parse() else {
                return StatusCode::BAD_REQUEST.into_response();
            };
            parts.uri = uri;
            parts.headers.remove(http::header::HOST);
            match client.request(Request::from_parts(parts, body)).await {
                Ok(res) => res.map(Body::new).into_response(),
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, listen, base] = args.as_slice() else {
        eprintln!("usage: passthrough reqwest|hyper LISTEN_ADDR UPSTREAM_BASE");
        return std::process::ExitCode::from(2);
    };
    let client = match mode.as_str() {
        "reqwest" => match reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .no_proxy()
            .build()
        {
            Ok(c) => Upstream::Reqwest(c),
            Err(e) => {
                eprintln!("passthrough: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        "hyper" => Upstream::Hyper(Box::new(Client::builder(TokioExecutor::new()).build_http())),
        other => {
            eprintln!("passthrough: unknown client {other:?} (reqwest or hyper)");
            return std::process::ExitCode::from(2);
        }
    };
    let pass = Pass {
        client,
        base: base.trim_end_matches('/').to_owned(),
    };
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let app = Router::new().fallback(forward).with_state(pass);
                axum::serve(listener, app).await.map_err(|e| e.to_string())
            })
        });
    match served {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("passthrough: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
