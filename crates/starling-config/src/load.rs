//! Layering of configuration sources: embedded defaults, a TOML file, `STARLING_*` variables.
//!
//! The file and the environment are merged into one TOML table first and deserialized once,
//! so an error from either source names the same dotted key path, and keys left unset fall
//! back to the `Default` impls.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::Config;
use crate::error::ConfigError;

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "STARLING_";

/// `STARLING_*` variables the binary reads itself; they are not configuration keys and are
/// not reported as unknown.
///
/// - `STARLING_CONFIG`: path of the configuration file.
/// - `STARLING_LOG`: a log filter that overrides `log.level`.
pub const RESERVED_ENV_VARS: &[&str] = &["STARLING_CONFIG", "STARLING_LOG"];

const DEFAULT_TOML: &str = include_str!("default.toml");

/// The default configuration as a commented TOML file (what `starling config default`
/// prints). It parses to exactly [`Config::default()`].
pub fn default_toml() -> &'static str {
    DEFAULT_TOML
}

/// The environment variable that sets the key at dotted `path`
/// (`client.token.hmac_secret_key` -> `STARLING_CLIENT_TOKEN_HMAC_SECRET_KEY`).
pub fn env_var_name(path: &str) -> String {
    let mut name = String::with_capacity(ENV_PREFIX.len() + path.len());
    name.push_str(ENV_PREFIX);
    for c in path.chars() {
        name.push(if c == '.' {
            '_'
        } else {
            c.to_ascii_uppercase()
        });
    }
    name
}

/// This process's environment as UTF-8 pairs for [`Config::load`].
///
/// Unlike `std::env::vars()`, never panics: a name or value that is not UTF-8 is converted
/// lossily (such a `STARLING_*` variable then fails to parse or match, and is reported).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// The kind of value a leaf key holds, taken from its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeafKind {
    Bool,
    Integer,
    String,
    Array,
}

impl LeafKind {
    fn expected(self) -> &'static str {
        match self {
            LeafKind::Bool => "true, false, 1 or 0",
            LeafKind::Integer => "an integer",
            LeafKind::String => "a string",
            LeafKind::Array => "a JSON array (or, for strings, a comma-separated list)",
        }
    }
}

/// Every leaf key of the configuration tree as a dotted path, in tree order.
///
/// Leaves are the values that are not tables in the serialized default configuration;
/// arrays (`client.allowed_origins`, `channel.namespaces`) are leaves.
pub fn leaf_keys() -> Vec<String> {
    leaves().into_iter().map(|(path, _)| path).collect()
}

fn leaves() -> Vec<(String, LeafKind)> {
    let mut out = Vec::new();
    if let Ok(toml::Value::Table(table)) = toml::Value::try_from(Config::default()) {
        walk(&table, "", &mut out);
    }
    out
}

fn walk(table: &toml::Table, prefix: &str, out: &mut Vec<(String, LeafKind)>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let kind = match value {
            toml::Value::Table(inner) => {
                walk(inner, &path, out);
                continue;
            }
            toml::Value::Boolean(_) => LeafKind::Bool,
            toml::Value::Integer(_) => LeafKind::Integer,
            toml::Value::Array(_) => LeafKind::Array,
            // Durations and paths serialize as strings; floats and datetimes are not used.
            _ => LeafKind::String,
        };
        out.push((path, kind));
    }
}

impl Config {
    /// Parse a TOML document over the defaults. Does not read the environment and does not
    /// validate.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let table = parse_table(text, "<string>")?;
        from_table(table)
    }

    /// Load the configuration: defaults, then the TOML `file` if given, then the `STARLING_*`
    /// variables among `env` (pass [`process_env()`]; tests pass their own list).
    ///
    /// Does not call [`Config::validate`]: the binary applies command-line flags to the
    /// result first, then validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                        path: path.to_path_buf(),
                        source,
                    })?;
                parse_table(&text, &path.display().to_string())?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        from_table(table)
    }

    /// This configuration as a TOML document.
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Key {
            key: "(whole configuration)".to_owned(),
            message: format!("cannot be written as TOML: {e}"),
        })
    }
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
}

fn from_table(table: toml::Table) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let key = e.path().to_string();
        let message = e.inner().message().to_owned();
        ConfigError::Key { key, message }
    })
}

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let by_name: BTreeMap<String, (String, LeafKind)> = leaves()
        .into_iter()
        .map(|(path, kind)| (env_var_name(&path), (path, kind)))
        .collect();
    // Sorted so that, with several bad variables, the same one is reported every time.
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .filter(|(name, _)| !RESERVED_ENV_VARS.contains(&name.as_str()))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let Some((path, kind)) = by_name.get(&name) else {
            return Err(ConfigError::UnknownEnvVar { name });
        };
        // As in Centrifugo, an empty variable counts as unset, so templated deployments
        // that leave a variable blank keep the file's value.
        if raw.is_empty() {
            continue;
        }
        let value = parse_env_value(*kind, &raw).ok_or_else(|| ConfigError::EnvValue {
            name: name.clone(),
            key: path.clone(),
            value: raw.clone(),
            expected: kind.expected(),
        })?;
        set_path(table, path, value)?;
    }
    Ok(())
}

fn parse_env_value(kind: LeafKind, raw: &str) -> Option<toml::Value> {
    match kind {
        LeafKind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(toml::Value::Boolean(true)),
            "false" | "0" => Some(toml::Value::Boolean(false)),
            _ => None,
        },
        LeafKind::Integer => raw.trim().parse().ok().map(toml::Value::Integer),
        LeafKind::String => Some(toml::Value::String(raw.to_owned())),
        LeafKind::Array => {
            let trimmed = raw.trim();
            if trimmed.starts_with('[') {
                let json: serde_json::Value = serde_json::from_str(trimmed).ok()?;
                // toml has no null; a JSON null makes the conversion fail, which is reported.
                toml::Value::try_from(json).ok()
            } else {
                Some(toml::Value::Array(
                    trimmed
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| toml::Value::String(s.to_owned()))
                        .collect(),
                ))
            }
        }
    }
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<(), ConfigError> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else {
        return Ok(());
    };
    let mut current = table;
    let mut walked = String::new();
    for part in parts {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(part);
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            other => {
                return Err(ConfigError::Key {
                    key: walked,
                    message: format!("expected a table, found {}", other.type_str()),
                });
            }
        };
    }
    current.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{ChannelOptions, LogFormat};
    use crate::duration::GoDuration;

    /// The example from the task, verbatim: a Centrifugo v6 style config must load as is.
    const CENTRIFUGO_STYLE: &str = r#"
[client.token]
hmac_secret_key = "secret"

[client.subscribe_to_user_personal_channel]
enabled = true

[channel.without_namespace]
presence = true
join_leave = true
force_push_join_leave = true
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_publish_for_subscriber = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true

[[channel.namespaces]]
name = "smallhistory"
history_size = 2
history_ttl = "300s"
force_recovery = true
allow_publish_for_subscriber = true
allow_history_for_subscriber = true
"#;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(None, env(vars))
    }

    #[test]
    fn centrifugo_style_config_loads_as_written() {
        let c = Config::from_toml_str(CENTRIFUGO_STYLE).unwrap();
        c.validate().unwrap();
        assert_eq!(c.client.token.hmac_secret_key, "secret");
        assert!(c.client.subscribe_to_user_personal_channel.enabled);
        let w = &c.channel.without_namespace;
        assert!(w.presence && w.join_leave && w.force_push_join_leave && w.force_recovery);
        assert_eq!(w.history_size, 100);
        assert_eq!(w.history_ttl.get(), Duration::from_secs(300));
        assert!(w.allow_publish_for_subscriber);
        assert!(w.allow_presence_for_subscriber && w.allow_history_for_subscriber);
        assert!(!w.allow_subscribe_for_client);
        assert_eq!(c.channel.namespaces.len(), 1);
        let ns = &c.channel.namespaces[0];
        assert_eq!(ns.name, "smallhistory");
        assert_eq!(ns.options.history_size, 2);
        assert_eq!(ns.options.history_ttl, GoDuration::from_secs(300));
        assert!(ns.options.force_recovery && ns.options.allow_publish_for_subscriber);
        assert!(!ns.options.presence);
        // Everything not written keeps its default.
        assert_eq!(c.node, Config::default().node);
        assert_eq!(c.client.ping_interval, GoDuration::from_secs(25));
        let r = c.resolve_channel("smallhistory:x").unwrap();
        assert_eq!(r.options.history_size, 2);
        assert_eq!(c.personal_channel("42"), "#42");
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let c = Config::default();
        assert_eq!(c.node.data_dir, std::path::PathBuf::from("./starling-data"));
        assert_eq!(c.node.http_addr, "127.0.0.1:8000");
        assert_eq!(c.node.name, "");
        assert_eq!(c.log.level, "info,openraft=warn");
        assert_eq!(c.log.format, LogFormat::Text);
        assert!(c.client.allowed_origins.is_empty());
        assert!(!c.client.allow_anonymous_connect_without_token);
        assert_eq!(c.client.ping_interval.get(), Duration::from_secs(25));
        assert_eq!(c.client.pong_timeout.get(), Duration::from_secs(8));
        assert_eq!(c.client.expired_close_delay.get(), Duration::from_secs(25));
        assert_eq!(c.client.queue_max_size, 1_048_576);
        assert_eq!(c.client.channel_limit, 128);
        assert_eq!(c.client.connection_limit, 0);
        assert_eq!(c.client.history_max_publication_limit, 300);
        assert_eq!(c.client.recovery_max_publication_limit, 300);
        assert!(!c.client.connect_include_server_time);
        assert!(c.client.token.has_no_keys());
        assert!(!c.client.subscription_token.enabled);
        assert!(!c.client.subscribe_to_user_personal_channel.enabled);
        assert_eq!(c.websocket.message_size_limit, 65_536);
        assert_eq!(c.websocket.read_buffer_size, 0);
        assert_eq!(c.websocket.write_buffer_size, 0);
        assert_eq!(c.http_api.key, "");
        assert_eq!(c.http_api.max_request_body_size, 1_048_576);
        assert_eq!(
            c.http_server.read_header_timeout.get(),
            Duration::from_secs(10)
        );
        assert!(!c.http_server.tls.enabled);
        assert_eq!(c.http_server.tls.cert_pem, "");
        assert_eq!(c.http_server.tls.key_pem, "");
        assert_eq!(c.channel.max_length, 255);
        assert_eq!(c.channel.private_prefix, "$");
        assert_eq!(c.channel.namespace_boundary, ":");
        assert_eq!(c.channel.user_boundary, "#");
        assert_eq!(c.channel.user_separator, ",");
        assert_eq!(c.channel.without_namespace, ChannelOptions::default());
        assert!(c.channel.namespaces.is_empty());
        assert_eq!(c.cluster.node_id, 1);
        assert_eq!(c.cluster.addr, "127.0.0.1:7000");
        assert_eq!(c.cluster.advertise_addr, "");
        assert!(c.cluster.join.is_empty());
        assert_eq!(c.cluster.tls_dir, std::path::PathBuf::new());
        assert_eq!(c.cluster.max_voters, 3);
        assert_eq!(c.cluster.shard_count, 256);
        assert_eq!(c.cluster.failover_timeout.get(), Duration::from_secs(3));
    }

    #[test]
    fn embedded_default_file_is_exactly_the_defaults() {
        assert_eq!(
            Config::from_toml_str(default_toml()).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn embedded_default_file_shows_every_key() {
        let text = default_toml();
        for key in leaf_keys() {
            let leaf = key.rsplit('.').next().unwrap();
            let shown = if key == "channel.namespaces" {
                text.contains("[[channel.namespaces]]")
            } else {
                text.lines().any(|l| l.starts_with(&format!("{leaf} = ")))
            };
            assert!(shown, "default.toml does not show {key}");
        }
    }

    #[test]
    fn docs_list_every_key_and_reserved_variable() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let docs = std::fs::read_to_string(&path).unwrap();
        for key in leaf_keys() {
            assert!(
                docs.contains(&format!("| `{key}` |")),
                "docs/configuration.md has no table row for `{key}`"
            );
        }
        for var in RESERVED_ENV_VARS {
            assert!(docs.contains(&format!("`{var}`")), "{var} undocumented");
        }
    }

    #[test]
    fn empty_document_gives_defaults() {
        assert_eq!(Config::from_toml_str("").unwrap(), Config::default());
        assert_eq!(load_env(&[]).unwrap(), Config::default());
    }

    #[test]
    fn serialized_config_reads_back_equal() {
        let mut c = Config::from_toml_str(CENTRIFUGO_STYLE).unwrap();
        c.client.allowed_origins = vec!["https://*.example.com".into()];
        c.client.subscription_token.enabled = true;
        c.client.subscription_token.token.issuer = "me".into();
        let text = c.to_toml_string().unwrap();
        assert_eq!(Config::from_toml_str(&text).unwrap(), c, "{text}");
    }

    #[test]
    fn unknown_key_error_names_its_path() {
        let text = "[[channel.namespaces]]\nname = \"a\"\nhistroy_size = 5\n";
        let e = Config::from_toml_str(text).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("channel.namespaces[0].histroy_size"), "{msg}");

        let e = Config::from_toml_str("[client]\nchanel_limit = 5\n").unwrap_err();
        assert!(e.to_string().contains("client.chanel_limit"), "{e}");

        let e = Config::from_toml_str("[nodes]\nname = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("`nodes`"), "{e}");

        let e = Config::from_toml_str("[channel.without_namespace]\nhistory_recover = true\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("channel.without_namespace.history_recover"),
            "{e}"
        );

        let e = Config::from_toml_str("[client.subscription_token]\nhmac_secret = \"x\"\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("client.subscription_token.hmac_secret"),
            "{e}"
        );
    }

    #[test]
    fn bad_duration_error_names_key_and_value() {
        let e = Config::from_toml_str("[client]\nping_interval = \"25 seconds\"\n").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("client.ping_interval") && msg.contains("\"25 seconds\""),
            "{msg}"
        );

        let text = "[[channel.namespaces]]\nname = \"a\"\nhistory_ttl = \"5x\"\n";
        let msg = Config::from_toml_str(text).unwrap_err().to_string();
        assert!(
            msg.contains("channel.namespaces[0].history_ttl") && msg.contains("\"5x\""),
            "{msg}"
        );
    }

    #[test]
    fn wrong_type_error_names_key_and_value() {
        let msg = Config::from_toml_str("[client]\nchannel_limit = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("client.channel_limit") && msg.contains("many"),
            "{msg}"
        );

        let msg = Config::from_toml_str("[log]\nformat = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("log.format") && msg.contains("xml"), "{msg}");
    }

    #[test]
    fn toml_syntax_error_reports_the_line() {
        let e = Config::from_toml_str("[client\n").unwrap_err();
        assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn env_names_follow_the_key_paths() {
        assert_eq!(
            env_var_name("client.token.hmac_secret_key"),
            "STARLING_CLIENT_TOKEN_HMAC_SECRET_KEY"
        );
        let keys = leaf_keys();
        for expected in [
            "node.http_addr",
            "client.token.hmac_secret_key",
            "channel.without_namespace.history_size",
            "channel.namespaces",
            "client.allowed_origins",
        ] {
            assert!(keys.iter().any(|k| k == expected), "{expected} missing");
        }
        // Two keys must never share a variable name.
        let mut names: Vec<String> = keys.iter().map(|k| env_var_name(k)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), keys.len());
    }

    #[test]
    fn env_overrides_a_string() {
        let c = load_env(&[
            ("STARLING_CLIENT_TOKEN_HMAC_SECRET_KEY", "s3cret"),
            ("STARLING_NODE_HTTP_ADDR", "0.0.0.0:9000"),
        ])
        .unwrap();
        assert_eq!(c.client.token.hmac_secret_key, "s3cret");
        assert_eq!(c.node.http_addr, "0.0.0.0:9000");
    }

    #[test]
    fn api_key_is_read_from_file_and_env() {
        let c = Config::from_toml_str("[http_api]\nkey = \"k1\"\n").unwrap();
        assert_eq!(c.http_api.key, "k1");
        let c = load_env(&[("STARLING_HTTP_API_KEY", "k2")]).unwrap();
        assert_eq!(c.http_api.key, "k2");
    }

    #[test]
    fn tls_is_read_from_file_and_env_with_v6_names() {
        let c = Config::from_toml_str(
            "[http_server.tls]\nenabled = true\ncert_pem = \"server.crt\"\nkey_pem = \"server.key\"\n",
        )
        .unwrap();
        assert!(c.http_server.tls.enabled);
        assert_eq!(c.http_server.tls.cert_pem, "server.crt");
        assert_eq!(c.http_server.tls.key_pem, "server.key");
        let c = load_env(&[
            ("STARLING_HTTP_SERVER_TLS_ENABLED", "true"),
            ("STARLING_HTTP_SERVER_TLS_CERT_PEM", "/etc/starling/tls.crt"),
            ("STARLING_HTTP_SERVER_READ_HEADER_TIMEOUT", "3s"),
        ])
        .unwrap();
        assert!(c.http_server.tls.enabled);
        assert_eq!(c.http_server.tls.cert_pem, "/etc/starling/tls.crt");
        assert_eq!(
            c.http_server.read_header_timeout.get(),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn cluster_is_read_from_file_and_env() {
        let c = Config::from_toml_str(
            "[cluster]\nnode_id = 2\naddr = \"0.0.0.0:7002\"\n\
             advertise_addr = \"10.0.0.2:7002\"\njoin = [\"10.0.0.1:7000\"]\n\
             tls_dir = \"/etc/starling/cluster\"\nmax_voters = 5\nshard_count = 1024\n\
             failover_timeout = \"5s\"\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.cluster.node_id, 2);
        assert_eq!(c.cluster.addr, "0.0.0.0:7002");
        assert_eq!(c.cluster.advertise_addr, "10.0.0.2:7002");
        assert_eq!(c.cluster.join, ["10.0.0.1:7000"]);
        assert_eq!(
            c.cluster.tls_dir,
            std::path::PathBuf::from("/etc/starling/cluster")
        );
        assert_eq!(c.cluster.max_voters, 5);
        assert_eq!(c.cluster.shard_count, 1024);
        assert_eq!(c.cluster.failover_timeout, GoDuration::from_secs(5));

        let c = load_env(&[
            ("STARLING_CLUSTER_NODE_ID", "3"),
            ("STARLING_CLUSTER_ADDR", "127.0.0.1:0"),
            ("STARLING_CLUSTER_JOIN", "10.0.0.1:7000, 10.0.0.2:7000"),
            ("STARLING_CLUSTER_TLS_DIR", "/tmp/tls"),
            ("STARLING_CLUSTER_FAILOVER_TIMEOUT", "2s"),
        ])
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.cluster.node_id, 3);
        assert_eq!(c.cluster.addr, "127.0.0.1:0");
        assert_eq!(c.cluster.join, ["10.0.0.1:7000", "10.0.0.2:7000"]);
        assert_eq!(c.cluster.tls_dir, std::path::PathBuf::from("/tmp/tls"));
        assert_eq!(c.cluster.failover_timeout, GoDuration::from_secs(2));

        let e = load_env(&[("STARLING_CLUSTER_NODE_ID", "-1")]).unwrap_err();
        assert!(e.to_string().contains("cluster.node_id"), "{e}");
        let e = Config::from_toml_str("[cluster]\nnode = 2\n").unwrap_err();
        assert!(e.to_string().contains("cluster.node"), "{e}");
    }

    #[test]
    fn env_overrides_a_bool() {
        for (raw, want) in [("true", true), ("1", true), ("FALSE", false), ("0", false)] {
            let c = load_env(&[("STARLING_CLIENT_ALLOW_ANONYMOUS_CONNECT_WITHOUT_TOKEN", raw)])
                .unwrap();
            assert_eq!(
                c.client.allow_anonymous_connect_without_token, want,
                "{raw}"
            );
        }
        let e = load_env(&[("STARLING_CHANNEL_WITHOUT_NAMESPACE_PRESENCE", "yes")]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::EnvValue { name, key, value, .. }
                if name == "STARLING_CHANNEL_WITHOUT_NAMESPACE_PRESENCE"
                    && key == "channel.without_namespace.presence"
                    && value == "yes"),
            "{e}"
        );
    }

    #[test]
    fn env_overrides_a_number() {
        let c = load_env(&[("STARLING_CHANNEL_WITHOUT_NAMESPACE_HISTORY_SIZE", "50")]).unwrap();
        assert_eq!(c.channel.without_namespace.history_size, 50);
        let e = load_env(&[("STARLING_CLIENT_CHANNEL_LIMIT", "lots")]).unwrap_err();
        assert!(
            e.to_string().contains("STARLING_CLIENT_CHANNEL_LIMIT"),
            "{e}"
        );
        let e = load_env(&[("STARLING_CLIENT_CHANNEL_LIMIT", "-1")]).unwrap_err();
        assert!(e.to_string().contains("client.channel_limit"), "{e}");
    }

    #[test]
    fn env_overrides_a_duration() {
        let c = load_env(&[("STARLING_CLIENT_PING_INTERVAL", "1m")]).unwrap();
        assert_eq!(c.client.ping_interval, GoDuration::from_secs(60));
        let msg = load_env(&[("STARLING_CLIENT_PING_INTERVAL", "soon")])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("client.ping_interval") && msg.contains("\"soon\""),
            "{msg}"
        );
    }

    #[test]
    fn env_sets_namespaces_from_json() {
        let c = load_env(&[(
            "STARLING_CHANNEL_NAMESPACES",
            r#"[{"name":"chat","presence":true,"history_size":10,"history_ttl":"60s"}]"#,
        )])
        .unwrap();
        assert_eq!(c.channel.namespaces.len(), 1);
        assert_eq!(c.channel.namespaces[0].name, "chat");
        assert!(c.channel.namespaces[0].options.presence);
        assert_eq!(
            c.channel.namespaces[0].options.history_ttl,
            GoDuration::from_secs(60)
        );
        c.validate().unwrap();

        let msg = load_env(&[(
            "STARLING_CHANNEL_NAMESPACES",
            r#"[{"name":"a","presense":true}]"#,
        )])
        .unwrap_err()
        .to_string();
        assert!(msg.contains("channel.namespaces[0].presense"), "{msg}");

        let e = load_env(&[("STARLING_CHANNEL_NAMESPACES", "[{")]).unwrap_err();
        assert!(matches!(e, ConfigError::EnvValue { .. }), "{e}");
    }

    #[test]
    fn env_sets_allowed_origins_from_json_or_commas() {
        let c = load_env(&[(
            "STARLING_CLIENT_ALLOWED_ORIGINS",
            r#"["https://a.example", "https://b.example"]"#,
        )])
        .unwrap();
        assert_eq!(
            c.client.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        let c = load_env(&[(
            "STARLING_CLIENT_ALLOWED_ORIGINS",
            "https://a.example, https://b.example",
        )])
        .unwrap();
        assert_eq!(
            c.client.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        let c = load_env(&[("STARLING_CLIENT_ALLOWED_ORIGINS", "[]")]).unwrap();
        assert!(c.client.allowed_origins.is_empty());
    }

    #[test]
    fn empty_env_var_counts_as_unset() {
        let c = load_env(&[
            ("STARLING_CLIENT_CHANNEL_LIMIT", ""),
            ("STARLING_CHANNEL_PRIVATE_PREFIX", ""),
        ])
        .unwrap();
        assert_eq!(c, Config::default());
        // The name is still checked.
        assert!(load_env(&[("STARLING_NO_SUCH_KEY", "")]).is_err());
    }

    #[test]
    fn unknown_starling_env_var_is_rejected() {
        let e = load_env(&[("STARLING_CLIENT_CHANEL_LIMIT", "5")]).unwrap_err();
        assert!(
            matches!(&e, ConfigError::UnknownEnvVar { name } if name == "STARLING_CLIENT_CHANEL_LIMIT"),
            "{e}"
        );
        // A section is not a leaf.
        assert!(load_env(&[("STARLING_CLIENT_TOKEN", "x")]).is_err());
    }

    #[test]
    fn reserved_and_foreign_env_vars_are_ignored() {
        let c = load_env(&[
            ("STARLING_CONFIG", "/etc/starling.toml"),
            ("STARLING_LOG", "debug"),
            ("PATH", "/usr/bin"),
            ("CENTRIFUGO_CLIENT_CHANNEL_LIMIT", "3"),
        ])
        .unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn env_wins_over_the_file() {
        let dir = std::env::temp_dir().join(format!("starling-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("layering.toml");
        std::fs::write(
            &path,
            "[client]\nchannel_limit = 7\nqueue_max_size = 10\n[client.token]\nissuer = \"file\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            env(&[
                ("STARLING_CLIENT_CHANNEL_LIMIT", "9"),
                ("STARLING_CLIENT_TOKEN_AUDIENCE", "env"),
            ]),
        )
        .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(c.client.channel_limit, 9);
        assert_eq!(c.client.queue_max_size, 10);
        assert_eq!(c.client.token.issuer, "file");
        assert_eq!(c.client.token.audience, "env");
    }

    #[test]
    fn missing_file_is_a_read_error_naming_the_path() {
        let e = Config::load(Some(Path::new("/nonexistent/starling.toml")), env(&[])).unwrap_err();
        assert!(
            matches!(&e, ConfigError::ReadFile { path, .. } if path == Path::new("/nonexistent/starling.toml")),
            "{e}"
        );
    }

    #[test]
    fn env_into_a_section_the_file_made_a_value_is_an_error() {
        let dir =
            std::env::temp_dir().join(format!("starling-config-test2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "client = 5\n").unwrap();
        let e =
            Config::load(Some(&path), env(&[("STARLING_CLIENT_CHANNEL_LIMIT", "9")])).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(e.to_string().contains("`client`"), "{e}");
    }
}
