//! The reference server on its own OS thread and tokio runtime, so the client under test and
//! the server do not share one scheduler.

use anyhow::{Context, anyhow};
use tokenkeeper_server::{AppState, ServerConfig, Stats};
use tokio::sync::oneshot;

/// A reference server running on a dedicated thread.
#[derive(Debug)]
pub struct ServerThread {
    base_url: String,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Starts a server with `config` on a new thread running a runtime of `workers` threads.
    pub fn start(config: ServerConfig, workers: usize) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-server".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers.max(1))
                    .thread_name("bench-server-worker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(anyhow!("server runtime: {error}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match tokenkeeper_server::start(config).await {
                        Ok(server) => {
                            let _ = ready_tx.send(Ok((server.base_url(), server.state().clone())));
                            // Either a stop signal or the handle being dropped ends the wait.
                            let _ = stop_rx.await;
                            server.shutdown().await;
                        }
                        Err(error) => {
                            let _ = ready_tx.send(Err(anyhow!("starting the server: {error}")));
                        }
                    }
                });
            })
            .context("spawning the server thread")?;
        let (base_url, state) = ready_rx
            .recv()
            .context("the server thread ended before starting")??;
        Ok(Self {
            base_url,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The server's counters.
    pub fn stats(&self) -> Stats {
        self.state.stats()
    }

    /// Stops the server and waits for its thread.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && tokio::task::spawn_blocking(move || thread.join())
                .await
                .is_err()
        {
            tracing::warn!("the server thread did not stop cleanly");
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        // The thread notices the closed channel and shuts the server down on its own.
        self.stop.take();
    }
}
