//! The server API of one `starling serve` process, over a minimal HTTP/1.1 client: one request
//! per TCP connection (`Connection: close`), response read to the end. The test only needs
//! `GET /api/cluster` and `POST /api/publish`, and a hand-rolled client keeps an HTTP crate out
//! of the build (as `tests/api/http.rs` does).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Upper bound on one request. A publish through the isolated node into a room another node
/// owns waits for the cluster call to time out (5 s in the runtime), so this must be longer
/// than that: otherwise a slow "no" would look like a transport failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(12);

/// What a publish came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Published {
    /// Acknowledged with the stream position the owner assigned.
    Ack {
        /// The publication's offset.
        offset: u64,
        /// The room's epoch.
        epoch: String,
    },
    /// Refused: an error object, another HTTP status, or no answer at all. The text says
    /// which, for the log.
    Refused(String),
}

/// The server API of one node.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    addr: SocketAddr,
    key: String,
}

impl Api {
    /// The API at `addr` (the node's client plane), authenticated with `key`.
    pub(crate) fn new(addr: SocketAddr, key: &str) -> Api {
        Api {
            addr,
            key: key.to_owned(),
        }
    }

    /// `GET /api/cluster`: the node's view of the cluster (`starling_node::ClusterStatus`).
    pub(crate) async fn cluster(&self) -> anyhow::Result<Value> {
        let (status, body) = self.request("GET", "/api/cluster", b"").await?;
        anyhow::ensure!(status == 200, "GET /api/cluster: HTTP {status}: {body}");
        serde_json::from_str(&body).with_context(|| format!("/api/cluster is not JSON: {body}"))
    }

    /// `POST /api/publish` of `data` into `channel`. Never fails: a transport error counts as
    /// a refusal, because from a backend's point of view that is what it is.
    pub(crate) async fn publish(&self, channel: &str, data: &Value) -> Published {
        let body = serde_json::json!({ "channel": channel, "data": data }).to_string();
        let (status, text) = match self.request("POST", "/api/publish", body.as_bytes()).await {
            Ok(answer) => answer,
            Err(error) => return Published::Refused(format!("no answer: {error:#}")),
        };
        if status != 200 {
            return Published::Refused(format!("HTTP {status}: {text}"));
        }
        let Ok(reply) = serde_json::from_str::<Value>(&text) else {
            return Published::Refused(format!("not JSON: {text}"));
        };
        let result = &reply["result"];
        match (result["offset"].as_u64(), result["epoch"].as_str()) {
            (Some(offset), Some(epoch)) => Published::Ack {
                offset,
                epoch: epoch.to_owned(),
            },
            _ => Published::Refused(text),
        }
    }

    /// `method path` with the API key and `body`; returns the status and the body as text.
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<(u16, String)> {
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await?;
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
                 X-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.addr,
                self.key,
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            parse(&raw)
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{method} {path} on {} timed out", self.addr))?
    }
}

/// Status code and body of a `Connection: close` response with a `Content-Length` body (what
/// the gateway sends for JSON replies).
fn parse(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no end of headers in {:?}", String::from_utf8_lossy(raw));
    };
    let head = std::str::from_utf8(&raw[..split]).context("response head is not UTF-8")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("chunked responses are not expected from the server API: {head}");
    }
    let status = head
        .split("\r\n")
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .context("no status line")?
        .parse()
        .context("status code is not a number")?;
    Ok((
        status,
        String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    ))
}
