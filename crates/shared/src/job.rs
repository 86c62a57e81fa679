//! A job: one action to run for one firing. The processor writes it to the outbox and the
//! relay pushes it to the Redis stream of its kind; workers read it back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::RedisConfig;
use crate::domain::{Decimal, JobId, StoredEvent, TriggerId, UserId};
use crate::trigger::{ActionKind, StoredAction};

/// The trigger a job came from, as templates see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTrigger {
    pub id: TriggerId,
    pub name: String,
    pub user_id: UserId,
}

/// Everything a worker needs to deliver, except write-only secrets, which it reads from the
/// database by action id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: JobId,
    pub trigger: JobTrigger,
    pub action: StoredAction,
    pub event: StoredEvent,
    /// Every aggregate of the trigger by its display name, after this event updated them;
    /// `null` while an aggregate has no value yet.
    pub aggregates: BTreeMap<String, Option<Decimal>>,
    pub fired_at: DateTime<Utc>,
}

impl Job {
    pub fn kind(&self) -> ActionKind {
        self.action.kind()
    }
}

/// The Redis stream that carries jobs of one kind.
pub fn stream_key(redis: &RedisConfig, kind: ActionKind) -> String {
    redis.key(&format!("jobs:{}", kind.as_str()))
}

/// The field of a stream entry that holds the job's JSON.
pub const STREAM_FIELD: &str = "job";
