//! End-to-end tests of the whole system live in `tests/`: every service runs in-process over
//! the machine's PostgreSQL and Redis, against anvil with the project's registries and real
//! receivers on loopback.
