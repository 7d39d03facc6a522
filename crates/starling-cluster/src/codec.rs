//! Frames over quinn streams: read the 4-byte length, then the body; write
//! length-prefixed frames, several per stream write when they queue up.

use std::net::SocketAddr;

use quinn::{ReadExactError, RecvStream, SendStream};

use crate::error::{FrameError, LinkError};
use crate::frame::{self, Frame, LEN_PREFIX};

/// Buffer capacity a reader or writer keeps between frames (64 KiB).
const KEEP_BUFFER: usize = 64 * 1024;

/// Reads frames from one stream, reusing its body buffer.
#[derive(Debug)]
pub struct FrameReader {
    recv: RecvStream,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl FrameReader {
    /// Reads frames from `recv`; `addr` names the peer in errors.
    pub fn new(recv: RecvStream, addr: SocketAddr) -> Self {
        FrameReader {
            recv,
            addr,
            buf: Vec::new(),
        }
    }

    /// The next frame; `None` when the peer finished the stream cleanly
    /// between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, LinkError> {
        let mut prefix = [0u8; LEN_PREFIX];
        match self.recv.read_exact(&mut prefix).await {
            Ok(()) => {}
            Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(ReadExactError::FinishedEarly(got)) => {
                return Err(self.frame_error(FrameError::Truncated {
                    expected: LEN_PREFIX,
                    got,
                }));
            }
            Err(ReadExactError::ReadError(source)) => return Err(self.read_error(source)),
        }
        let len = frame::decode_len(prefix).map_err(|e| self.frame_error(e))?;
        self.buf.clear();
        self.buf.resize(len, 0);
        match self.recv.read_exact(&mut self.buf).await {
            Ok(()) => {}
            Err(ReadExactError::FinishedEarly(got)) => {
                return Err(self.frame_error(FrameError::Truncated { expected: len, got }));
            }
            Err(ReadExactError::ReadError(source)) => return Err(self.read_error(source)),
        }
        let frame = frame::decode_body(&self.buf).map_err(|e| self.frame_error(e))?;
        // A burst of large frames must not pin their peak size for the
        // link's lifetime.
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        Ok(Some(frame))
    }

    fn frame_error(&self, source: FrameError) -> LinkError {
        LinkError::Frame {
            addr: self.addr,
            source,
        }
    }

    fn read_error(&self, source: quinn::ReadError) -> LinkError {
        match source {
            quinn::ReadError::ConnectionLost(source) => connection_error(self.addr, source),
            source => LinkError::Read {
                addr: self.addr,
                source,
            },
        }
    }
}

/// Writes frames to one stream, reusing its encode buffer.
#[derive(Debug)]
pub struct FrameWriter {
    send: SendStream,
    addr: SocketAddr,
    buf: Vec<u8>,
}

impl FrameWriter {
    /// Writes frames to `send`; `addr` names the peer in errors.
    pub fn new(send: SendStream, addr: SocketAddr) -> Self {
        FrameWriter {
            send,
            addr,
            buf: Vec::new(),
        }
    }

    /// Adds `frame` to the pending batch; [`flush`](Self::flush) sends it.
    pub fn queue(&mut self, frame: &Frame) -> Result<(), FrameError> {
        frame::encode_into(frame, &mut self.buf)
    }

    /// Bytes queued and not yet flushed.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Writes every queued frame in one stream write.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.send.write_all(&self.buf).await;
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUFFER {
            self.buf = Vec::new();
        }
        result.map_err(|source| match source {
            quinn::WriteError::ConnectionLost(source) => connection_error(self.addr, source),
            source => LinkError::Write {
                addr: self.addr,
                source,
            },
        })
    }

    /// Queues and flushes one frame.
    pub async fn send(&mut self, frame: &Frame) -> Result<(), LinkError> {
        self.queue(frame).map_err(|source| LinkError::Frame {
            addr: self.addr,
            source,
        })?;
        self.flush().await
    }

    /// Finishes the stream: the peer's reader sees a clean end.
    pub fn finish(&mut self) {
        // Fails only when the stream is already finished or reset, and then
        // there is nothing left to end.
        let _ = self.send.finish();
    }
}

/// A lost connection, with our own close codes told apart from transport
/// failures.
pub(crate) fn connection_error(addr: SocketAddr, source: quinn::ConnectionError) -> LinkError {
    match source {
        quinn::ConnectionError::ApplicationClosed(close) => LinkError::Refused {
            addr,
            code: close.error_code.into_inner(),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        source => LinkError::Connection { addr, source },
    }
}
