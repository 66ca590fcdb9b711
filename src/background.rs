//! Embedding behind the lexical index, for a long-running server: one worker thread (the
//! model already uses every core) and a deduplicated queue of repositories. A pass stops
//! between batches when a reindex of its repository wants the writer, so a reindex waits
//! for at most one batch; every finished batch is kept, and the next pass resumes.

use crate::engine::Engine;
use crate::ingest::Progress;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

#[derive(Default)]
struct State {
    queue: VecDeque<PathBuf>,
    current: Option<PathBuf>,
    stop: bool,
}

struct Shared {
    engine: Arc<Engine>,
    state: Mutex<State>,
    wake: Condvar,
    /// Set to end the current pass after its batch (a reindex, or shutdown).
    interrupt: AtomicBool,
    passes: AtomicU64,
}

/// The background embedding worker; stopped (after at most one batch) when dropped.
pub struct EmbedWorker {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbedWorker {
    pub fn start(engine: Arc<Engine>) -> EmbedWorker {
        let shared = Arc::new(Shared {
            engine,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            interrupt: AtomicBool::new(false),
            passes: AtomicU64::new(0),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("codectx-embed".into())
            .spawn(move || run(&worker))
            .map_err(|e| tracing::error!("cannot start the embedding worker: {e}"))
            .ok();
        EmbedWorker { shared, thread }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a pass over `root` (once: a repository already waiting is not queued again).
    pub fn enqueue(&self, root: &Path) {
        let mut state = self.state();
        if !state.queue.iter().any(|r| r == root) {
            state.queue.push_back(root.to_path_buf());
            self.shared.wake.notify_all();
        }
    }

    /// Ends the pass over `root`, if one runs, after its current batch, and takes `root` off
    /// the queue (its writer is about to be wanted). The caller queues it again when done.
    pub fn interrupt(&self, root: &Path) {
        let mut state = self.state();
        state.queue.retain(|r| r != root);
        if state.current.as_deref() == Some(root) {
            self.shared.interrupt.store(true, Ordering::SeqCst);
        }
    }

    /// Whether `root` is queued or being embedded.
    pub fn pending(&self, root: &Path) -> bool {
        let state = self.state();
        state.current.as_deref() == Some(root) || state.queue.iter().any(|r| r == root)
    }

    /// Repositories waiting, plus the one being embedded.
    pub fn depth(&self) -> usize {
        let state = self.state();
        state.queue.len() + usize::from(state.current.is_some())
    }

    /// Passes finished (interrupted or not) since the start.
    pub fn passes(&self) -> u64 {
        self.shared.passes.load(Ordering::SeqCst)
    }
}

impl Drop for EmbedWorker {
    fn drop(&mut self) {
        self.state().stop = true;
        self.shared.interrupt.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The pass's progress: only asks whether to stop.
struct Interruptible<'a>(&'a AtomicBool);

impl Progress for Interruptible<'_> {
    fn cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

fn run(shared: &Shared) {
    loop {
        let root = {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if state.stop {
                    return;
                }
                if let Some(root) = state.queue.pop_front() {
                    state.current = Some(root.clone());
                    shared.interrupt.store(false, Ordering::SeqCst);
                    break root;
                }
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        match shared
            .engine
            .embed_behind(&root, &Interruptible(&shared.interrupt))
        {
            Ok(Some(r)) => tracing::info!(
                "embedded {} in the background: {} new, {} from cache, {:.0}% coverage{}",
                root.display(),
                r.embedded,
                r.from_cache,
                r.coverage * 100.0,
                if r.interrupted { " (interrupted)" } else { "" }
            ),
            Ok(None) => {}
            // No model, a damaged store: reported, and the repository stays lexical.
            Err(e) => tracing::warn!("embedding {} in the background: {e}", root.display()),
        }
        shared.passes.fetch_add(1, Ordering::SeqCst);
        shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .current = None;
    }
}
