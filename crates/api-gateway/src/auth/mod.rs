//! Who is calling: passwords, login tokens (JWT, HS256), and the extractor every protected
//! route takes, so no handler can forget to ask.

pub mod api_keys;
mod extractor;
mod passwords;
mod tokens;

pub use extractor::AuthUser;
pub use passwords::{hash_password, verify_password};
pub use tokens::TokenKeys;
