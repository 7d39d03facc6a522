//! `starling gentoken` and `starling gensubtoken`: HS256 tokens for development and tests,
//! like Centrifugo's commands of the same names.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use starling_config::Config;

use crate::cli::{SecretSource, SubTokenArgs, TokenArgs};
use crate::dev_secret;

pub(crate) fn gentoken(args: &TokenArgs) -> anyhow::Result<()> {
    let config = load(&args.source)?;
    let secret = secret(&config, &config.client.token.hmac_secret_key)?;
    let mut claims = serde_json::json!({ "sub": args.user });
    add_expiry(&mut claims, args.ttl)?;
    println!("{}", sign(&secret, &claims)?);
    Ok(())
}

pub(crate) fn gensubtoken(args: &SubTokenArgs) -> anyhow::Result<()> {
    let config = load(&args.source)?;
    let keys = config
        .client
        .subscription_token
        .effective(&config.client.token);
    let secret = secret(&config, &keys.hmac_secret_key)?;
    let mut claims = serde_json::json!({ "sub": args.user, "channel": args.channel });
    add_expiry(&mut claims, args.ttl)?;
    println!("{}", sign(&secret, &claims)?);
    Ok(())
}

fn load(source: &SecretSource) -> anyhow::Result<Config> {
    let mut config = Config::load(source.config.as_deref(), starling_config::process_env())?;
    if let Some(dir) = &source.data_dir {
        config.node.data_dir = dir.clone();
    }
    Ok(config)
}

/// The configured secret, else the development secret of a node started on the same data dir.
fn secret(config: &Config, configured: &str) -> anyhow::Result<String> {
    if !configured.is_empty() {
        return Ok(configured.to_string());
    }
    let path = dev_secret::path(&config.node.data_dir);
    dev_secret::read(&path)?.with_context(|| {
        format!(
            "no client.token.hmac_secret_key configured and no development secret at {} \
             (start `starling serve` once, or set the key)",
            path.display()
        )
    })
}

fn add_expiry(claims: &mut serde_json::Value, ttl: u64) -> anyhow::Result<()> {
    if ttl > 0 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_secs();
        claims["exp"] = (now + ttl).into();
    }
    Ok(())
}

fn sign(secret: &str, claims: &serde_json::Value) -> anyhow::Result<String> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .context("cannot sign token")
}
