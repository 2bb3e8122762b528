//! The crate's one lock-poison policy.
//!
//! A mutex is poisoned when a thread panicked while holding it. Every lock
//! in Luciole guards bookkeeping that each operation leaves whole (counters,
//! the outbox ledger, the lamp's inputs), and a pole must keep lighting and
//! publishing after one of its threads failed: so a poisoned lock is taken
//! over, not propagated. The panic itself is reported where it happened
//! (the thread's join, the log).

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking it over if a panicking thread poisoned it.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_lock_poisoned_by_a_panicking_thread_is_taken_over_with_its_data() {
        let shared = Arc::new(Mutex::new(41));
        let other = Arc::clone(&shared);
        let panicked = std::thread::spawn(move || {
            let mut value = other.lock().unwrap();
            *value += 1;
            panic!("a thread fails while holding the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(shared.is_poisoned());
        assert_eq!(*lock(&shared), 42);
    }
}
