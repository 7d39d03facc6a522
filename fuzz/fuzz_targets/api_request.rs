//! Server API request bodies, through the public surface: `starling_gateway::router` with a
//! real `Node`, one `POST /api/<method>` per input, the key set. The first byte picks the
//! method (every one of the 13, `batch` and an unknown one); the rest is the body.
//!
//! The decoder itself is private to the gateway; going through the router fuzzes it exactly
//! as a backend reaches it, body limit and execution included. Besides "no panic", the answer
//! must be one of the documented statuses (docs/api.md): a 500 would be a bug.

#![no_main]

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use libfuzzer_sys::fuzz_target;
use starling_config::Config;
use starling_node::Node;
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

const KEY: &str = "fuzz-key";

const METHODS: &[&str] = &[
    "publish",
    "broadcast",
    "subscribe",
    "unsubscribe",
    "disconnect",
    "refresh",
    "presence",
    "presence_stats",
    "history",
    "history_remove",
    "channels",
    "info",
    "batch",
    "no_such_method",
];

fn app() -> &'static (Runtime, Router) {
    static APP: OnceLock<(Runtime, Router)> = OnceLock::new();
    APP.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        let mut config = Config::default();
        config.http_api.key = KEY.to_owned();
        config.http_api.max_request_body_size = 64 * 1024;
        config.validate().expect("fuzz config is valid");
        let router = runtime.block_on(async {
            let node = Node::new(config).expect("node starts");
            starling_gateway::router(node)
        });
        (runtime, router)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let (runtime, router) = app();
    let request = Request::post(format!("/api/{method}"))
        .header("x-api-key", KEY)
        .body(Body::from(body.to_vec()))
        .expect("a request with a static path and header builds");
    let response = runtime
        .block_on(router.clone().oneshot(request))
        .unwrap_or_else(|never| match never {});
    let status = response.status();
    assert!(
        matches!(
            status,
            StatusCode::OK
                | StatusCode::BAD_REQUEST
                | StatusCode::NOT_FOUND
                | StatusCode::PAYLOAD_TOO_LARGE
        ),
        "{method}: unexpected status {status}"
    );
});
