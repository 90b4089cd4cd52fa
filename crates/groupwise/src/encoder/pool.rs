//! A small pool of ONNX Runtime sessions.
//!
//! `ort::Session::run` takes `&mut self` (some ONNX Runtime internals are not
//! thread-safe), so one session behind one mutex would serialise every encode
//! in the process. The pool holds several sessions of the same model; a caller
//! takes the first free one (try-lock, starting at a rotating position) and
//! only waits when all are busy.

use std::sync::atomic::{AtomicUsize, Ordering};

use ort::session::Session;
use parking_lot::{Mutex, MutexGuard};

pub(crate) struct SessionPool {
    sessions: Vec<Mutex<Session>>,
    next: AtomicUsize,
}

impl SessionPool {
    pub fn new(sessions: Vec<Session>) -> Self {
        SessionPool {
            sessions: sessions.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn first(&self) -> MutexGuard<'_, Session> {
        self.sessions[0].lock()
    }

    /// A free session, or the next one in turn once it is free.
    pub fn get(&self) -> MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Some(guard) = self.sessions[(start + i) % n].try_lock() {
                return guard;
            }
        }
        self.sessions[start].lock()
    }
}
