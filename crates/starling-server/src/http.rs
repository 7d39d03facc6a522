//! A minimal HTTP/1.1 client for the CLI's calls to a node's server API.
//!
//! One request per TCP connection (`Connection: close`), the response read to the end. The
//! CLI makes one call per run, to a JSON API, so this is all it needs; it keeps an HTTP client
//! crate (and its TLS stack) out of the binary. It speaks plain HTTP only: a node whose client
//! plane is TLS-only must be reached through a plain listener or a proxy.

use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The largest response read. Cluster status grows with the member count only; anything
/// bigger is not an answer from a Starling node.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// One HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// The body, de-chunked.
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// Whether the status is 2xx.
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A request to the server API of the node at `addr` (`host:port`), carrying `api_key` in
/// `X-API-Key`. `body`, when given, is sent as JSON. The whole exchange is bounded by
/// `timeout`.
pub(crate) async fn request(
    addr: &str,
    method: &str,
    path: &str,
    api_key: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> anyhow::Result<Response> {
    // A CR or LF in the key would let it write headers of its own.
    ensure!(
        !api_key.bytes().any(|b| b.is_ascii_control()),
        "the API key holds a control character"
    );
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr} (is a node serving there?)"))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Accept: application/json\r\nX-API-Key: {api_key}\r\n"
        );
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        if let Some(body) = body {
            stream.write_all(body).await?;
        }
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE + 1)
            .read_to_end(&mut raw)
            .await
            .with_context(|| format!("cannot read the answer from {addr}"))?;
        ensure!(
            raw.len() as u64 <= MAX_RESPONSE,
            "the answer from {addr} is larger than {MAX_RESPONSE} bytes"
        );
        parse(&raw)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| {
            format!(
                "{method} {path} on {addr}: no answer within {}s",
                timeout.as_secs()
            )
        })?
}

/// Parses a complete HTTP/1.1 response: status line, headers, and a body framed by
/// `Content-Length`, chunked encoding, or the end of the connection.
fn parse(raw: &[u8]) -> anyhow::Result<Response> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("not an HTTP response (no end of headers)");
    };
    let head = std::str::from_utf8(&raw[..split]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split(' ');
    ensure!(
        parts.next().is_some_and(|v| v.starts_with("HTTP/1.")),
        "not an HTTP/1 response: {status_line:?}"
    );
    let status: u16 = parts
        .next()
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status code in {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        }
    }
    let rest = &raw[split + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        rest.get(..length)
            .with_context(|| format!("body cut short: {} of {length} bytes", rest.len()))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body (chunk extensions and trailers are ignored).
fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunked body: no chunk size line")?;
        let size_text = std::str::from_utf8(&data[..end]).context("chunk size is not text")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).context("chunked body: short chunk")?);
        data = data
            .get(size + 2..)
            .context("chunked body: chunk without CRLF")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_body_is_cut_at_its_length() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let response = parse(raw).expect("parse");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"{}");
        assert!(response.is_success());
    }

    #[test]
    fn chunked_body_is_joined() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n\
                    3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n";
        let response = parse(raw).expect("parse");
        assert_eq!(response.status, 503);
        assert_eq!(response.body, br#"{"a":1}"#);
        assert!(!response.is_success());
    }

    #[test]
    fn body_without_framing_runs_to_the_end() {
        let response = parse(b"HTTP/1.1 401 Unauthorized\r\n\r\n").expect("parse");
        assert_eq!(response.status, 401);
        assert!(response.body.is_empty());
    }

    #[test]
    fn garbage_and_short_bodies_are_errors() {
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(parse(b"SSH-2.0 200 x\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}
