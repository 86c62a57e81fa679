use secrecy::{ExposeSecret, SecretString};

use super::{Env, Problems};

/// Where Redis is, and the prefix of every key and stream name this deployment uses.
#[derive(Clone)]
pub struct RedisConfig {
    url: SecretString,
    description: String,
    /// Prepended to every key, so several deployments (or tests) can share one Redis.
    pub key_prefix: String,
}

impl RedisConfig {
    pub fn from_env(env: &Env, problems: &mut Problems) -> Self {
        let key_prefix = env.string("REDIS_KEY_PREFIX", "erc8004:");
        let (url, description) = match env.secret("REDIS_URL") {
            Some(url) => {
                let description = match ::redis::Client::open(url.expose_secret()) {
                    Ok(client) => describe(&client),
                    Err(_) => {
                        problems.push("REDIS_URL", "is not a valid redis:// URL");
                        String::new()
                    }
                };
                (url, description)
            }
            None => {
                let host = env.string("REDIS_HOST", "127.0.0.1");
                let port = env.parsed("REDIS_PORT", 6379u16, "a port number between 1 and 65535", problems);
                if port == 0 {
                    problems.push("REDIS_PORT", "must be a port number between 1 and 65535 (got \"0\")");
                }
                let auth = env
                    .secret("REDIS_PASSWORD")
                    .map(|p| format!(":{}@", percent_encode(p.expose_secret())))
                    .unwrap_or_default();
                let url = format!("redis://{auth}{host}:{port}/");
                if ::redis::Client::open(url.as_str()).is_err() {
                    problems.push("REDIS_HOST", format!("is not a valid host name (got {host:?})"));
                }
                (SecretString::from(url), format!("{host}:{port}"))
            }
        };
        Self { url, description, key_prefix }
    }

    /// A configuration for a URL without credentials (tests).
    pub fn for_url(url: &str, key_prefix: &str) -> Self {
        let env = Env::from_pairs([("REDIS_URL", url), ("REDIS_KEY_PREFIX", key_prefix)]);
        Self::from_env(&env, &mut Problems::default())
    }

    /// A client for this server; opening one does not connect.
    pub fn client(&self) -> ::redis::RedisResult<::redis::Client> {
        ::redis::Client::open(self.url.expose_secret())
    }

    /// `host:port` without credentials, for logs.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The full name of a key in this deployment's namespace.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.key_prefix)
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("target", &self.description)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

fn describe(client: &::redis::Client) -> String {
    client.get_connection_info().addr().to_string()
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for the password part of
/// a URL.
fn percent_encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_encoded_and_hidden_from_debug() {
        let env = Env::from_pairs([("REDIS_HOST", "cache"), ("REDIS_PASSWORD", "p@ss word")]);
        let config = RedisConfig::from_env(&env, &mut Problems::default());
        assert_eq!(config.url.expose_secret(), "redis://:p%40ss%20word@cache:6379/");
        let debug = format!("{config:?}");
        assert!(!debug.contains("p@ss"), "{debug}");
        assert!(debug.contains("cache:6379"), "{debug}");
    }

    #[test]
    fn keys_carry_the_prefix() {
        let config = RedisConfig::for_url("redis://127.0.0.1:6379/", "t1:");
        assert_eq!(config.key("jobs:webhook"), "t1:jobs:webhook");
    }
}
