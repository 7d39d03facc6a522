//! What a transport tells the node about itself when it opens a connection.
//!
//! The protocol session is the same on every transport; three things differ, and
//! [`TransportMode`] carries them: whether commands arrive on the connection itself
//! (WebSocket), through separate emulation requests routed by a session id (HTTP-streaming and
//! SSE with bidirectional emulation), or not at all after the connect (unidirectional SSE, which
//! also cannot answer pings).

use std::fmt;
use std::sync::Arc;

use starling_protocol::StreamPosition;

/// How the client talks to its connection after the connect.
#[derive(Clone, Debug, Default)]
pub enum TransportMode {
    /// Commands and replies share one full-duplex connection (WebSocket).
    #[default]
    Bidirectional,
    /// Replies stream down one HTTP response; commands come in separate emulation requests that
    /// name the session id the connect reply gave out (see [`crate::Node::emulate`]).
    Emulation,
    /// Server pushes only. The transport sends the connect; the connection sends no pong
    /// request (`pong: false`), and its server-side subscriptions are recoverable where the
    /// namespace allows recovery, resuming from `resume` when the transport knows positions.
    Unidirectional(Resume),
}

impl TransportMode {
    /// Whether the client can answer the server's pings.
    pub fn answers_pings(&self) -> bool {
        !matches!(self, TransportMode::Unidirectional(_))
    }
}

type Lookup = dyn Fn(&str) -> Option<StreamPosition> + Send + Sync;

/// Where a unidirectional connection resumes its server-side subscriptions from: a lookup from
/// channel name to the last stream position the client saw (for uni-SSE, decoded from the
/// browser's `Last-Event-ID`). A lookup, not a map, because the transport may know positions
/// only by a digest of the channel name.
#[derive(Clone, Default)]
pub struct Resume {
    lookup: Option<Arc<Lookup>>,
}

impl Resume {
    /// Nothing to resume: a first connect.
    pub fn none() -> Resume {
        Resume::default()
    }

    /// Resume from the positions `lookup` returns.
    pub fn with<F>(lookup: F) -> Resume
    where
        F: Fn(&str) -> Option<StreamPosition> + Send + Sync + 'static,
    {
        Resume {
            lookup: Some(Arc::new(lookup)),
        }
    }

    /// The position to recover `channel` from, if the client saw one.
    pub fn position(&self, channel: &str) -> Option<StreamPosition> {
        self.lookup.as_ref().and_then(|lookup| lookup(channel))
    }
}

impl fmt::Debug for Resume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resume")
            .field("positions", &self.lookup.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_answers_only_what_its_lookup_knows() {
        let resume = Resume::with(|channel| {
            (channel == "news").then(|| StreamPosition {
                offset: 7,
                epoch: "e".into(),
            })
        });
        assert_eq!(resume.position("news").map(|p| p.offset), Some(7));
        assert!(resume.position("other").is_none());
        assert!(Resume::none().position("news").is_none());
    }

    #[test]
    fn only_unidirectional_connections_skip_pongs() {
        assert!(TransportMode::Bidirectional.answers_pings());
        assert!(TransportMode::Emulation.answers_pings());
        assert!(!TransportMode::Unidirectional(Resume::none()).answers_pings());
    }
}
