//! A minimal `/metrics` endpoint for services that have no HTTP server of their own.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves the Prometheus text format on `GET /metrics` (404 elsewhere) until the task is
/// dropped. Returns the bound address (useful with port 0).
pub async fn serve(address: SocketAddr, handle: PrometheusHandle) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let Ok(n) = stream.read(&mut request).await else { return };
                let head = String::from_utf8_lossy(&request[..n]);
                let response = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
                    let body = handle.render();
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned()
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}
