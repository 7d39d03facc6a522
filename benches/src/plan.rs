//! Scenarios as plans: which connection subscribes where and who publishes.
//!
//! Every connection has a global index; its role follows from the index
//! alone, so worker processes agree on the plan without talking and each
//! takes a contiguous slice of the indexes.

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The load shapes of the benchmark issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scenario {
    /// (a) one room, many subscribers, few publishers.
    Fanout,
    /// (b) many small rooms, one publishing member in each.
    ManyRooms,
    /// (c) connections that subscribe once and stay idle: memory per connection.
    Idle,
    /// (d) connect + subscribe + disconnect loops: connects per second.
    Churn,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::ManyRooms => "many-rooms",
            Scenario::Idle => "idle",
            Scenario::Churn => "churn",
        }
    }
}

/// What one connection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Role {
    /// The room it subscribes to and/or publishes into.
    pub(crate) room: u64,
    /// Whether it subscribes to `room`.
    pub(crate) subscribes: bool,
    /// Whether it publishes into `room`.
    pub(crate) publishes: bool,
}

/// A scenario with its sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// The scenario.
    pub(crate) scenario: Scenario,
    /// Connections (for churn: concurrent connect loops).
    pub(crate) connections: u64,
    /// Rooms in use.
    pub(crate) rooms: u64,
    /// Connections per room that publish.
    publishers_per_room: u64,
    /// Subscribers per room, including publishers that subscribe.
    subscribers_per_room: u64,
}

impl Plan {
    /// (a): `subscribers` subscribe to room 0; `publishers` more connections
    /// publish into it without subscribing.
    pub(crate) fn fanout(subscribers: u64, publishers: u64) -> Plan {
        Plan {
            scenario: Scenario::Fanout,
            connections: subscribers + publishers,
            rooms: 1,
            publishers_per_room: publishers,
            subscribers_per_room: subscribers,
        }
    }

    /// (b): `rooms` rooms of `room_size` subscribed members, the first member
    /// of each also publishing (so it receives its own publications too).
    pub(crate) fn many_rooms(rooms: u64, room_size: u64) -> Plan {
        Plan {
            scenario: Scenario::ManyRooms,
            connections: rooms * room_size,
            rooms,
            publishers_per_room: u64::from(room_size > 0),
            subscribers_per_room: room_size,
        }
    }

    /// (c): `connections` subscribers spread round-robin over `rooms` rooms.
    pub(crate) fn idle(connections: u64, rooms: u64) -> Plan {
        let rooms = rooms.clamp(1, connections.max(1));
        Plan {
            scenario: Scenario::Idle,
            connections,
            rooms,
            publishers_per_room: 0,
            subscribers_per_room: connections.div_ceil(rooms),
        }
    }

    /// (d): `loops` concurrent connect + subscribe + close loops over `rooms` rooms.
    pub(crate) fn churn(loops: u64, rooms: u64) -> Plan {
        Plan {
            scenario: Scenario::Churn,
            connections: loops,
            rooms: rooms.max(1),
            publishers_per_room: 0,
            subscribers_per_room: 0,
        }
    }

    /// The role of connection `index` (`index < connections`).
    pub(crate) fn role(&self, index: u64) -> Role {
        match self.scenario {
            Scenario::Fanout => Role {
                room: 0,
                subscribes: index < self.subscribers_per_room,
                publishes: index >= self.subscribers_per_room,
            },
            Scenario::ManyRooms => Role {
                room: index / self.subscribers_per_room.max(1),
                subscribes: true,
                publishes: index.is_multiple_of(self.subscribers_per_room.max(1)),
            },
            Scenario::Idle | Scenario::Churn => Role {
                room: index % self.rooms,
                subscribes: true,
                publishes: false,
            },
        }
    }

    /// Which of `nodes` servers (URLs) connection `index` connects to.
    ///
    /// Round-robin by index, except that in fanout the subscribers alone go
    /// round-robin and every publisher goes to the first node: scenario (e),
    /// subscribers spread over a cluster and the publisher on one node. With
    /// one node (or none) it is always 0.
    pub(crate) fn node(&self, index: u64, nodes: usize) -> usize {
        let nodes = nodes.max(1) as u64;
        let node = match self.scenario {
            Scenario::Fanout if index >= self.subscribers_per_room => 0,
            _ => index % nodes,
        };
        node as usize
    }

    /// Publishing connections in total.
    pub(crate) fn publishers(&self) -> u64 {
        self.publishers_per_room * self.rooms
    }

    /// Deliveries one publication should cause: the subscribers of its room.
    pub(crate) fn receivers_per_publication(&self) -> u64 {
        self.subscribers_per_room
    }

    /// The connection indexes worker `worker` of `workers` owns: contiguous,
    /// sizes differing by at most one.
    pub(crate) fn slice(&self, worker: u32, workers: u32) -> Range<u64> {
        let workers = u64::from(workers.max(1));
        let worker = u64::from(worker).min(workers - 1);
        let start = self.connections * worker / workers;
        let end = self.connections * (worker + 1) / workers;
        start..end
    }
}

/// The channel name of room `room`.
pub(crate) fn channel(room: u64) -> String {
    format!("bench-{room}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(plan: &Plan) -> Vec<Role> {
        (0..plan.connections).map(|i| plan.role(i)).collect()
    }

    #[test]
    fn fanout_publishers_do_not_subscribe() {
        let plan = Plan::fanout(5, 2);
        let roles = roles(&plan);
        assert_eq!(roles.iter().filter(|r| r.subscribes).count(), 5);
        assert_eq!(roles.iter().filter(|r| r.publishes).count(), 2);
        assert!(
            roles
                .iter()
                .all(|r| r.room == 0 && r.subscribes != r.publishes)
        );
        assert_eq!(plan.publishers(), 2);
        assert_eq!(plan.receivers_per_publication(), 5);
    }

    #[test]
    fn many_rooms_has_one_subscribed_publisher_per_room() {
        let plan = Plan::many_rooms(4, 3);
        assert_eq!(plan.connections, 12);
        let roles = roles(&plan);
        for room in 0..4 {
            let members: Vec<_> = roles.iter().filter(|r| r.room == room).collect();
            assert_eq!(members.len(), 3);
            assert!(members.iter().all(|r| r.subscribes));
            assert_eq!(members.iter().filter(|r| r.publishes).count(), 1);
        }
        assert_eq!(plan.publishers(), 4);
        assert_eq!(plan.receivers_per_publication(), 3);
    }

    #[test]
    fn idle_spreads_subscribers_over_rooms_and_never_publishes() {
        let plan = Plan::idle(10, 3);
        let roles = roles(&plan);
        assert!(
            roles
                .iter()
                .all(|r| r.subscribes && !r.publishes && r.room < 3)
        );
        assert_eq!(plan.publishers(), 0);
        assert_eq!(Plan::idle(2, 50).rooms, 2);
    }

    #[test]
    fn one_node_takes_every_connection() {
        for plan in [
            Plan::fanout(5, 2),
            Plan::many_rooms(3, 4),
            Plan::idle(10, 3),
            Plan::churn(4, 2),
        ] {
            assert!((0..plan.connections).all(|i| plan.node(i, 1) == 0));
            assert!((0..plan.connections).all(|i| plan.node(i, 0) == 0));
        }
    }

    #[test]
    fn fanout_spreads_subscribers_and_keeps_publishers_on_the_first_node() {
        let plan = Plan::fanout(5000, 2);
        let mut subscribers = [0u64; 3];
        for index in 0..plan.connections {
            let node = plan.node(index, 3);
            if plan.role(index).publishes {
                assert_eq!(node, 0, "publisher {index}");
            } else {
                subscribers[node] += 1;
            }
        }
        assert_eq!(subscribers, [1667, 1667, 1666]);
        // Round-robin, so every worker's contiguous slice is spread too.
        let slice = plan.slice(1, 3);
        let nodes: Vec<usize> = slice.take(3).map(|i| plan.node(i, 3)).collect();
        assert_eq!(nodes.len(), 3);
        assert!(nodes.contains(&0) && nodes.contains(&1) && nodes.contains(&2));
    }

    #[test]
    fn other_scenarios_go_round_robin_over_nodes() {
        let plan = Plan::many_rooms(3, 4);
        let nodes: Vec<usize> = (0..plan.connections).map(|i| plan.node(i, 3)).collect();
        assert_eq!(nodes, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
        let plan = Plan::idle(5, 2);
        let nodes: Vec<usize> = (0..plan.connections).map(|i| plan.node(i, 2)).collect();
        assert_eq!(nodes, [0, 1, 0, 1, 0]);
    }

    #[test]
    fn slices_partition_the_connections() {
        let plan = Plan::fanout(5000, 1);
        let slices: Vec<_> = (0..3).map(|w| plan.slice(w, 3)).collect();
        assert_eq!(slices[0].start, 0);
        assert_eq!(slices[2].end, 5001);
        for pair in slices.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert!(
            slices
                .iter()
                .all(|s| (1666..=1667).contains(&(s.end - s.start)))
        );
        assert_eq!(plan.slice(0, 0), 0..5001);
    }
}
