//! Repository functions over the tables the services share.

pub mod events;
pub mod jobs;
pub mod triggers;
pub mod users;
