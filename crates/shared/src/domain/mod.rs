//! The domain types every service shares. Each is parsed once, at the boundary (a chain log,
//! a database row, an API request), and cannot hold an invalid value afterwards.

mod decimal;
mod event;
mod hex;
mod ids;
mod text;

pub use self::decimal::{Decimal, DecimalError};
pub use self::event::{
    ChainEvent, EventData, EventType, FeedbackValue, LogPosition, NewEvent, Registry, StoredEvent, UnknownEventType,
    UnknownRegistry,
};
pub use self::hex::{Address, Hash32, HexBytes, HexError};
pub use self::ids::{ActionId, AgentId, AgentIdError, ChainId, EventId, JobId, TriggerId, UserId};
pub use self::text::Text;
