//! A Redis connection that is made on first use and re-made after failures, so a service
//! starts and keeps serving while Redis is away.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use ::redis::RedisError;
use tokio::sync::Mutex;

use crate::config::RedisConfig;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct RedisHandle {
    client: ::redis::Client,
    config: RedisConfig,
    manager: Arc<Mutex<Option<ConnectionManager>>>,
}

impl RedisHandle {
    pub fn new(config: &RedisConfig) -> ::redis::RedisResult<Self> {
        Ok(Self { client: config.client()?, config: config.clone(), manager: Arc::new(Mutex::new(None)) })
    }

    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// A multiplexed connection. The first call connects; later calls share it, and the
    /// manager reconnects by itself after Redis comes back.
    pub async fn connection(&self) -> ::redis::RedisResult<ConnectionManager> {
        let mut slot = self.manager.lock().await;
        if let Some(manager) = slot.as_ref() {
            return Ok(manager.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(manager.clone());
        Ok(manager)
    }

    /// `PING`, bounded in time.
    pub async fn ping(&self) -> ::redis::RedisResult<()> {
        let attempt = async {
            let mut conn = self.connection().await?;
            ::redis::cmd("PING").query_async::<String>(&mut conn).await.map(drop)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT + RESPONSE_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(::redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "redis did not answer PING in time",
            ))),
        }
    }
}
