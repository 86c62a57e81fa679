//! Configuration from environment variables, optionally seeded from a `.env` file.
//!
//! Every service reads its whole configuration at start through an [`Env`] and a [`Problems`]
//! collector: each reader records what is wrong instead of stopping at the first fault, so the
//! operator sees every bad or missing variable in one message. Values of secret variables never
//! appear in that message.

mod database;
mod redis;
mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use secrecy::SecretString;

pub use self::database::DatabaseConfig;
pub use self::redis::RedisConfig;
pub use self::server::ServerConfig;

/// The variables a service can read: the process environment layered over a `.env` file.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// Reads `.env` (searched from the working directory upwards, if present) and then the
    /// process environment, which wins over the file.
    pub fn load() -> Result<Self, ConfigError> {
        let mut vars = BTreeMap::new();
        match dotenvy::dotenv_iter() {
            Ok(entries) => {
                for entry in entries {
                    let (key, value) = entry.map_err(|err| {
                        ConfigError::single(".env", format!("cannot be read: {}", dotenv_reason(&err)))
                    })?;
                    vars.insert(key, value);
                }
            }
            Err(err) if err.not_found() => {}
            Err(err) => {
                return Err(ConfigError::single(".env", format!("cannot be read: {}", dotenv_reason(&err))));
            }
        }
        vars.extend(std::env::vars());
        Ok(Self { vars })
    }

    /// An environment made of exactly these pairs (tests, embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Returns a copy with `key` set to `value`.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.vars.insert(key.to_owned(), value.into());
        self
    }

    /// The value of `key`, or `None` when it is unset or blank.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// A plain string with a default.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).to_owned()
    }

    /// A value parsed with `FromStr`; on failure the problem is recorded and `default` returned
    /// so that reading can go on and report every other fault too.
    pub fn parsed<T: FromStr>(&self, key: &str, default: T, expected: &str, problems: &mut Problems) -> T {
        match self.get(key) {
            None => default,
            Some(raw) => match raw.parse() {
                Ok(value) => value,
                Err(_) => {
                    problems.push(key, format!("must be {expected} (got {raw:?})"));
                    default
                }
            },
        }
    }

    /// A secret that may be absent.
    pub fn secret(&self, key: &str) -> Option<SecretString> {
        self.get(key).map(|v| SecretString::from(v.to_owned()))
    }

    /// A secret that must be present and at least `min_len` characters long.
    pub fn required_secret(&self, key: &str, min_len: usize, hint: &str, problems: &mut Problems) -> SecretString {
        match self.get(key) {
            None => {
                problems.push(key, format!("is required ({hint})"));
                SecretString::from(String::new())
            }
            Some(value) if value.chars().count() < min_len => {
                problems.push(key, format!("must be at least {min_len} characters long ({hint})"));
                SecretString::from(String::new())
            }
            Some(value) => SecretString::from(value.to_owned()),
        }
    }

    /// An address to serve on, `off` for none, or `default` when unset.
    pub fn address_or_off(&self, key: &str, default: SocketAddr, problems: &mut Problems) -> Option<SocketAddr> {
        match self.get(key) {
            Some("off") => None,
            Some(raw) => match raw.parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    problems.push(key, format!("must be host:port or off (got {raw:?})"));
                    None
                }
            },
            None => Some(default),
        }
    }

    /// The filter for `tracing` (`RUST_LOG`), defaulting to `info` (sqlx at `warn`).
    pub fn log_filter(&self) -> String {
        self.string("RUST_LOG", "info,sqlx=warn")
    }

    /// Whether logs are written as JSON lines (`LOG_FORMAT=json`).
    pub fn json_logs(&self) -> bool {
        self.get("LOG_FORMAT").is_some_and(|v| v.eq_ignore_ascii_case("json"))
    }
}

fn dotenv_reason(err: &dotenvy::Error) -> String {
    match err {
        // A parse error names the line, which is safe; it may quote content, so keep only the
        // position.
        dotenvy::Error::LineParse(_, index) => format!("syntax error at character {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        dotenvy::Error::EnvVar(var) => var.to_string(),
        _ => "unreadable".to_owned(),
    }
}

/// One thing wrong with the configuration: the variable and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: String,
    pub message: String,
}

/// Collects configuration problems while a service reads its variables.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, variable: &str, message: impl Into<String>) {
        self.0.push(Problem { variable: variable.to_owned(), message: message.into() });
    }

    /// How many problems were recorded so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, otherwise every problem in one error.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() { Ok(value) } else { Err(ConfigError { problems: self.0 }) }
    }
}

/// The configuration could not be read; lists every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn single(variable: &str, message: String) -> Self {
        Self { problems: vec![Problem { variable: variable.to_owned(), message }] }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "invalid configuration ({n} problem{}):", if n == 1 { "" } else { "s" })?;
        for problem in &self.problems {
            write!(f, "\n  - {}: {}", problem.variable, problem.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
