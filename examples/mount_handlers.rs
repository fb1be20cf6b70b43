//! leakscope's debug handlers mounted in an application's own axum server,
//! next to its own routes, instead of starting `leakscope::server::serve`.
//!
//! ```text
//! cargo run --example mount_handlers -- 127.0.0.1:3000 5
//! curl -s localhost:3000/debug/leaks
//! ```
//!
//! The handlers are blocking (they take a snapshot, may symbolize and
//! gzip), so they run on `spawn_blocking`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

#[global_allocator]
static ALLOC: leakscope::TrackingAllocator = leakscope::TrackingAllocator::system();

/// Turns a leakscope handler response into an axum response.
fn into_axum(r: leakscope::server::Response) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, r.body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    for (k, v) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(HeaderName::from_static(k), v);
        }
    }
    resp
}

/// One axum handler for every leakscope route: path and query in,
/// leakscope's router does the rest.
async fn leakscope_route(State(prefix): State<&'static str>, req: Request) -> Response {
    let full = req.uri().path();
    let path = match full.strip_prefix(prefix) {
        Some("") => "/".to_string(),
        Some(rest) => rest.to_string(),
        None => full.to_string(),
    };
    let query = req.uri().query().unwrap_or("").to_string();
    match tokio::task::spawn_blocking(move || leakscope::server::route(&path, &query)).await {
        Ok(r) => into_axum(r),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "handler failed\n").into_response(),
    }
}

async fn hello() -> &'static str {
    "hello from the application\n"
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:3000".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);

    // The application's own routes, plus leakscope's under their usual
    // paths (`/metrics`, `/debug/...`) and its index under `/leakscope/`.
    let app = Router::new()
        .route("/", get(hello))
        .route("/metrics", get(leakscope_route))
        .route("/debug/{*rest}", get(leakscope_route))
        .route("/leakscope/", get(leakscope_route))
        .with_state("/leakscope");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        let stop = tokio::time::sleep(std::time::Duration::from_secs(seconds));
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
    })
}
