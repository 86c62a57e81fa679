//! Repository functions over the tables the services share.

pub mod events;
pub mod triggers;
pub mod users;
