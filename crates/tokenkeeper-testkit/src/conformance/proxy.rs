//! A TCP proxy on 127.0.0.1 in front of a Redis or PostgreSQL server, for the dropped-connection
//! test: one handle connects through it, so the test knows which server-side connections are
//! that handle's (by the proxy's own local ports) and can end exactly those on the server
//! (`CLIENT KILL`, `pg_terminate_backend`), never another test's. While it is [cut](Proxy::cut),
//! it also refuses new connections: the handle cannot reach the server until
//! [healed](Proxy::heal).

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};

/// A forwarding proxy that can cut its connections (see the module's docs).
#[derive(Debug)]
pub struct Proxy {
    /// `host:port` to connect to instead of the server.
    pub addr: String,
    /// The proxy's ends of its live connections to the server (local ports), as the server sees
    /// its clients.
    upstream_ports: Arc<Mutex<Vec<u16>>>,
    cut: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let upstream_ports = Arc::new(Mutex::new(Vec::new()));
        let cut = Arc::new(AtomicBool::new(false));
        let task = {
            let (upstream, ports, cut) = (upstream.to_owned(), upstream_ports.clone(), cut.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        return;
                    };
                    if cut.load(SeqCst) {
                        // A partition: the connection is dropped at once.
                        continue;
                    }
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let port = server.local_addr().unwrap().port();
                    ports.lock().unwrap().push(port);
                    let ports = ports.clone();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        ports.lock().unwrap().retain(|p| *p != port);
                    });
                }
            })
        };
        Self {
            addr,
            upstream_ports,
            cut,
            task,
        }
    }

    /// From now on new connections are refused; returns the server-side identities (the
    /// proxy's local ports) of the connections alive now, for the caller to end on the server.
    pub fn cut(&self) -> Vec<u16> {
        self.cut.store(true, SeqCst);
        self.upstream_ports.lock().unwrap().clone()
    }

    /// New connections are forwarded again.
    pub fn heal(&self) {
        self.cut.store(false, SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `url` with its `host:port` (after `scheme://` and any `user@`) replaced by `addr`.
pub fn through(url: &str, addr: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (user, rest) = match rest.split_once('@') {
        Some((user, rest)) if !user.contains('/') => (format!("{user}@"), rest),
        _ => (String::new(), rest),
    };
    let tail = rest.find(['/', '?']).map_or("", |at| &rest[at..]);
    format!("{scheme}://{user}{addr}{tail}")
}

/// The `host:port` a URL points at.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let rest = rest.split_once('@').map_or(rest, |(_, rest)| rest);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[cfg(test)]
#[test]
fn urls_are_pointed_at_the_proxy() {
    assert_eq!(
        through("postgres://tk@127.0.0.1:6393/tk?x=1", "127.0.0.1:9"),
        "postgres://tk@127.0.0.1:9/tk?x=1"
    );
    assert_eq!(
        through("redis://127.0.0.1:6390", "127.0.0.1:9"),
        "redis://127.0.0.1:9"
    );
    assert_eq!(host_port("redis://127.0.0.1:6390/0"), "127.0.0.1:6390");
    assert_eq!(
        host_port("postgres://tk@127.0.0.1:6393/tk"),
        "127.0.0.1:6393"
    );
}
