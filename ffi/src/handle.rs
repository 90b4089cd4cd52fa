//! Opaque handles: how a Rust value is handed to C and back.
//!
//! A handle type is a zero-sized struct C only ever sees through a pointer
//! (`typedef struct gw_engine gw_engine;`). [`Handle`] ties it to the Rust
//! value behind it; [`into_raw`] boxes a value for a `*_new`/`*_open`
//! function, [`borrow`] gives methods a shared reference, and [`free`] is the
//! body of the one `*_free` function per handle. Values are only ever
//! borrowed shared (`&T`): handles whose methods may run concurrently must
//! wrap a `Sync` type, and each handle type documents its thread-safety.

use crate::error::FfiError;
use crate::guard::non_null;

/// Ties an opaque C handle type to the Rust value a pointer to it stands for.
///
/// # Safety
///
/// Implement it only for zero-sized types that Rust never constructs, so
/// that every `*const Self` a C caller holds came from [`into_raw`] of the
/// same `Self` and so points to a live, boxed `Self::Target`.
pub unsafe trait Handle {
    /// The Rust value behind the handle.
    type Target;
}

/// Moves `value` to the heap and returns the handle C receives. Exactly one
/// [`free`] releases it.
pub fn into_raw<H: Handle>(value: H::Target) -> *mut H {
    Box::into_raw(Box::new(value)).cast()
}

/// Borrows the value behind the handle argument `name`; NULL is
/// `GW_ERR_NULL_ARGUMENT`.
///
/// # Safety
///
/// `ptr` must be NULL or a handle from [`into_raw`] that is not freed during
/// `'a`.
pub unsafe fn borrow<'a, H: Handle>(ptr: *const H, name: &str) -> Result<&'a H::Target, FfiError> {
    let ptr = non_null(ptr, name)?;
    // SAFETY: by the `Handle` contract and this function's, a non-NULL
    // handle is a live `Box<H::Target>` from `into_raw`, alive for 'a.
    Ok(unsafe { ptr.cast::<H::Target>().as_ref() })
}

/// Drops the value behind `ptr`; NULL is a no-op (like C's `free`).
///
/// # Safety
///
/// `ptr` must be NULL or a handle from [`into_raw`] that was not freed yet
/// and is not in use by another thread; it is dangling afterwards.
pub unsafe fn free<H: Handle>(ptr: *mut H) {
    if !ptr.is_null() {
        // SAFETY: by the contract above, `ptr` is the pointer `into_raw` got
        // from `Box::into_raw` for this `H::Target`, freed exactly once here.
        drop(unsafe { Box::from_raw(ptr.cast::<H::Target>()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::gw_result;
    use std::sync::Arc;

    /// A handle for tests; its value holds an `Arc` so drops can be counted.
    #[allow(non_camel_case_types)]
    struct gw_probe {
        _private: [u8; 0],
    }

    // SAFETY: zero-sized and never constructed; pointers come from into_raw.
    unsafe impl Handle for gw_probe {
        type Target = (u32, Arc<()>);
    }

    #[test]
    fn handles_round_trip_and_free_exactly_once() {
        let shared = Arc::new(());
        let h: *mut gw_probe = into_raw::<gw_probe>((7, Arc::clone(&shared)));
        assert_eq!(Arc::strong_count(&shared), 2);
        // SAFETY: `h` is live until the free below.
        let value = unsafe { borrow(h.cast_const(), "probe") }.expect("live");
        assert_eq!(value.0, 7);
        // SAFETY: `h` came from into_raw and is freed once.
        unsafe { free(h) };
        assert_eq!(Arc::strong_count(&shared), 1, "the boxed value was dropped");
        // SAFETY: NULL is a no-op.
        unsafe { free::<gw_probe>(std::ptr::null_mut()) };
    }

    #[test]
    fn borrowing_null_is_a_null_argument() {
        // SAFETY: NULL is rejected before any read.
        let err = unsafe { borrow::<gw_probe>(std::ptr::null(), "engine") }.expect_err("null");
        assert_eq!(err.code(), gw_result::GW_ERR_NULL_ARGUMENT);
    }
}
