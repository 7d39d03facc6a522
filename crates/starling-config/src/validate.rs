//! Checks of values that parse but cannot work; each error names the key and the value.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use starling_placement::PlacementError;

use crate::config::{ChannelOptions, Config};
use crate::error::ConfigError;

/// Bounds of `cluster.failover_timeout`. Below a second, a busy node or a GC-like pause on a
/// peer would be taken for a death; above a minute, a dead owner's rooms stay unusable for
/// too long.
const FAILOVER_TIMEOUT_MIN: Duration = Duration::from_secs(1);
const FAILOVER_TIMEOUT_MAX: Duration = Duration::from_secs(60);

impl Config {
    /// Check the configuration as a whole. Returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.node.http_socket_addr()?;

        if self.node.shutdown_grace.is_zero() {
            return Err(invalid(
                "node.shutdown_grace",
                quoted(&self.node.shutdown_grace),
                "must be greater than zero",
            ));
        }
        let client = &self.client;
        if client.ping_interval.is_zero() {
            return Err(invalid(
                "client.ping_interval",
                quoted(&client.ping_interval),
                "must be greater than zero",
            ));
        }
        if client.pong_timeout.is_zero() {
            return Err(invalid(
                "client.pong_timeout",
                quoted(&client.pong_timeout),
                "must be greater than zero",
            ));
        }
        // A pong is awaited within one ping cycle; a longer wait would overlap the next ping.
        if client.pong_timeout >= client.ping_interval {
            return Err(invalid(
                "client.pong_timeout",
                quoted(&client.pong_timeout),
                "must be less than client.ping_interval",
            ));
        }
        if client.queue_max_size == 0 {
            return Err(invalid(
                "client.queue_max_size",
                "0".to_owned(),
                "must be greater than zero",
            ));
        }
        if self.websocket.message_size_limit == 0 {
            return Err(invalid(
                "websocket.message_size_limit",
                "0".to_owned(),
                "must be greater than zero",
            ));
        }

        if self.http_api.max_request_body_size == 0 {
            return Err(invalid(
                "http_api.max_request_body_size",
                "0".to_owned(),
                "must be greater than zero",
            ));
        }

        self.validate_http_server()?;
        self.validate_channel()?;
        self.validate_cluster()?;

        let personal = &client.subscribe_to_user_personal_channel;
        if personal.single_connection {
            return Err(ConfigError::NotSupported {
                key: "client.subscribe_to_user_personal_channel.single_connection".to_owned(),
                value: "true".to_owned(),
            });
        }
        if personal.enabled
            && !personal.personal_channel_namespace.is_empty()
            && !self
                .channel
                .namespaces
                .iter()
                .any(|ns| ns.name == personal.personal_channel_namespace)
        {
            return Err(invalid(
                "client.subscribe_to_user_personal_channel.personal_channel_namespace",
                quoted(&personal.personal_channel_namespace),
                "no namespace of that name is defined in [[channel.namespaces]]",
            ));
        }
        Ok(())
    }

    fn validate_http_server(&self) -> Result<(), ConfigError> {
        let server = &self.http_server;
        if server.read_header_timeout.is_zero() {
            return Err(invalid(
                "http_server.read_header_timeout",
                quoted(&server.read_header_timeout),
                "must be greater than zero",
            ));
        }
        // Whether the files exist and hold a usable certificate is checked when the server
        // starts (the gateway loads them); here only that TLS has something to load.
        if server.tls.enabled {
            if server.tls.cert_pem.trim().is_empty() {
                return Err(invalid(
                    "http_server.tls.cert_pem",
                    quoted(&server.tls.cert_pem),
                    "must name a PEM file (or hold PEM text) when http_server.tls.enabled is true",
                ));
            }
            if server.tls.key_pem.trim().is_empty() {
                return Err(invalid(
                    "http_server.tls.key_pem",
                    quoted(&server.tls.key_pem),
                    "must name a PEM file (or hold PEM text) when http_server.tls.enabled is true",
                ));
            }
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let cluster = &self.cluster;
        // Raft and the shard map use 0 as "no node", and certificates name the id.
        if cluster.node_id == 0 {
            return Err(invalid(
                "cluster.node_id",
                "0".to_owned(),
                "must be greater than zero",
            ));
        }
        check_host_port("cluster.addr", &cluster.addr, PortZero::Allowed)?;
        if !cluster.advertise_addr.is_empty() {
            // Others dial this address, so port 0 cannot stand for "any".
            check_host_port(
                "cluster.advertise_addr",
                &cluster.advertise_addr,
                PortZero::Refused,
            )?;
        }
        for (i, seed) in cluster.join.iter().enumerate() {
            check_host_port(&format!("cluster.join[{i}]"), seed, PortZero::Refused)?;
        }
        if cluster.max_voters == 0 {
            return Err(invalid(
                "cluster.max_voters",
                "0".to_owned(),
                "must be at least 1",
            ));
        }
        if let Err(error) = starling_placement::validate_shard_count(cluster.shard_count) {
            let reason = match error {
                PlacementError::TooManyShards { .. } => "must be at most 65536",
                _ => "must be a power of two (1, 2, 4, ... 65536)",
            };
            return Err(invalid(
                "cluster.shard_count",
                cluster.shard_count.to_string(),
                reason,
            ));
        }
        let failover = cluster.failover_timeout.get();
        if !(FAILOVER_TIMEOUT_MIN..=FAILOVER_TIMEOUT_MAX).contains(&failover) {
            return Err(invalid(
                "cluster.failover_timeout",
                quoted(&cluster.failover_timeout),
                "must be between 1s and 60s",
            ));
        }
        if !(1..=2).contains(&cluster.replication_factor) {
            return Err(invalid(
                "cluster.replication_factor",
                cluster.replication_factor.to_string(),
                "must be 1 (no replica) or 2 (one replica per shard)",
            ));
        }
        Ok(())
    }

    fn validate_channel(&self) -> Result<(), ConfigError> {
        let channel = &self.channel;
        if channel.max_length == 0 {
            return Err(invalid(
                "channel.max_length",
                "0".to_owned(),
                "must be greater than zero",
            ));
        }
        let separators = [
            ("channel.namespace_boundary", &channel.namespace_boundary),
            ("channel.user_boundary", &channel.user_boundary),
            ("channel.user_separator", &channel.user_separator),
        ];
        for (key, value) in separators {
            if value.is_empty() {
                return Err(invalid(key, quoted(value), "must not be empty"));
            }
        }
        // The private prefix may be empty (no private channels), but must not collide.
        let mut marks = separators.to_vec();
        if !channel.private_prefix.is_empty() {
            marks.insert(0, ("channel.private_prefix", &channel.private_prefix));
        }
        for (i, (key, value)) in marks.iter().enumerate() {
            if let Some((other, _)) = marks[..i].iter().find(|(_, v)| v == value) {
                return Err(ConfigError::InvalidValue {
                    key: (*key).to_owned(),
                    value: quoted(value),
                    reason: distinct_reason(other),
                });
            }
        }

        // Every mark must itself be a character channel names may hold, or no channel could
        // use it.
        for (key, value) in &marks {
            if value
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || channel.allowed_symbols.contains(c)))
            {
                return Err(ConfigError::InvalidValue {
                    key: "channel.allowed_symbols".to_owned(),
                    value: quoted(&channel.allowed_symbols),
                    reason: mark_not_allowed_reason(key),
                });
            }
        }

        validate_options(&channel.without_namespace, "channel.without_namespace")?;
        let mut seen = HashSet::new();
        for (i, ns) in channel.namespaces.iter().enumerate() {
            let key = format!("channel.namespaces[{i}].name");
            if ns.name.is_empty() {
                return Err(ConfigError::InvalidValue {
                    key,
                    value: quoted(&ns.name),
                    reason: "namespace name must not be empty",
                });
            }
            if !ns
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(ConfigError::InvalidValue {
                    key,
                    value: quoted(&ns.name),
                    reason: "namespace name may only contain A-Z, a-z, 0-9, '_', '-' and '.'",
                });
            }
            if !seen.insert(ns.name.as_str()) {
                return Err(ConfigError::DuplicateNamespace {
                    key,
                    name: ns.name.clone(),
                });
            }
            validate_options(&ns.options, &format!("channel.namespaces[{i}]"))?;
        }
        Ok(())
    }
}

/// Checks Centrifugo also makes: history needs both a size and a TTL, and recovery needs
/// history to recover from.
fn validate_options(options: &ChannelOptions, prefix: &str) -> Result<(), ConfigError> {
    let has_size = options.history_size > 0;
    let has_ttl = !options.history_ttl.is_zero();
    if has_size && !has_ttl {
        return Err(ConfigError::InvalidValue {
            key: format!("{prefix}.history_ttl"),
            value: quoted(&options.history_ttl),
            reason: "history_size is set, so history_ttl must be greater than zero",
        });
    }
    if has_ttl && !has_size {
        return Err(ConfigError::InvalidValue {
            key: format!("{prefix}.history_size"),
            value: "0".to_owned(),
            reason: "history_ttl is set, so history_size must be greater than zero",
        });
    }
    if options.force_recovery && !has_size {
        return Err(ConfigError::InvalidValue {
            key: format!("{prefix}.force_recovery"),
            value: "true".to_owned(),
            reason: "recovery needs history: set history_size and history_ttl",
        });
    }
    Ok(())
}

/// Whether a `host:port` may have port 0 (bind to any free port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortZero {
    Allowed,
    Refused,
}

/// Checks the form of a `host:port` value: an IP address and port, or a host name and port
/// (IPv6 in brackets). Whether a name resolves is only known when the binary starts.
fn check_host_port(key: &str, value: &str, port_zero: PortZero) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::InvalidValue {
        key: key.to_owned(),
        value: quoted(&value),
        reason,
    };
    let port = match value.parse::<SocketAddr>() {
        Ok(addr) => addr.port(),
        Err(_) => {
            let Some((host, port)) = value.rsplit_once(':') else {
                return Err(bad("expected host:port, such as \"127.0.0.1:7000\""));
            };
            let host_ok = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            if !host_ok {
                return Err(bad(
                    "expected host:port with an IP address or a host name (IPv6 in brackets)",
                ));
            }
            port.parse::<u16>()
                .map_err(|_| bad("the port must be a number from 0 to 65535"))?
        }
    };
    if port == 0 && port_zero == PortZero::Refused {
        return Err(bad("port 0 cannot be dialled; give the real port"));
    }
    Ok(())
}

fn distinct_reason(other_key: &str) -> &'static str {
    match other_key {
        "channel.private_prefix" => "must differ from channel.private_prefix",
        "channel.namespace_boundary" => "must differ from channel.namespace_boundary",
        _ => "must differ from channel.user_boundary",
    }
}

fn invalid(key: &str, value: String, reason: &'static str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value,
        reason,
    }
}

/// A value written as a TOML string, so the error shows exactly what was configured.
fn mark_not_allowed_reason(key: &str) -> &'static str {
    match key {
        "channel.private_prefix" => "must include the characters of channel.private_prefix",
        "channel.namespace_boundary" => "must include the characters of channel.namespace_boundary",
        "channel.user_boundary" => "must include the characters of channel.user_boundary",
        _ => "must include the characters of channel.user_separator",
    }
}

fn quoted(value: &impl std::fmt::Display) -> String {
    format!("{:?}", value.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ChannelNamespace;
    use crate::duration::GoDuration;

    fn ns(name: &str) -> ChannelNamespace {
        ChannelNamespace {
            name: name.into(),
            options: ChannelOptions::default(),
        }
    }

    fn err_of(c: &Config) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn default_config_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn bad_http_addr_names_key_and_value() {
        let mut c = Config::default();
        c.node.http_addr = "localhost".into();
        let e = err_of(&c);
        assert!(
            e.contains("node.http_addr") && e.contains("\"localhost\""),
            "{e}"
        );
    }

    #[test]
    fn zero_ping_interval_is_rejected() {
        let mut c = Config::default();
        c.client.ping_interval = GoDuration::ZERO;
        let e = err_of(&c);
        assert!(
            e.contains("client.ping_interval") && e.contains("\"0s\""),
            "{e}"
        );
    }

    #[test]
    fn zero_read_header_timeout_is_rejected() {
        let mut c = Config::default();
        c.http_server.read_header_timeout = GoDuration::ZERO;
        assert!(err_of(&c).contains("http_server.read_header_timeout"));
    }

    #[test]
    fn tls_without_certificate_or_key_is_rejected() {
        let mut c = Config::default();
        c.http_server.tls.enabled = true;
        c.http_server.tls.key_pem = "server.key".to_owned();
        assert!(err_of(&c).contains("http_server.tls.cert_pem"));
        c.http_server.tls.cert_pem = "server.crt".to_owned();
        c.http_server.tls.key_pem = String::new();
        assert!(err_of(&c).contains("http_server.tls.key_pem"));
        c.http_server.tls.key_pem = "server.key".to_owned();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn disabled_tls_needs_no_files() {
        let mut c = Config::default();
        c.http_server.tls.cert_pem = String::new();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn zero_api_body_limit_is_rejected() {
        let mut c = Config::default();
        c.http_api.max_request_body_size = 0;
        assert!(err_of(&c).contains("http_api.max_request_body_size"));
    }

    #[test]
    fn zero_pong_timeout_is_rejected() {
        let mut c = Config::default();
        c.client.pong_timeout = GoDuration::ZERO;
        assert!(err_of(&c).contains("client.pong_timeout"));
    }

    #[test]
    fn pong_timeout_not_below_ping_interval_is_rejected() {
        let mut c = Config::default();
        c.client.pong_timeout = GoDuration::from_secs(30);
        let e = err_of(&c);
        assert!(
            e.contains("client.pong_timeout") && e.contains("\"30s\""),
            "{e}"
        );
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let mut c = Config::default();
        c.client.queue_max_size = 0;
        assert!(err_of(&c).contains("client.queue_max_size"));
        let mut c = Config::default();
        c.websocket.message_size_limit = 0;
        assert!(err_of(&c).contains("websocket.message_size_limit"));
        let mut c = Config::default();
        c.channel.max_length = 0;
        assert!(err_of(&c).contains("channel.max_length"));
    }

    #[test]
    fn namespace_names_are_checked() {
        let mut c = Config::default();
        c.channel.namespaces = vec![ns("chat"), ns("")];
        assert!(err_of(&c).contains("channel.namespaces[1].name"));

        c.channel.namespaces = vec![ns("v1.chat")];
        c.validate().unwrap();

        c.channel.namespaces = vec![ns("chat room")];
        let e = err_of(&c);
        assert!(
            e.contains("channel.namespaces[0].name") && e.contains("\"chat room\""),
            "{e}"
        );

        c.channel.namespaces = vec![ns("a-b_C9"), ns("x"), ns("x")];
        let e = c.validate().unwrap_err();
        assert!(
            matches!(&e, ConfigError::DuplicateNamespace { key, name }
                if key == "channel.namespaces[2].name" && name == "x"),
            "{e}"
        );
    }

    #[test]
    fn boundaries_must_be_non_empty_and_distinct() {
        let mut c = Config::default();
        c.channel.user_boundary = String::new();
        assert!(err_of(&c).contains("channel.user_boundary"));

        let mut c = Config::default();
        c.channel.user_separator = ":".into();
        let e = err_of(&c);
        assert!(
            e.contains("channel.user_separator") && e.contains("namespace_boundary"),
            "{e}"
        );

        let mut c = Config::default();
        c.channel.namespace_boundary = "$".into();
        assert!(err_of(&c).contains("channel.namespace_boundary"));

        let mut c = Config::default();
        c.channel.private_prefix = String::new();
        c.validate().unwrap();
    }

    #[test]
    fn personal_channel_namespace_must_exist() {
        let mut c = Config::default();
        c.client.subscribe_to_user_personal_channel.enabled = true;
        c.client
            .subscribe_to_user_personal_channel
            .personal_channel_namespace = "personal".into();
        let e = err_of(&c);
        assert!(
            e.contains("personal_channel_namespace") && e.contains("\"personal\""),
            "{e}"
        );
        c.channel.namespaces.push(ns("personal"));
        c.validate().unwrap();
    }

    #[test]
    fn history_needs_both_size_and_ttl() {
        let mut c = Config::default();
        c.channel.without_namespace.history_size = 10;
        let e = err_of(&c);
        assert!(e.contains("channel.without_namespace.history_ttl"), "{e}");

        let mut c = Config::default();
        let mut n = ns("chat");
        n.options.history_ttl = GoDuration::from_secs(60);
        c.channel.namespaces.push(n);
        let e = err_of(&c);
        assert!(e.contains("channel.namespaces[0].history_size"), "{e}");
    }

    #[test]
    fn recovery_needs_history() {
        let mut c = Config::default();
        let mut n = ns("chat");
        n.options.force_recovery = true;
        c.channel.namespaces.push(n);
        let e = err_of(&c);
        assert!(e.contains("channel.namespaces[0].force_recovery"), "{e}");
        c.channel.namespaces[0].options.history_size = 5;
        c.channel.namespaces[0].options.history_ttl = GoDuration::from_secs(5);
        c.validate().unwrap();
    }

    #[test]
    fn single_connection_is_not_supported_yet() {
        let mut c = Config::default();
        c.client
            .subscribe_to_user_personal_channel
            .single_connection = true;
        let e = err_of(&c);
        assert!(
            e.contains("single_connection") && e.contains("not supported"),
            "{e}"
        );
    }
    #[test]
    fn cluster_node_id_zero_is_rejected() {
        let mut c = Config::default();
        c.cluster.node_id = 0;
        let e = err_of(&c);
        assert!(e.contains("cluster.node_id") && e.contains("= 0"), "{e}");
    }

    #[test]
    fn cluster_addresses_need_host_and_port() {
        let mut c = Config::default();
        c.cluster.addr = "127.0.0.1".into();
        let e = err_of(&c);
        assert!(
            e.contains("cluster.addr") && e.contains("\"127.0.0.1\""),
            "{e}"
        );
        for good in [
            "0.0.0.0:0",
            "[::1]:7000",
            "node-1.internal:7000",
            "localhost:7001",
        ] {
            c.cluster.addr = good.into();
            c.validate().unwrap();
        }
        for bad in [":7000", "host:port", "host:70000", "a b:7000", "::1:7000"] {
            c.cluster.addr = bad.into();
            assert!(err_of(&c).contains("cluster.addr"), "{bad}");
        }
    }

    #[test]
    fn cluster_join_and_advertise_refuse_port_zero() {
        let mut c = Config::default();
        c.cluster.join = vec!["10.0.0.1:7000".into(), "10.0.0.2:0".into()];
        let e = err_of(&c);
        assert!(
            e.contains("cluster.join[1]") && e.contains("\"10.0.0.2:0\""),
            "{e}"
        );
        c.cluster.join = vec!["10.0.0.1:7000".into(), "seed.example:7000".into()];
        c.validate().unwrap();

        c.cluster.advertise_addr = "10.0.0.3:0".into();
        assert!(err_of(&c).contains("cluster.advertise_addr"));
        c.cluster.advertise_addr = "10.0.0.3:7000".into();
        c.validate().unwrap();
    }

    #[test]
    fn cluster_needs_at_least_one_voter() {
        let mut c = Config::default();
        c.cluster.max_voters = 0;
        assert!(err_of(&c).contains("cluster.max_voters"));
        c.cluster.max_voters = 1;
        c.validate().unwrap();
    }

    #[test]
    fn cluster_shard_count_is_a_bounded_power_of_two() {
        let mut c = Config::default();
        for bad in [0, 3, 96, 1 << 17] {
            c.cluster.shard_count = bad;
            let e = err_of(&c);
            assert!(
                e.contains("cluster.shard_count") && e.contains(&bad.to_string()),
                "{e}"
            );
        }
        c.cluster.shard_count = 1 << 17;
        assert!(err_of(&c).contains("at most 65536"));
        for good in [1, 2, 256, 1 << 16] {
            c.cluster.shard_count = good;
            c.validate().unwrap();
        }
    }

    #[test]
    fn cluster_replication_factor_is_one_or_two() {
        for bad in [0, 3] {
            let mut c = Config::default();
            c.cluster.replication_factor = bad;
            let e = c.validate().expect_err("invalid").to_string();
            assert!(e.contains("cluster.replication_factor"), "{e}");
        }
        let mut c = Config::default();
        c.cluster.replication_factor = 1;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn cluster_failover_timeout_is_between_one_second_and_a_minute() {
        let mut c = Config::default();
        for bad in [GoDuration::from_millis(999), GoDuration::from_secs(61)] {
            c.cluster.failover_timeout = bad;
            let e = err_of(&c);
            assert!(
                e.contains("cluster.failover_timeout") && e.contains(&format!("\"{bad}\"")),
                "{e}"
            );
        }
        for good in [GoDuration::from_secs(1), GoDuration::from_secs(60)] {
            c.cluster.failover_timeout = good;
            c.validate().unwrap();
        }
    }
}
