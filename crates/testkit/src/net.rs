//! Ports on loopback.

use std::net::{SocketAddr, TcpListener};

/// A listener on a free loopback port.
pub fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port")
}

/// A loopback port that nothing listens on (it was free a moment ago, and is closed now).
pub fn closed_port() -> u16 {
    let listener = listener();
    let port = local_addr(&listener).port();
    drop(listener);
    port
}

pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("listener has a local address")
}
