pub mod abi;
pub mod decode;
pub mod config;
