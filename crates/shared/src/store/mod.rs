//! Repository functions over the tables the services share.

pub mod events;
