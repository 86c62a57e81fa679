//! The outside world on loopback: a webhook target, a Telegram Bot API server and an
//! agent's MCP server, each recording what it got.

pub mod bot_api;
pub mod mcp_server;
pub mod receiver;
