//! A webhook target on loopback that records what it gets and answers what the test
//! scripts (200 once the script is used up).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP server that records requests and answers the scripted statuses in order (200
/// once the script is empty).
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
    /// The answer once the script is used up.
    default_status: Arc<Mutex<u16>>,
    delay: Duration,
    /// Answers every request with a redirect here, when set.
    location: Arc<Mutex<Option<String>>>,
}

async fn receive(req: HttpRequest, body: web::Bytes, receiver: web::Data<Receiver>) -> HttpResponse {
    let headers =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect();
    receiver.received.lock().expect("receiver").push(Received {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: std::time::Instant::now(),
    });
    if !receiver.delay.is_zero() {
        tokio::time::sleep(receiver.delay).await;
    }
    if let Some(location) = receiver.location.lock().expect("receiver").clone() {
        return HttpResponse::TemporaryRedirect().insert_header(("location", location)).finish();
    }
    let fallback = *receiver.default_status.lock().expect("receiver");
    let status = receiver.script.lock().expect("receiver").pop_front().unwrap_or(fallback);
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("receiver"))
        .body(format!("answered {status}"))
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_slow(Duration::ZERO).await
    }

    /// A receiver that takes `delay` to answer each request.
    pub async fn start_slow(delay: Duration) -> Self {
        let listener = crate::net::listener();
        let port = listener.local_addr().expect("receiver").port();
        let receiver = Self {
            port,
            received: Arc::default(),
            script: Arc::default(),
            default_status: Arc::new(Mutex::new(200)),
            delay,
            location: Arc::default(),
        };
        let data = web::Data::new(receiver.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(receive)))
            .workers(2)
            .listen(listener)
            .expect("receiver")
            .run();
        tokio::spawn(server);
        receiver
    }

    pub fn answer(&self, statuses: &[u16]) {
        self.script.lock().expect("receiver").extend(statuses);
    }

    /// Answers every request with `307 Location: location` from now on.
    pub fn redirect_to(&self, location: &str) {
        *self.location.lock().expect("receiver") = Some(location.to_owned());
    }

    /// Answers `status` to everything not scripted, from now on.
    pub fn answer_always(&self, status: u16) {
        *self.default_status.lock().expect("receiver") = status;
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("receiver").clone()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }
}
