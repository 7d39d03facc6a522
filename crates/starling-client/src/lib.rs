//! A small async Rust client for the Centrifugo client protocol v2, used by
//! Starling's integration tests, benches and tools.
//!
//! [`Client`] is a handle to one WebSocket session. A background task owns
//! the socket: commands get ids and their replies are routed back to the
//! waiting call, pushes are queued for [`Client::next_push`], server pings
//! are answered (unless turned off), and the close code and reason are kept
//! for [`Client::close_reason`] and for the errors of later calls.
//!
//! Feature `tls`: `wss://` URLs, with a rustls client configuration given to
//! [`ClientBuilder::tls_config`](crate::ClientBuilder).
//!
//! # Layout
//! - `client` — [`Client`] and [`ClientBuilder`].
//! - `task` — the connection task behind a `Client`.
//! - `error` — [`ClientError`] and [`CloseReason`].

mod client;
mod error;
mod task;

pub use client::{Client, ClientBuilder};
pub use error::{ClientError, CloseReason};
/// The protocol crate, for the request, result and push types.
pub use starling_protocol as protocol;
/// tungstenite, for [`Client::send_raw`]'s message type.
pub use tokio_tungstenite::tungstenite;

#[cfg(test)]
mod tests;
