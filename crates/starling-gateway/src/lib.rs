//! Starling's client plane: the HTTP server that clients and operators talk to.
//!
//! Today it serves the Centrifugo-compatible WebSocket endpoint, the server HTTP API and the
//! health probes; the SSE/HTTP-streaming fallbacks and `/metrics` join it here.
//!
//! Layout:
//! - `websocket` — `/connection/websocket`: upgrade, encoding negotiation, the socket loop
//!   that feeds a connection actor and writes its outbound queue.
//! - `api` — `/api/{method}`: Centrifugo's server HTTP API (key check, request decoding,
//!   execution against the node, replies and error codes; channel patterns).
//! - `server` — [`router`] and [`serve`], which take an already-bound listener and a shutdown
//!   future so tests can bind `:0`.

mod api;
mod server;
mod websocket;

pub use server::{router, serve};
