//! A minimal streaming HTTP/1.1 client for the transport tests: one request per TCP connection,
//! the response head parsed, the body read incrementally (chunked or not) so a test can read a
//! long-lived stream line by line while it stays open.

use std::net::SocketAddr;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use starling_tests::WAIT;

/// An open response: status, headers, and the body as it arrives.
pub(crate) struct Stream {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    socket: TcpStream,
    /// Raw bytes read and not yet decoded.
    raw: Vec<u8>,
    /// Decoded body bytes not yet handed out.
    body: Vec<u8>,
    chunked: bool,
    done: bool,
}

/// Sends one request and reads the response head.
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Stream> {
    let mut socket = TcpStream::connect(addr).await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(body).await?;
    let mut raw = Vec::new();
    let split = loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(WAIT, socket.read(&mut buf))
            .await
            .context("response head timed out")??;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = std::str::from_utf8(&raw[..split])?.to_owned();
    let rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .context("no status")?
        .parse()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    Ok(Stream {
        status,
        headers,
        socket,
        raw: rest,
        body: Vec::new(),
        chunked,
        done: false,
    })
}

impl Stream {
    /// The value of header `name` (lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next body bytes up to and including `delimiter`; `None` once the body ended.
    pub(crate) async fn until(&mut self, delimiter: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(at) = self
                .body
                .windows(delimiter.len())
                .position(|w| w == delimiter)
            {
                let rest = self.body.split_off(at + delimiter.len());
                return Ok(Some(std::mem::replace(&mut self.body, rest)));
            }
            if self.done {
                return Ok(None);
            }
            self.fill().await?;
        }
    }

    /// The rest of the body, read to its end.
    pub(crate) async fn rest(&mut self) -> anyhow::Result<Vec<u8>> {
        while !self.done {
            self.fill().await?;
        }
        Ok(std::mem::take(&mut self.body))
    }

    /// Decodes what is buffered, reading more from the socket when nothing decodes.
    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.decode()? {
            return Ok(());
        }
        let mut buf = [0u8; 8192];
        let n = tokio::time::timeout(WAIT, self.socket.read(&mut buf))
            .await
            .context("response body timed out")??;
        if n == 0 {
            self.done = true;
        }
        self.raw.extend_from_slice(&buf[..n]);
        Ok(())
    }

    /// Moves complete chunks from `raw` to `body`; whether anything moved.
    fn decode(&mut self) -> anyhow::Result<bool> {
        if !self.chunked {
            let moved = !self.raw.is_empty();
            self.body.append(&mut self.raw);
            return Ok(moved);
        }
        let mut moved = false;
        loop {
            let Some(end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return Ok(moved);
            };
            let size_text = std::str::from_utf8(&self.raw[..end])?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
            if size == 0 {
                self.done = true;
                return Ok(true);
            }
            if self.raw.len() < end + 2 + size + 2 {
                return Ok(moved);
            }
            self.body
                .extend_from_slice(&self.raw[end + 2..end + 2 + size]);
            self.raw.drain(..end + 2 + size + 2);
            moved = true;
        }
    }
}
