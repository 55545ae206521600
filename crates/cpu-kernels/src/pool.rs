//! A small thread pool for the kernels: the calling thread plus `threads - 1` workers split a job's
//! tasks by claiming them one at a time from an atomic counter (so a thread that is descheduled
//! delays at most the task it holds, and the others take the rest).
//!
//! Waiting is "spin briefly, then sleep": between the many small products of one token, workers
//! spin for a short while (a few tens of microseconds) so the next job starts without a wake-up;
//! after that they park, and the caller waiting for the last task parks too. Parking matters when
//! another process shares the cores: a spinning thread would keep a core from the thread that holds
//! the remaining work (OpenMP-style pools collapse there), while a parked one lets the kernel run
//! it. std's `park`/`unpark` are futex-based on Linux.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

/// How long a thread spins on a condition before it parks.
const SPIN: Duration = Duration::from_micros(50);

type Job = dyn Fn(usize) + Sync;

/// A lifetime-erased `&Job`, valid while the job that published it runs (see `Pool::run`).
#[derive(Clone, Copy)]
struct JobRef(*const Job);
// SAFETY: the pointee is `Sync`, and `Pool::run` keeps it alive while any worker can use it.
unsafe impl Send for JobRef {}

struct Shared {
    /// The current job and its generation; workers run a generation at most once.
    job: Mutex<(usize, Option<JobRef>)>,
    /// Bumped (after `job` is set) for every job, so spinning workers see it without the lock.
    generation: AtomicUsize,
    next_task: AtomicUsize,
    n_tasks: AtomicUsize,
    /// Tasks not yet finished.
    remaining: AtomicUsize,
    /// Workers that took the current job's pointer and have not let go of it.
    active: AtomicUsize,
    workers: Mutex<Vec<Thread>>,
    caller: Mutex<Option<Thread>>,
    caller_parked: AtomicBool,
    shutdown: AtomicBool,
    /// The first panic of a task on a worker during the current job, re-raised by the caller.
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// A pool of `threads` threads (the caller counts as one).
pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    /// One job at a time (jobs come from one model thread; this keeps it sound anyway).
    busy: Mutex<()>,
}

impl Pool {
    /// A pool that runs jobs on `threads` threads (at least 1).
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            job: Mutex::new((0, None)),
            generation: AtomicUsize::new(0),
            next_task: AtomicUsize::new(0),
            n_tasks: AtomicUsize::new(0),
            remaining: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            workers: Mutex::new(Vec::new()),
            caller: Mutex::new(None),
            caller_parked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        let mut handles = Vec::new();
        for i in 1..threads {
            let s = shared.clone();
            match thread::Builder::new().name(format!("cpu-kernels-{i}")).spawn(move || worker(s)) {
                Ok(h) => handles.push(h.thread().clone()),
                // Fewer threads is slower, not wrong: the caller runs every task it is left with.
                Err(_) => break,
            }
        }
        let threads = handles.len() + 1;
        *lock(&shared.workers) = handles;
        Pool { shared, threads, busy: Mutex::new(()) }
    }

    /// The number of threads jobs run on.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i)` for every `i` in `0..n_tasks`, each exactly once, spread over the pool; returns
    /// when all are done.
    ///
    /// Panics in tasks: a panic on a worker is caught there, the remaining tasks still run, and
    /// the first panic is re-raised here once every task has finished. A panic on the calling
    /// thread unwinds out of `run` only after every worker has let go of `f` (the job guard below
    /// withdraws the unclaimed tasks and waits), so `f` never outlives its borrow. The pool keeps
    /// working afterwards.
    pub fn run<'f>(&self, n_tasks: usize, f: &'f (dyn Fn(usize) + Sync + 'f)) {
        if self.threads == 1 || n_tasks <= 1 {
            (0..n_tasks).for_each(f);
            return;
        }
        let _one_job = lock(&self.busy);
        let s = &*self.shared;
        s.n_tasks.store(n_tasks, Ordering::SeqCst);
        s.next_task.store(0, Ordering::SeqCst);
        s.remaining.store(n_tasks, Ordering::SeqCst);
        *lock(&s.panic) = None;
        *lock(&s.caller) = Some(thread::current());
        // Lifetime erasure only: workers copy the pointer only under the `job` lock while it is
        // set, counting themselves in `active`; `JobGuard`'s drop (on return and on unwind alike)
        // clears the slot under the same lock and waits for `active == 0` before `run` returns.
        // SAFETY: so `f` outlives every use of the erased pointer (same layout, only the lifetime differs).
        let erased: *const Job = unsafe { std::mem::transmute::<&'f (dyn Fn(usize) + Sync + 'f), *const Job>(f) };
        let generation = {
            let mut job = lock(&s.job);
            job.0 += 1;
            job.1 = Some(JobRef(erased));
            job.0
        };
        let guard = JobGuard { s };
        s.generation.store(generation, Ordering::SeqCst);
        for w in lock(&s.workers).iter() {
            w.unpark();
        }
        // A panic here unwinds through `guard`, which withdraws the unclaimed tasks and waits.
        run_tasks(s, f, false);
        // Wait for the tasks other threads hold: spin, then park until the last one unparks us
        // (the timeout is a backstop; the unpark is the normal path).
        let start = Instant::now();
        while s.remaining.load(Ordering::SeqCst) != 0 {
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                s.caller_parked.store(true, Ordering::SeqCst);
                if s.remaining.load(Ordering::SeqCst) != 0 {
                    thread::park_timeout(Duration::from_millis(1));
                }
                s.caller_parked.store(false, Ordering::SeqCst);
            }
        }
        drop(guard);
        if let Some(payload) = lock(&s.panic).take() {
            std::panic::resume_unwind(payload);
        }
    }
}

/// Ends a job on every exit from [`Pool::run`], unwinding included: no task is handed out after
/// it, and it returns only once no worker holds the job's closure.
struct JobGuard<'a> {
    s: &'a Shared,
}

impl Drop for JobGuard<'_> {
    fn drop(&mut self) {
        let s = self.s;
        // Withdraw the tasks nobody has claimed (a no-op after a normal finish: all were claimed).
        s.next_task.store(usize::MAX / 2, Ordering::SeqCst);
        lock(&s.job).1 = None;
        // Workers still counted in `active` are finishing the task they hold (or just found none
        // left); each lets go right after.
        while s.active.load(Ordering::SeqCst) != 0 {
            thread::yield_now();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for w in lock(&self.shared.workers).iter() {
            w.unpark();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking task cannot leave these values inconsistent (they are plain handles and counters).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Claims and runs tasks until none is left. On a worker (`catch = true`) a panicking task is
/// caught and its payload kept for the caller (the first one); the task still counts as finished,
/// so the caller's wait ends.
fn run_tasks(s: &Shared, f: &(dyn Fn(usize) + Sync + '_), catch: bool) {
    let n = s.n_tasks.load(Ordering::SeqCst);
    loop {
        let i = s.next_task.fetch_add(1, Ordering::SeqCst);
        if i >= n {
            return;
        }
        if catch {
            if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))) {
                let mut first = lock(&s.panic);
                if first.is_none() {
                    *first = Some(payload);
                }
            }
        } else {
            f(i);
        }
        if s.remaining.fetch_sub(1, Ordering::SeqCst) == 1 && s.caller_parked.load(Ordering::SeqCst) {
            if let Some(c) = lock(&s.caller).as_ref() {
                c.unpark();
            }
        }
    }
}

fn worker(s: Arc<Shared>) {
    let mut seen = 0usize;
    loop {
        let start = Instant::now();
        while s.generation.load(Ordering::SeqCst) == seen {
            if s.shutdown.load(Ordering::SeqCst) {
                return;
            }
            if start.elapsed() < SPIN {
                std::hint::spin_loop();
            } else {
                thread::park_timeout(Duration::from_millis(20));
            }
        }
        if s.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let job = {
            let job = lock(&s.job);
            seen = job.0;
            if job.1.is_some() {
                s.active.fetch_add(1, Ordering::SeqCst);
            }
            job.1
        };
        if let Some(JobRef(f)) = job {
            // SAFETY: counted in `active` under the lock while the job was set; `Pool::run` does
            // not return (and `f` stays alive) until we decrement it.
            run_tasks(&s, unsafe { &*f }, true);
            s.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// The process-wide pool, sized by [`set_threads`] (or the available cores) on first use.
pub fn global() -> &'static Pool {
    GLOBAL.get_or_init(|| Pool::new(*THREADS.get_or_init(default_threads)))
}

static GLOBAL: OnceLock<Pool> = OnceLock::new();
static THREADS: OnceLock<usize> = OnceLock::new();

fn default_threads() -> usize {
    thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Sets the global pool's size; effective only before its first use (returns whether it took).
pub fn set_threads(n: usize) -> bool {
    THREADS.set(n.max(1)).is_ok() && GLOBAL.get().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Barrier;

    fn on_worker() -> bool {
        thread::current().name().is_some_and(|n| n.starts_with("cpu-kernels-"))
    }

    /// The pool still computes every task exactly once.
    fn check_works(pool: &Pool) {
        let hits: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
        pool.run(hits.len(), &|i| {
            hits[i].fetch_add(1, Ordering::SeqCst);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
    }

    /// Two tasks that meet at a barrier run on two different threads (the caller and the worker),
    /// so each test below knows which side its panic happens on.
    #[test]
    fn a_panic_on_the_calling_thread_waits_for_the_workers_then_unwinds() {
        let pool = Pool::new(2);
        assert_eq!(pool.threads(), 2);
        let barrier = Barrier::new(2);
        let worker_done = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(2, &|_| {
                barrier.wait();
                if on_worker() {
                    // Still borrowing `worker_done` (the caller's stack) well after the caller panicked.
                    thread::sleep(Duration::from_millis(50));
                    worker_done.fetch_add(1, Ordering::SeqCst);
                } else {
                    panic!("task panicked on the caller");
                }
            })
        }));
        let payload = result.expect_err("the caller's panic propagates");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task panicked on the caller"));
        // `run` unwound only after the worker let go of the closure.
        assert_eq!(worker_done.load(Ordering::SeqCst), 1);
        check_works(&pool);
    }

    #[test]
    fn a_panic_on_a_worker_is_reraised_on_the_caller_after_every_task_finished() {
        let pool = Pool::new(2);
        let barrier = Barrier::new(2);
        let caller_done = AtomicUsize::new(0);
        let result = catch_unwind(AssertUnwindSafe(|| {
            pool.run(2, &|_| {
                barrier.wait();
                if on_worker() {
                    panic!("task panicked on a worker");
                } else {
                    thread::sleep(Duration::from_millis(20));
                    caller_done.fetch_add(1, Ordering::SeqCst);
                }
            })
        }));
        let payload = result.expect_err("the worker's panic reaches the caller instead of hanging it");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"task panicked on a worker"));
        assert_eq!(caller_done.load(Ordering::SeqCst), 1);
        check_works(&pool);
        // And the next job is not blamed for the old panic.
        check_works(&pool);
    }
}
