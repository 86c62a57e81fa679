//! Repository functions over the tables the services share.

pub mod aggregate_state;
pub mod api_keys;
pub mod cooldowns;
pub mod deliveries;
pub mod events;
pub mod outbox;
mod pages;
pub mod telegram;
pub mod triggers;
pub mod users;

/// Whether PostgreSQL refused a statement for the data it carried (a data exception, a
/// constraint, a value too large for an index, or a value that could not be encoded), as
/// opposed to being away or failing for reasons of its own: the same rows would be refused
/// again, while other rows may well be taken.
pub fn refused_data(err: &sqlx::Error) -> bool {
    match err {
        // 22: data exception, 23: integrity constraint violation, 54: program limit exceeded.
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| ["22", "23", "54"].iter().any(|class| code.starts_with(class)))
        }
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}
