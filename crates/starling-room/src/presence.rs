//! Who is in a room: one entry per client connection, counted per user.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};

use starling_protocol::ClientInfo;

/// Presence counters, as in Centrifugo's `PresenceStatsResult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceStats {
    /// Client connections present.
    pub num_clients: u32,
    /// Distinct users among them (one user may have several connections).
    pub num_users: u32,
}

/// A presence entry keyed by its client id, so the set needs no second copy
/// of the id as a map key.
#[derive(Debug)]
struct Entry(ClientInfo);

impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        &self.0.client
    }
}

// Hash and Eq must agree with `str`'s for `Borrow<str>` lookups to work, so
// both look at the client id only.
impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.client.as_str().hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.client == other.0.client
    }
}

impl Eq for Entry {}

/// The presence set of one room.
#[derive(Debug, Default)]
pub(crate) struct Presence {
    clients: HashSet<Entry>,
    /// Connections per user, so `stats` needs no pass over all clients.
    users: HashMap<Box<str>, u32>,
}

impl Presence {
    /// Adds or refreshes `info`; `true` when its client was not present.
    pub(crate) fn join(&mut self, info: ClientInfo) -> bool {
        let previous = self.clients.take(info.client.as_str());
        let is_new = previous.is_none();
        if let Some(Entry(old)) = previous {
            self.forget_user(&old.user);
        }
        *self.users.entry(info.user.as_str().into()).or_insert(0) += 1;
        self.clients.insert(Entry(info));
        is_new
    }

    /// Removes the client's entry and returns it.
    pub(crate) fn leave(&mut self, client_id: &str) -> Option<ClientInfo> {
        let Entry(info) = self.clients.take(client_id)?;
        self.forget_user(&info.user);
        Some(info)
    }

    fn forget_user(&mut self, user: &str) {
        if let Some(count) = self.users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(user);
            }
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &ClientInfo> {
        self.clients.iter().map(|e| &e.0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub(crate) fn stats(&self) -> PresenceStats {
        PresenceStats {
            num_clients: u32::try_from(self.clients.len()).unwrap_or(u32::MAX),
            num_users: u32::try_from(self.users.len()).unwrap_or(u32::MAX),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn info(user: &str, client: &str) -> ClientInfo {
        ClientInfo {
            user: user.into(),
            client: client.into(),
            ..ClientInfo::default()
        }
    }

    #[test]
    fn rejoin_with_another_user_moves_the_count() {
        let mut p = Presence::default();
        assert!(p.join(info("alice", "c1")));
        assert!(!p.join(info("bob", "c1")));
        assert_eq!(
            p.stats(),
            PresenceStats {
                num_clients: 1,
                num_users: 1
            }
        );
        assert_eq!(p.leave("c1").map(|i| i.user), Some("bob".to_owned()));
        assert!(p.users.is_empty());
    }
}
