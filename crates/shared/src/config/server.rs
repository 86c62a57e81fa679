use std::net::{IpAddr, SocketAddr};

use super::{Env, Problems};

/// The address an HTTP server binds (`SERVER_HOST`, `SERVER_PORT`).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
}

impl ServerConfig {
    pub fn from_env(env: &Env, problems: &mut Problems) -> Self {
        Self::with_default_port(env, 8080, problems)
    }

    /// Like [`ServerConfig::from_env`], for a service whose default port is not 8080.
    pub fn with_default_port(env: &Env, default_port: u16, problems: &mut Problems) -> Self {
        Self {
            host: env.parsed("SERVER_HOST", IpAddr::from([0, 0, 0, 0]), "an IP address such as 0.0.0.0", problems),
            port: env.parsed("SERVER_PORT", default_port, "a port number between 0 and 65535", problems),
        }
    }

    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}
