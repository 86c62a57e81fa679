use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;

use super::{Env, Problems};

/// Where PostgreSQL is and how many connections a service may hold.
///
/// Read from `DATABASE_URL` when set, otherwise from the `DB_*` variables.
#[derive(Clone)]
pub struct DatabaseConfig {
    connect: PgConnectOptions,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl DatabaseConfig {
    pub fn from_env(env: &Env, problems: &mut Problems) -> Self {
        let max_connections = env.parsed("DB_MAX_CONNECTIONS", 10u32, "a whole number of connections", problems);
        if max_connections == 0 {
            problems.push("DB_MAX_CONNECTIONS", "must be at least 1");
        }
        let acquire_secs = env.parsed("DB_ACQUIRE_TIMEOUT_SECS", 5u64, "a whole number of seconds", problems);
        let connect = match env.secret("DATABASE_URL") {
            Some(url) => match parse_url(url.expose_secret()) {
                Some(options) => options,
                None => {
                    // The URL may hold a password: say what is wrong, never what it was.
                    problems.push("DATABASE_URL", "is not a valid postgres:// URL");
                    PgConnectOptions::new()
                }
            },
            None => {
                let port = env.parsed("DB_PORT", 5432u16, "a port number between 1 and 65535", problems);
                if port == 0 {
                    problems.push("DB_PORT", "must be a port number between 1 and 65535 (got \"0\")");
                }
                let mut options = PgConnectOptions::new_without_pgpass()
                    .host(&env.string("DB_HOST", "127.0.0.1"))
                    .port(port)
                    .database(&env.string("DB_NAME", "erc8004"))
                    .username(&env.string("DB_USER", "postgres"));
                if let Some(password) = env.secret("DB_PASSWORD") {
                    options = options.password(password.expose_secret());
                }
                options
            }
        };
        Self {
            connect: connect.application_name("erc8004"),
            max_connections: max_connections.max(1),
            acquire_timeout: Duration::from_secs(acquire_secs),
        }
    }

    /// A configuration for the given connection options (tests, tools).
    pub fn new(connect: PgConnectOptions) -> Self {
        Self { connect, max_connections: 10, acquire_timeout: Duration::from_secs(5) }
    }

    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.connect
    }

    /// The name of the database the options point at.
    pub fn database_name(&self) -> Option<&str> {
        self.connect.get_database()
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, name: &str) -> Self {
        Self { connect: self.connect.clone().database(name), ..self.clone() }
    }

    /// A short description with no credentials, for logs.
    pub fn describe(&self) -> String {
        format!("{}:{}/{}", self.connect.get_host(), self.connect.get_port(), self.connect.get_database().unwrap_or(""))
    }
}

/// Keeps the password out of any `{:?}` output.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("target", &self.describe())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

fn parse_url(url: &str) -> Option<PgConnectOptions> {
    let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
    scheme_ok.then(|| PgConnectOptions::from_str(url).ok()).flatten()
}
