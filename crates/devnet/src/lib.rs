//! The devnet `make run` starts when no chain is configured: anvil with the project's
//! ERC-8004 registries deployed, and (for `make demo`) a stream of registrations, feedback
//! and validations on it.

pub mod chain;
pub mod traffic;

/// The chain id anvil uses.
pub const CHAIN_ID: u64 = 31337;
