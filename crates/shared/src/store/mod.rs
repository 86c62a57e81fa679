//! Repository functions over the tables the services share.

pub mod api_keys;
pub mod deliveries;
pub mod events;
pub mod jobs;
mod pages;
pub mod triggers;
pub mod users;
