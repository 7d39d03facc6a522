//! Starling's client plane: the HTTP server that clients and operators talk to.
//!
//! It serves the Centrifugo-compatible client transports — WebSocket, the HTTP-streaming and
//! SSE fallbacks with bidirectional emulation, unidirectional SSE — the server HTTP API and the
//! health probes (see `docs/transports.md` for the fallbacks).
//!
//! Layout:
//! - `websocket` — `/connection/websocket`: upgrade, encoding negotiation, the socket loop
//!   that feeds a connection actor and writes its outbound queue.
//! - `stream` — what the HTTP transports share: the task that streams a connection's outbound
//!   queue as a response body through a transport's framing, the handshake hook, body limits,
//!   and their errors with the HTTP statuses.
//! - `http_stream` — `/connection/http_stream`: newline-delimited JSON or length-delimited
//!   Protobuf down one response.
//! - `sse` — `/connection/sse`: the same over `EventSource` (JSON).
//! - `emulation` — `/emulation`: client-to-server commands of those two, routed by session id.
//! - `uni_sse` — `/connection/uni_sse`: pushes only, for plain `EventSource` clients, resumable
//!   with `Last-Event-ID`; `event_id` is the id format that makes that work.
//! - `origin` — the `client.allowed_origins` check every handshake passes.
//! - `metrics` — `/metrics`: the node's counters in Prometheus text format.
//! - `api` — `/api/{method}`: Centrifugo's server HTTP API (key check, request decoding,
//!   execution against the node, replies and error codes; channel patterns).
//! - `server` — [`router`], [`serve`] and [`serve_tls`], which take an already-bound listener
//!   and a shutdown future so tests can bind `:0`.
//! - `accept` — the accept loop both serve functions run: optional TLS handshake, HTTP/1.1 by
//!   hyper with a header read timeout (slowloris), graceful drain.
//! - `tls` — [`ServerTls`]: `[http_server.tls]` certificate and key loaded into rustls (ring).

mod accept;
mod api;
mod emulation;
mod event_id;
mod http_stream;
mod metrics;
mod origin;
mod server;
mod sse;
mod stream;
mod tls;
mod uni_sse;
mod websocket;
mod ws_frame;

pub use server::{router, serve, serve_tls};
pub use tls::{ServerTls, TlsError};
