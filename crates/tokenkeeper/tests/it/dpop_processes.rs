//! DPoP across processes: child processes (this test binary re-run as `dpop_processes::dpop_worker`) share one
//! DPoP-bound login through a FileStore, one Redis key or one PostgreSQL row, against the independent DPoP server
//! of `dpop_env` in the parent. Every process signs with the login's key (read from the store),
//! the pair is refreshed once per expiry, no refresh token is presented twice, every proof is
//! valid and no `jti` repeats.

#[cfg(feature = "postgres")]
use crate::postgres_env;
#[cfg(feature = "redis")]
use crate::redis_env;

use crate::dpop_env::DpopServer;
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokenkeeper::dpop::DpopKey;
use tokenkeeper::store::{FileStore, TokenStore};
use tokenkeeper::{RefreshMode, Session, TokenSet, refresh};

const ENV: &str = "TK_DPOP_WORKER";

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Store {
    File { path: PathBuf },
    Redis { url: String, key: String },
    Postgres { url: String, key: String },
}

impl Store {
    async fn open(&self) -> Arc<dyn TokenStore> {
        match self {
            Store::File { path } => Arc::new(FileStore::open(path).unwrap()),
            #[cfg(feature = "redis")]
            Store::Redis { url, key } => Arc::new(
                tokenkeeper::store::RedisStore::connect(url, key.clone())
                    .await
                    .unwrap(),
            ),
            #[cfg(not(feature = "redis"))]
            Store::Redis { .. } => panic!("built without feature redis"),
            #[cfg(feature = "postgres")]
            Store::Postgres { url, key } => Arc::new(postgres_env::store(url, key).await),
            #[cfg(not(feature = "postgres"))]
            Store::Postgres { .. } => panic!("built without feature postgres"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Config {
    token_url: String,
    base: String,
    api_url: String,
    store: Store,
    stop: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    ok: u64,
    failed: u64,
    thumbprint: String,
}

fn session(config: &Config, store: Arc<dyn TokenStore>) -> Session {
    Session::builder()
        .refresher(refresh::OAuth2::new(&config.token_url).unwrap())
        .store_arc(store)
        .attach_to([config.base.as_str()])
        .mode(RefreshMode::Reactive)
        .build()
        .unwrap()
}

/// The child: restores the login from the shared store, then sends requests from 4 tasks
/// until the stop file appears; writes `ready-<pid>` beside it after its first success and prints
/// a summary at the end.
#[test]
#[ignore = "run by the other tests as a child process"]
fn dpop_worker() {
    let Ok(config) = std::env::var(ENV) else {
        return;
    };
    let config: Config = serde_json::from_str(&config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime.block_on(async move {
        let session = session(&config, config.store.open().await);
        assert!(session.restore().await.unwrap(), "nothing stored");
        let thumbprint = session
            .credential()
            .await
            .unwrap()
            .tokens()
            .dpop_key()
            .expect("the stored pair carries its key")
            .thumbprint()
            .to_owned();
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(session.middleware())
            .build();
        let ready = Arc::new(std::sync::Once::new());
        let tasks = (0..4).map(|_| {
            let (client, config, ready) = (client.clone(), config.clone(), Arc::clone(&ready));
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                while !config.stop.exists() {
                    match client.get(&config.api_url).send().await {
                        Ok(response) if response.status() == 200 => {
                            ok += 1;
                            ready.call_once(|| {
                                let ready = config
                                    .stop
                                    .with_file_name(format!("ready-{}", std::process::id()));
                                std::fs::write(ready, b"").unwrap();
                            });
                        }
                        Ok(response) => {
                            eprintln!("worker: HTTP {}", response.status());
                            failed += 1;
                        }
                        Err(error) => {
                            eprintln!("worker: {error}");
                            failed += 1;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                (ok, failed)
            })
        });
        let (mut ok, mut failed) = (0, 0);
        for task in futures_util::future::join_all(tasks).await {
            let (o, f) = task.unwrap();
            ok += o;
            failed += f;
        }
        Summary {
            ok,
            failed,
            thumbprint,
        }
    });
    println!(
        "TK-DPOP-SUMMARY {}",
        serde_json::to_string(&summary).unwrap()
    );
}

struct Worker {
    child: Child,
    lines: mpsc::Receiver<String>,
}

fn spawn(config: &Config) -> Worker {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "dpop_processes::dpop_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, serde_json::to_string(config).unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    Worker { child, lines }
}

impl Worker {
    /// Waits for a line starting with `prefix` (the worker's own progress; the bound only
    /// turns a hung worker into a failure).
    fn line(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .expect("the worker went silent");
            if let Some((_, rest)) = line.split_once(prefix) {
                return rest.to_owned();
            }
        }
    }
}

/// Two processes, `expiries` times the server expires the access token under them: each time
/// exactly one refresh, by whichever process gets the lock first; the other adopts the pair and
/// its key from the store.
async fn two_processes_share_the_key(store: Store) {
    let _heavy = crate::heavy().await;
    let server = DpopServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        token_url: server.token_url(),
        base: server.base(),
        api_url: server.api_url(),
        store,
        stop: dir.path().join("stop"),
    };
    let key = DpopKey::generate();
    let login = TokenSet::from_response(&server.issue_login(key.thumbprint()))
        .unwrap()
        .with_dpop_key(key.clone());
    session(&config, config.store.open().await)
        .sign_in(login)
        .await
        .unwrap();

    let mut workers: Vec<Worker> = (0..2).map(|_| spawn(&config)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for worker in &workers {
        let ready = dir.path().join(format!("ready-{}", worker.child.id()));
        while !ready.exists() {
            assert!(Instant::now() < deadline, "a worker never got a response");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let expiries = 5;
    for round in 1..=expiries {
        server.expire_access_tokens();
        let expired_at = server.stats();
        // Both processes keep sending: wait until the refresh happened and plenty of requests
        // succeeded with the new pair.
        loop {
            let now = server.stats();
            if now.refreshes >= round && now.api_ok >= expired_at.api_ok + 100 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stalled in round {round}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    std::fs::write(&config.stop, b"").unwrap();
    let mut summaries = Vec::new();
    for worker in &mut workers {
        let summary: Summary = serde_json::from_str(&worker.line("TK-DPOP-SUMMARY ")).unwrap();
        assert!(worker.child.wait().unwrap().success());
        summaries.push(summary);
    }
    let stats = server.stats();
    assert_eq!(stats.refreshes, expiries, "{stats:?}");
    assert_eq!(
        (stats.refresh_reuse, stats.bad_proofs, stats.jti_reuse),
        (0, 0, 0),
        "{stats:?}"
    );
    for summary in &summaries {
        assert_eq!(summary.failed, 0, "{summaries:?}");
        assert!(summary.ok > 0, "{summaries:?}");
        assert_eq!(summary.thumbprint, key.thumbprint());
    }
    let jkts = server.0.jkts.lock().unwrap().clone();
    assert_eq!(jkts.len(), 1, "{jkts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_file_store_use_one_key_and_refresh_once_per_expiry() {
    let dir = tempfile::tempdir().unwrap();
    two_processes_share_the_key(Store::File {
        path: dir.path().join("tokens.json"),
    })
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_redis_key_use_one_key_and_refresh_once_per_expiry() {
    let Some(url) = redis_env::redis_url() else {
        return;
    };
    two_processes_share_the_key(Store::Redis {
        url,
        key: redis_env::unique_key("dpop-processes"),
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_row_use_one_key_and_refresh_once_per_expiry() {
    let Some(url) = postgres_env::postgres_url() else {
        return;
    };
    two_processes_share_the_key(Store::Postgres {
        url,
        key: postgres_env::unique_key("dpop-processes"),
    })
    .await;
}
