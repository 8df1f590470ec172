//! Slow clients cannot hold connections: the header read timeout disconnects them, the
//! connection limit makes further connections wait, and shutdown stays graceful.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokenkeeper_server::{Contract, Latency, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::*;

/// Far longer than any timeout under test: reaching it means the server never closed.
const SAFETY: Duration = Duration::from_secs(10);

/// Reads until the server closes the connection; panics after [`SAFETY`].
async fn read_until_closed(tcp: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(SAFETY, tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// Polls `done` every 10 ms, for at most [`SAFETY`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + SAFETY;
    while !done() {
        assert!(Instant::now() < give_up, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn item_request(tcp: &mut TcpStream, s: &ServerHandle) {
    let request = format!(
        "GET /api/items/1 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.addr()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let timeout = Duration::from_millis(300);
    let s = server(ServerConfig::default().with_header_read_timeout(timeout)).await;

    // Half a request line, then silence.
    let started = Instant::now();
    let mut half = TcpStream::connect(s.addr()).await.unwrap();
    half.write_all(b"GET /api/items/1 HT").await.unwrap();
    // And a connection that sends nothing at all.
    let mut silent = TcpStream::connect(s.addr()).await.unwrap();

    let answer = read_until_closed(&mut half).await;
    assert!(
        started.elapsed() >= timeout,
        "closed before the timeout: {:?}",
        started.elapsed()
    );
    // hyper may say 408 before closing; it never serves the half request.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(read_until_closed(&mut silent).await.is_empty());
    eventually("both connections released", || s.open_connections() == 0).await;
}

#[tokio::test]
async fn a_client_that_trickles_its_body_gets_408_and_is_disconnected() {
    let timeout = Duration::from_millis(300);
    let s = server(ServerConfig::default().with_header_read_timeout(timeout)).await;
    let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
    let body = r#"{"username":"demo","password":"demo"}"#;
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        s.addr(),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    // A few bytes of the body, then nothing more.
    tcp.write_all(&body.as_bytes()[..5]).await.unwrap();
    let answer = read_until_closed(&mut tcp).await;
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert_eq!(s.stats().logins, 0);

    // A body that arrives in time, even in pieces, is served (a server with the default
    // 10 s, so a loaded machine cannot make the pieces late).
    let s = server(ServerConfig::default()).await;
    let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&body.as_bytes()[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tcp.write_all(&body.as_bytes()[5..]).await.unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(SAFETY, tcp.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    assert_eq!(s.stats().logins, 1);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout_and_active_ones_are_not() {
    let timeout = Duration::from_millis(300);
    let s = server(
        ServerConfig::default()
            .with_header_read_timeout(timeout)
            .with_latency(Latency {
                // A handler slower than the header timeout is not cut short.
                api: Duration::from_millis(600),
                ..Latency::default()
            }),
    )
    .await;
    let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
    let request = format!("GET /api/items/1 HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr());
    tcp.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut tcp).await;
    // Answered (401: no token) after the latency, then closed while idle.
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(s.stats().api_401_missing, 1);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let s = server(
        ServerConfig::default()
            .with_max_connections(2)
            // Long enough that the held connections are not closed by it during the test.
            .with_header_read_timeout(Duration::from_secs(60)),
    )
    .await;
    let first = TcpStream::connect(s.addr()).await.unwrap();
    let second = TcpStream::connect(s.addr()).await.unwrap();
    eventually("two connections accepted", || s.open_connections() == 2).await;

    // The third connects (the kernel completes the handshake) and sends a whole request, but
    // is not served while both slots are taken.
    let mut third = TcpStream::connect(s.addr()).await.unwrap();
    item_request(&mut third, &s).await;
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut byte)).await;
    assert!(early.is_err(), "served beyond the limit: {early:?}");
    assert_eq!(s.open_connections(), 2);
    assert_eq!(s.stats().api_401_missing, 0);

    // A slot frees up: the waiting connection is served.
    drop(first);
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(s.stats().api_401_missing, 1);
    assert!(s.open_connections() <= 2);
    drop(second);
    eventually("every connection released", || s.open_connections() == 0).await;
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_and_closes_idle_connections() {
    let s = server(ServerConfig::default().with_latency(Latency {
        api: Duration::from_millis(500),
        ..Latency::default()
    }))
    .await;
    let c = client();
    let pair = login(&c, &s, Contract::Json).await;
    let mut idle = TcpStream::connect(s.addr()).await.unwrap();
    eventually("idle connection accepted", || s.open_connections() >= 1).await;

    let in_flight = {
        let (c, url, access) = (c.clone(), s.url("/api/items/7"), pair.access.clone());
        tokio::spawn(async move {
            c.get(url)
                .bearer_auth(access)
                .send()
                .await
                .map(|response| response.status())
        })
    };
    // The request has been decided (counted) before shutdown starts; it is still waiting out
    // its latency.
    eventually("request arrived", || s.stats().api_ok == 1).await;
    let started = Instant::now();
    s.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown waited for its timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(in_flight.await.unwrap().unwrap(), StatusCode::OK);
    assert!(read_until_closed(&mut idle).await.is_empty());
}
