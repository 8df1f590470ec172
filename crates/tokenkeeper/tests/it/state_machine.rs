//! Property test of the session state machine, without HTTP: a model auth server with
//! refresh-token rotation and reuse detection, driven by random interleavings of requests,
//! expiries, refresh outcomes, sign-ins and cancellations.
//!
//! Properties, for every interleaving:
//! - never two refresh calls at once (single flight);
//! - never a rotated refresh token presented again (no reuse detection);
//! - never a lost rotation: once quiet, the session holds its family's newest refresh token;
//! - never a hang: every request finishes, and a dead refresh token ends the session once.

use proptest::prelude::*;
use secrecy::ExposeSecret;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokenkeeper::refresh::{self, RefreshError};
use tokenkeeper::{Event, RefreshMode, Session, TokenSet};

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    Transient,
    Terminal,
}

#[derive(Debug, Clone)]
enum Op {
    /// `count` concurrent requests; each is dropped after `cancel_after_ms` if set.
    Requests {
        count: usize,
        cancel_after_ms: Option<u64>,
    },
    /// The current access token expires at the server.
    Expire,
    /// A new login (a new family).
    SignIn,
    Pause {
        ms: u64,
    },
}

#[derive(Default)]
struct Family {
    refresh: String,
    access: String,
    expired: bool,
    dead: bool,
    rotations: u64,
}

#[derive(Default)]
struct Model {
    families: Mutex<HashMap<u64, Family>>,
    latest_family: AtomicUsize,
    script: Mutex<VecDeque<(Outcome, u64)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    reuse: AtomicUsize,
    terminal: AtomicUsize,
}

fn family_of(token: &str) -> u64 {
    token.split('-').next().unwrap()[1..].parse().unwrap()
}

impl Model {
    fn login(&self) -> TokenSet {
        let id = self.latest_family.fetch_add(1, SeqCst) as u64 + 1;
        let family = Family {
            refresh: format!("f{id}-r0"),
            access: format!("f{id}-a0"),
            ..Family::default()
        };
        let tokens =
            TokenSet::new(family.access.clone()).with_refresh_token(family.refresh.clone());
        self.families.lock().unwrap().insert(id, family);
        tokens
    }

    fn accepts(&self, access: &str) -> bool {
        let families = self.families.lock().unwrap();
        let family = &families[&family_of(access)];
        !family.dead && !family.expired && family.access == access
    }

    fn expire_latest(&self) {
        let id = self.latest_family.load(SeqCst) as u64;
        if let Some(family) = self.families.lock().unwrap().get_mut(&id) {
            family.expired = true;
        }
    }

    async fn refresh(&self, current: TokenSet) -> Result<TokenSet, RefreshError> {
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max_in_flight.fetch_max(now, SeqCst);
        let (outcome, delay) = self
            .script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or((Outcome::Ok, 1));
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let presented = current.refresh_token().unwrap().expose_secret().to_owned();
        let result = {
            let mut families = self.families.lock().unwrap();
            let family = families.get_mut(&family_of(&presented)).unwrap();
            if family.dead {
                Err(RefreshError::Rejected("revoked".into()))
            } else if family.refresh != presented {
                self.reuse.fetch_add(1, SeqCst);
                family.dead = true;
                Err(RefreshError::Rejected("reuse".into()))
            } else {
                match outcome {
                    Outcome::Ok => {
                        family.rotations += 1;
                        let id = family_of(&presented);
                        family.refresh = format!("f{id}-r{}", family.rotations);
                        family.access = format!("f{id}-a{}", family.rotations);
                        family.expired = false;
                        Ok(TokenSet::new(family.access.clone())
                            .with_refresh_token(family.refresh.clone()))
                    }
                    Outcome::Transient => Err(RefreshError::transient("injected")),
                    Outcome::Terminal => {
                        family.dead = true;
                        self.terminal.fetch_add(1, SeqCst);
                        Err(RefreshError::Rejected("injected".into()))
                    }
                }
            }
        };
        self.in_flight.fetch_sub(1, SeqCst);
        result
    }
}

/// One request as an adapter makes it: attach, and on refusal ask the session once.
async fn request(session: Session, model: Arc<Model>) {
    let Ok(credential) = session.credential().await else {
        return;
    };
    if model.accepts(credential.access_token().expose_secret()) {
        return;
    }
    if let Ok(fresh) = session.token_rejected(&credential).await {
        let _ = model.accepts(fresh.access_token().expose_secret());
    }
}

async fn run(ops: Vec<Op>, script: Vec<(Outcome, u64)>) {
    let model = Arc::new(Model::default());
    model.script.lock().unwrap().extend(script);
    let refresher = {
        let model = Arc::clone(&model);
        refresh::from_fn(move |current| {
            let model = Arc::clone(&model);
            async move { model.refresh(current).await }
        })
    };
    let session = Session::builder()
        .refresher(refresher)
        .attach_to_any()
        .mode(RefreshMode::Reactive)
        .refresh_timeout(Duration::from_millis(300))
        .attempt_timeout(Duration::from_millis(100))
        .backoff(Duration::from_millis(2), Duration::from_millis(10))
        .build()
        .unwrap();
    let mut events = session.events();
    session.sign_in(model.login()).await.unwrap();

    let mut tasks = Vec::new();
    for op in ops {
        match op {
            Op::Requests {
                count,
                cancel_after_ms,
            } => {
                for _ in 0..count {
                    let work = request(session.clone(), Arc::clone(&model));
                    tasks.push(tokio::spawn(async move {
                        match cancel_after_ms {
                            Some(ms) => {
                                let _ = tokio::time::timeout(Duration::from_millis(ms), work).await;
                            }
                            None => work.await,
                        }
                    }));
                }
            }
            Op::Expire => model.expire_latest(),
            Op::SignIn => {
                let _ = session.sign_in(model.login()).await;
            }
            Op::Pause { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        for task in tasks {
            task.await.unwrap();
        }
        // Flights whose waiters were all cancelled still run to their end.
        while model.in_flight.load(SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("no request or refresh hangs");
    tokio::time::sleep(Duration::from_millis(20)).await;

    assert!(
        model.max_in_flight.load(SeqCst) <= 1,
        "two refreshes ran at once"
    );
    // Nobody else writes this session's store, so a flight that found newer tokens there was a
    // redundant flight: the lock and re-read saved it, but single flight should have.
    assert_eq!(session.stats().adopted, 0, "redundant refresh flights");
    assert_eq!(
        model.reuse.load(SeqCst),
        0,
        "a rotated refresh token was presented again"
    );
    match session.snapshot() {
        Ok(credential) => {
            let held = credential
                .tokens()
                .refresh_token()
                .unwrap()
                .expose_secret()
                .to_owned();
            let families = model.families.lock().unwrap();
            let family = &families[&family_of(&held)];
            if !family.dead {
                assert_eq!(held, family.refresh, "a rotated refresh token was lost");
            }
        }
        Err(_) => assert!(
            model.terminal.load(SeqCst) > 0,
            "signed out without a terminal failure"
        ),
    }
    let mut logged_out = 0;
    while let Ok(event) = events.try_recv() {
        if matches!(event, Event::LoggedOut { .. }) {
            logged_out += 1;
        }
    }
    let dead_families = model
        .families
        .lock()
        .unwrap()
        .values()
        .filter(|f| f.dead)
        .count();
    assert!(
        logged_out <= dead_families,
        "{logged_out} logouts for {dead_families} dead families"
    );
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..40, proptest::option::of(0u64..30))
            .prop_map(|(count, cancel_after_ms)| Op::Requests { count, cancel_after_ms }),
        3 => Just(Op::Expire),
        1 => Just(Op::SignIn),
        2 => (0u64..30).prop_map(|ms| Op::Pause { ms }),
    ]
}

fn outcome() -> impl Strategy<Value = (Outcome, u64)> {
    (
        prop_oneof![6 => Just(Outcome::Ok), 3 => Just(Outcome::Transient), 1 => Just(Outcome::Terminal)],
        0u64..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn random_interleavings_keep_the_invariants(
        ops in proptest::collection::vec(op(), 1..25),
        script in proptest::collection::vec(outcome(), 0..12),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(run(ops, script));
    }
}

/// The same model under a heavier, fixed load: many waves of concurrent requests across many
/// expiries, with cancellations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_many_expiries_and_cancellations() {
    let mut ops = Vec::new();
    for wave in 0..60u64 {
        ops.push(Op::Expire);
        ops.push(Op::Requests {
            count: 200,
            cancel_after_ms: (wave % 3 == 0).then_some(wave % 7),
        });
        ops.push(Op::Pause { ms: 3 });
    }
    run(ops, vec![(Outcome::Ok, 5); 60]).await;
}
