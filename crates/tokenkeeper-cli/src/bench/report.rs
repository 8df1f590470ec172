//! What one `tokenkeeper bench` run measured: the input of [`markdown`](super::markdown).

use serde::Serialize;

/// Everything measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Where and when.
    pub machine: super::machine::Machine,
    /// The command that produced it.
    pub command: String,
    /// Whether this was `--quick`.
    pub quick: bool,
    /// Bytes per waiting request.
    pub waiters: super::waiters::WaiterCost,
    /// Instructions and allocations per request.
    pub instructions: super::instructions::Outcome,
    /// The same from an earlier build, when given: (what it was, figures).
    pub instructions_before: Option<(String, super::instructions::Instructions)>,
    /// Throughput of the same clients.
    pub overhead: super::overhead::Overhead,
    /// Bursts.
    pub bursts: Vec<super::burst::Burst>,
    /// Connections the bursts were capped to.
    pub burst_connections: usize,
    /// Steady load.
    pub steady: Vec<super::steady::Steady>,
    /// P processes sharing one login (file store; Redis when asked).
    pub shared_stores: Vec<super::shared_store::SharedStoreFigures>,
    /// The attach micro-benchmark, if criterion's output was found.
    pub attach: Option<super::criterion::Attach>,
    /// The server's memory per login and per refresh, if its bench was run.
    pub server_memory: Option<super::server_memory::ServerMemory>,
    /// Section 7, from `cargo bench -p tokenkeeper-cli --bench keyed_memory`, if it was run.
    pub keyed_memory: Option<super::keyed_memory::KeyedMemory>,
    /// Wall time of the whole bench, seconds.
    pub elapsed_s: f64,
}
