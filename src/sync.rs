//! The one policy for a lock a panic poisoned: take the data over and go on.
//!
//! mailprobe catches panics (a probe's, or one while recording an outcome) and reports them as
//! prober faults, so the process keeps probing after one. A lock poisoned by such a panic must
//! keep working: failing every later caller (`expect`) would turn one caught bug into every
//! probe failing or the metrics frozen, and skipping the work would lose it silently and for
//! good. Every critical section here is short and leaves its data usable (single inserts,
//! removals and counter updates), so the worst a panic leaves behind is one update missing,
//! and the panic itself is already counted and logged.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking it over if a panic poisoned it (see the module docs for why).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over_with_its_data() {
        let m = std::sync::Arc::new(Mutex::new(vec![1]));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let mut v = m2.lock().unwrap();
            v.push(2);
            panic!("a bug while holding the lock (deliberate, in the test)");
        })
        .join();
        assert!(m.is_poisoned());
        lock(&m).push(3);
        assert_eq!(*lock(&m), [1, 2, 3]);
    }
}
