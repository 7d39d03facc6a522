//! Channel names: namespace lookup, user-limited channels, personal channels.
//!
//! Follows Centrifugo's rules. The private prefix (`$`) is stripped before looking for the
//! namespace boundary, so `$chat:x` is in namespace `chat`. Text before the first boundary is
//! the namespace; a name with no boundary, or with an empty namespace part (`:x`), uses
//! `[channel.without_namespace]`. When the namespace allows user-limited channels, the text
//! after the last `user_boundary` lists the users allowed in.

use std::collections::HashMap;

use crate::config::{ChannelConfig, ChannelOptions, Config};
use crate::error::ChannelError;

/// What a channel name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedChannel<'a> {
    /// The namespace, or `None` for channels without one.
    pub namespace: Option<&'a str>,
    /// The options that apply to the channel.
    pub options: &'a ChannelOptions,
    /// For a user-limited channel (namespace has `allow_user_limited_channels` and the name
    /// contains `user_boundary`), the user ids allowed in; empty ids are dropped so that
    /// `dialog#` admits nobody, not the anonymous user. `None` for other channels.
    pub allowed_users: Option<Vec<&'a str>>,
}

impl ResolvedChannel<'_> {
    /// Whether `user` may use the channel as far as user limits go (always true when the
    /// channel is not user-limited).
    pub fn user_allowed(&self, user: &str) -> bool {
        match &self.allowed_users {
            Some(users) => users.contains(&user),
            None => true,
        }
    }
}

/// Channel rules with namespaces indexed by name, for the hot path.
///
/// Owns a copy of the `[channel]` section and the personal channel namespace, so it can be
/// shared (`Arc<ChannelRules>`) without borrowing the whole [`Config`]. Build it after
/// [`Config::validate`]; with duplicate namespace names the first one wins.
#[derive(Debug, Clone)]
pub struct ChannelRules {
    channel: ChannelConfig,
    personal_channel_namespace: String,
    index: HashMap<String, usize>,
}

impl ChannelRules {
    /// Index the channel rules of `config`.
    pub fn new(config: &Config) -> Self {
        let channel = config.channel.clone();
        let mut index = HashMap::with_capacity(channel.namespaces.len());
        for (i, ns) in channel.namespaces.iter().enumerate() {
            index.entry(ns.name.clone()).or_insert(i);
        }
        ChannelRules {
            channel,
            personal_channel_namespace: config
                .client
                .subscribe_to_user_personal_channel
                .personal_channel_namespace
                .clone(),
            index,
        }
    }

    /// The `[channel]` section these rules were built from.
    pub fn config(&self) -> &ChannelConfig {
        &self.channel
    }

    /// Resolve a channel name to its namespace, options and user limits.
    pub fn resolve<'a>(&'a self, channel: &'a str) -> Result<ResolvedChannel<'a>, ChannelError> {
        resolve_with(&self.channel, channel, |name| {
            self.index
                .get(name)
                .and_then(|&i| self.channel.namespaces.get(i))
                .map(|ns| (ns.name.as_str(), &ns.options))
        })
    }

    /// The personal channel of `user`.
    pub fn personal_channel(&self, user: &str) -> String {
        personal_channel_name(&self.channel, &self.personal_channel_namespace, user)
    }

    /// Whether `channel` starts with the private prefix (needs a subscription token).
    pub fn is_private(&self, channel: &str) -> bool {
        self.channel.is_private(channel)
    }
}

impl ChannelConfig {
    /// Resolve a channel name, scanning the namespace list (fine for a handful of
    /// namespaces; [`ChannelRules`] indexes them).
    pub fn resolve<'a>(&'a self, channel: &'a str) -> Result<ResolvedChannel<'a>, ChannelError> {
        resolve_with(self, channel, |name| {
            self.namespaces
                .iter()
                .find(|ns| ns.name == name)
                .map(|ns| (ns.name.as_str(), &ns.options))
        })
    }

    /// Whether `channel` starts with the private prefix (needs a subscription token).
    /// An empty prefix marks nothing private.
    pub fn is_private(&self, channel: &str) -> bool {
        !self.private_prefix.is_empty() && channel.starts_with(&self.private_prefix)
    }
}

impl Config {
    /// Resolve a channel name to its namespace, options and user limits.
    ///
    /// Errors: empty name, longer than `channel.max_length`, or a namespace that is not
    /// configured.
    pub fn resolve_channel<'a>(
        &'a self,
        channel: &'a str,
    ) -> Result<ResolvedChannel<'a>, ChannelError> {
        self.channel.resolve(channel)
    }

    /// The personal channel of `user`: `{namespace}{namespace_boundary}{user_boundary}{user}`
    /// with `client.subscribe_to_user_personal_channel.personal_channel_namespace`, or
    /// `{user_boundary}{user}` when that is empty.
    pub fn personal_channel(&self, user: &str) -> String {
        personal_channel_name(
            &self.channel,
            &self
                .client
                .subscribe_to_user_personal_channel
                .personal_channel_namespace,
            user,
        )
    }
}

fn personal_channel_name(channel: &ChannelConfig, namespace: &str, user: &str) -> String {
    if namespace.is_empty() {
        format!("{}{}", channel.user_boundary, user)
    } else {
        format!(
            "{}{}{}{}",
            namespace, channel.namespace_boundary, channel.user_boundary, user
        )
    }
}

fn resolve_with<'a>(
    rules: &'a ChannelConfig,
    channel: &'a str,
    lookup: impl FnOnce(&str) -> Option<(&'a str, &'a ChannelOptions)>,
) -> Result<ResolvedChannel<'a>, ChannelError> {
    if channel.is_empty() {
        return Err(ChannelError::Empty);
    }
    if channel.len() > rules.max_length {
        return Err(ChannelError::TooLong {
            len: channel.len(),
            max: rules.max_length,
        });
    }
    if let Some((position, character)) = channel
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || rules.allowed_symbols.contains(*c)))
    {
        return Err(ChannelError::InvalidCharacter {
            character,
            position,
        });
    }
    let unprefixed = if rules.private_prefix.is_empty() {
        channel
    } else {
        channel
            .strip_prefix(rules.private_prefix.as_str())
            .unwrap_or(channel)
    };
    let namespace = if rules.namespace_boundary.is_empty() {
        ""
    } else {
        unprefixed
            .split_once(rules.namespace_boundary.as_str())
            .map_or("", |(ns, _)| ns)
    };
    let (namespace, options) = if namespace.is_empty() {
        (None, &rules.without_namespace)
    } else {
        match lookup(namespace) {
            Some((name, options)) => (Some(name), options),
            None => {
                return Err(ChannelError::UnknownNamespace {
                    namespace: namespace.to_owned(),
                });
            }
        }
    };
    let allowed_users = if options.allow_user_limited_channels && !rules.user_boundary.is_empty() {
        channel
            .rsplit_once(rules.user_boundary.as_str())
            .map(|(_, users)| split_users(users, &rules.user_separator))
    } else {
        None
    };
    Ok(ResolvedChannel {
        namespace,
        options,
        allowed_users,
    })
}

fn split_users<'a>(users: &'a str, separator: &str) -> Vec<&'a str> {
    if separator.is_empty() {
        return if users.is_empty() {
            vec![]
        } else {
            vec![users]
        };
    }
    users.split(separator).filter(|u| !u.is_empty()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::ChannelNamespace;

    fn config() -> Config {
        let mut c = Config::default();
        c.channel.without_namespace.presence = true;
        c.channel.namespaces = vec![
            ChannelNamespace {
                name: "chat".into(),
                options: ChannelOptions {
                    history_size: 10,
                    ..ChannelOptions::default()
                },
            },
            ChannelNamespace {
                name: "dialog".into(),
                options: ChannelOptions {
                    allow_user_limited_channels: true,
                    ..ChannelOptions::default()
                },
            },
            ChannelNamespace {
                name: "personal".into(),
                options: ChannelOptions::default(),
            },
        ];
        c
    }

    #[test]
    fn channel_without_boundary_uses_without_namespace() {
        let c = config();
        let r = c.resolve_channel("news").unwrap();
        assert_eq!(r.namespace, None);
        assert!(r.options.presence);
        assert_eq!(r.allowed_users, None);
    }

    #[test]
    fn channel_with_boundary_uses_its_namespace() {
        let c = config();
        let r = c.resolve_channel("chat:room:1").unwrap();
        assert_eq!(r.namespace, Some("chat"));
        assert_eq!(r.options.history_size, 10);
    }

    #[test]
    fn private_prefix_is_skipped_before_the_namespace() {
        let c = config();
        assert_eq!(
            c.resolve_channel("$chat:x").unwrap().namespace,
            Some("chat")
        );
        assert!(c.channel.is_private("$chat:x"));
        assert!(!c.channel.is_private("chat:x"));
    }

    #[test]
    fn empty_namespace_part_uses_without_namespace() {
        let c = config();
        assert_eq!(c.resolve_channel(":x").unwrap().namespace, None);
    }

    #[test]
    fn unknown_namespace_is_an_error() {
        let c = config();
        assert_eq!(
            c.resolve_channel("nope:x").unwrap_err(),
            ChannelError::UnknownNamespace {
                namespace: "nope".into()
            }
        );
    }

    #[test]
    fn whitespace_control_and_non_ascii_characters_are_refused() {
        let c = config();
        for (name, character, position) in [
            ("chat room", ' ', 4),
            ("chat\nroom", '\n', 4),
            ("caf\u{e9}", '\u{e9}', 3),
            ("quote\"d", '"', 5),
        ] {
            assert_eq!(
                c.resolve_channel(name).unwrap_err(),
                ChannelError::InvalidCharacter {
                    character,
                    position
                },
                "{name:?}"
            );
        }
        assert!(c.resolve_channel("news/2026.11-23_a@b=c").is_ok());
    }

    #[test]
    fn empty_and_too_long_names_are_errors() {
        let mut c = config();
        assert_eq!(c.resolve_channel("").unwrap_err(), ChannelError::Empty);
        c.channel.max_length = 5;
        assert!(c.resolve_channel("12345").is_ok());
        assert_eq!(
            c.resolve_channel("123456").unwrap_err(),
            ChannelError::TooLong { len: 6, max: 5 }
        );
    }

    #[test]
    fn user_limited_channel_lists_allowed_users() {
        let c = config();
        let r = c.resolve_channel("dialog:chat#42,43").unwrap();
        assert_eq!(r.allowed_users, Some(vec!["42", "43"]));
        assert!(r.user_allowed("42"));
        assert!(!r.user_allowed("44"));
        assert!(!r.user_allowed(""));
    }

    #[test]
    fn user_limited_channel_with_no_users_admits_nobody() {
        let c = config();
        let r = c.resolve_channel("dialog:x#").unwrap();
        assert_eq!(r.allowed_users, Some(vec![]));
        assert!(!r.user_allowed(""));
    }

    #[test]
    fn user_boundary_is_plain_text_where_user_limits_are_off() {
        let c = config();
        let r = c.resolve_channel("chat:x#42").unwrap();
        assert_eq!(r.allowed_users, None);
        assert!(r.user_allowed("7"));
    }

    #[test]
    fn personal_channel_without_namespace() {
        let c = config();
        assert_eq!(c.personal_channel("42"), "#42");
    }

    #[test]
    fn personal_channel_in_namespace() {
        let mut c = config();
        c.client
            .subscribe_to_user_personal_channel
            .personal_channel_namespace = "personal".into();
        assert_eq!(c.personal_channel("42"), "personal:#42");
        let r = c.resolve_channel("personal:#42").unwrap();
        assert_eq!(r.namespace, Some("personal"));
    }

    #[test]
    fn indexed_rules_agree_with_the_config() {
        let mut c = config();
        c.client
            .subscribe_to_user_personal_channel
            .personal_channel_namespace = "personal".into();
        let rules = ChannelRules::new(&c);
        for ch in ["news", "chat:1", "dialog:x#1,2", "nope:1", "", "$chat:x"] {
            assert_eq!(rules.resolve(ch), c.resolve_channel(ch), "{ch}");
        }
        assert_eq!(rules.personal_channel("7"), c.personal_channel("7"));
        assert!(rules.is_private("$x"));
    }
}
