//! A minimal HTTP/1.1 client for the API tests: one request per TCP connection
//! (`Connection: close`), response read to the end. Enough for a JSON API on loopback, and it
//! keeps an HTTP client crate out of the build.

use std::fmt;
use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::WAIT;

/// One HTTP response.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines as received, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(&self.body))
            .finish()
    }
}

impl Response {
    /// The value of the first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("body is not JSON: {self:?}"))
    }
}

/// The server API of one node.
pub struct Api {
    addr: SocketAddr,
    key: String,
}

impl Api {
    /// The API of the node whose client plane listens on `addr`, called with `key`.
    pub fn new(addr: SocketAddr, key: &str) -> Api {
        Api {
            addr,
            key: key.to_owned(),
        }
    }

    /// `POST /api/<method>` with the key and `body` as JSON.
    pub async fn call(&self, method: &str, body: Value) -> anyhow::Result<Response> {
        let path = format!("/api/{method}");
        let body = body.to_string();
        self.raw(&path, &[("X-API-Key", &self.key)], body.as_bytes())
            .await
    }

    /// `GET path` with the key.
    pub async fn get(&self, path: &str) -> anyhow::Result<Response> {
        self.request("GET", path, &[("X-API-Key", &self.key)], b"")
            .await
    }

    /// `POST path` with exactly these headers and body bytes.
    pub async fn raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        self.request("POST", path, headers, body).await
    }

    /// `method path` with exactly these headers and body bytes.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let exchange = async {
            let mut stream = TcpStream::connect(self.addr).await?;
            let mut head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n",
                self.addr,
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            parse(&raw)
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .with_context(|| format!("{method} {path} timed out"))?
    }
}

fn parse(raw: &[u8]) -> anyhow::Result<Response> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("no end of headers in {:?}", String::from_utf8_lossy(raw));
    };
    let head = std::str::from_utf8(&raw[..split]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().context("no status line")?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .context("no status code")?
        .parse()
        .context("status code is not a number")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = std::str::from_utf8(&data[..end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).context("short chunk")?);
        data = data.get(size + 2..).context("chunk without CRLF")?;
    }
}
