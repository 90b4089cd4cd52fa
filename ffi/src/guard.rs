//! The boundary every `extern "C"` entry point goes through, and the helpers
//! that turn C arguments into Rust values and Rust results into C outputs.
//!
//! An entry point reads like this (the shape every wrapper copies):
//!
//! ```ignore
//! #[no_mangle]
//! pub unsafe extern "C" fn gw_engine_neighbors(
//!     engine: *const gw_engine, user: u64, k: usize,
//!     ids: *mut u64, similarities: *mut f32, capacity: usize, out_len: *mut usize,
//! ) -> gw_result {
//!     guard(|| {
//!         // 1. Arguments: NULL, alignment and UTF-8 checks; nothing is written yet.
//!         // SAFETY: the caller passes a live engine or NULL.
//!         let engine = unsafe { handle::borrow(engine, "engine") }?;
//!         // SAFETY: the caller passes NULL or `capacity` writable elements.
//!         let ids = unsafe { OutSlice::new(ids, capacity, "ids") }?;
//!         // SAFETY: as above.
//!         let similarities = unsafe { OutSlice::new(similarities, capacity, "similarities") }?;
//!         // SAFETY: the caller passes NULL or one writable size_t.
//!         let out_len = unsafe { Out::new(out_len, "out_len") }?;
//!         // 2. The work; a core error becomes its code via `?`.
//!         let found = engine.neighbors(user, k)?;
//!         // 3. Size query, then outputs (only reached on success).
//!         report_size(out_len, found.len(), capacity, "ids")?;
//!         ids.write_iter(found.iter().map(|n| n.id))?;
//!         similarities.write_iter(found.iter().map(|n| n.similarity))?;
//!         Ok(())
//!     })
//! }
//! ```
//!
//! Validating every pointer before doing the work is what makes "outputs are
//! written only on success" hold: once the work succeeded, writing cannot
//! fail any more.

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::NonNull;

use crate::error::{gw_result, set_last_error, FfiError};

/// Runs the body of an entry point: `Ok(())` becomes `GW_OK`; an error or a
/// panic becomes its code, and its message becomes the calling thread's last
/// error.
pub fn guard(body: impl FnOnce() -> Result<(), FfiError>) -> gw_result {
    boundary(|| body().map(|()| gw_result::GW_OK))
}

/// Like [`guard`], for the rare body that returns a non-OK code *without*
/// recording a message, as `gw_last_error_message` does for a too-small
/// buffer (recording would overwrite the message being read). `Err` and
/// panics are recorded as in `guard`.
pub fn boundary(body: impl FnOnce() -> Result<gw_result, FfiError>) -> gw_result {
    // AssertUnwindSafe: a panic never lets the caller observe a broken
    // invariant through *this* closure's captures, which are raw pointers and
    // plain values. State behind a handle may be left half-updated by a
    // panic; GW_ERR_PANIC's documentation tells the caller to only free the
    // handle after it.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(code)) => code,
        Ok(Err(err)) => {
            set_last_error(err.message());
            err.code()
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            gw_result::GW_ERR_PANIC
        }
    }
}

/// The boundary for entry points that cannot fail and so return a value
/// rather than a `gw_result` (e.g. `*_free`, which returns nothing): a panic
/// returns `on_panic` and is recorded as the last error.
pub fn guard_value<T>(on_panic: T, body: impl FnOnce() -> T) -> T {
    // AssertUnwindSafe: see `boundary`.
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            on_panic
        }
    }
}

/// The last-error message for a caught panic.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    let detail = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("internal error: groupwise panicked: {detail}; please report this as a bug")
}

/// Checks that the pointer argument `name` is not NULL.
pub fn non_null<T>(ptr: *const T, name: &str) -> Result<NonNull<T>, FfiError> {
    NonNull::new(ptr.cast_mut()).ok_or_else(|| FfiError::null(name))
}

/// Checks that the pointer argument `name` is aligned for `T`.
fn aligned<T>(ptr: *const T, name: &str) -> Result<(), FfiError> {
    if ptr.is_aligned() {
        Ok(())
    } else {
        Err(FfiError::invalid(
            name,
            format!(
                "pointer {ptr:p} is not aligned to {} bytes",
                std::mem::align_of::<T>()
            ),
        ))
    }
}

/// Checks that `len` elements of `T` fit in one Rust allocation.
fn fits<T>(len: usize, name: &str) -> Result<(), FfiError> {
    match len.checked_mul(std::mem::size_of::<T>()) {
        Some(bytes) if isize::try_from(bytes).is_ok() => Ok(()),
        _ => Err(FfiError::invalid(
            name,
            format!("length {len} is too large for a buffer"),
        )),
    }
}

/// Borrows the input buffer `(ptr, len)` as a slice. NULL with `len` 0 is
/// the empty slice; NULL with `len > 0` is `GW_ERR_NULL_ARGUMENT`.
///
/// # Safety
///
/// If `ptr` is not NULL it must point to `len` initialised values of `T`
/// that stay valid, and are not written to, for `'a`.
pub unsafe fn slice<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T], FfiError> {
    if len == 0 {
        return Ok(&[]);
    }
    let ptr = non_null(ptr, name)?;
    aligned(ptr.as_ptr(), name)?;
    fits::<T>(len, name)?;
    // SAFETY: non-NULL, aligned, and at most isize::MAX bytes (checked
    // above); the caller guarantees `len` initialised values live for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) })
}

/// Borrows the input string `(ptr, len)` (not NUL-terminated) as UTF-8.
/// NULL with `len` 0 is "".
///
/// # Safety
///
/// As for [`slice()`] with `T = c_char`.
pub unsafe fn utf8<'a>(ptr: *const c_char, len: usize, name: &str) -> Result<&'a str, FfiError> {
    // SAFETY: forwarded from the caller.
    let bytes = unsafe { slice(ptr.cast::<u8>(), len, name) }?;
    std::str::from_utf8(bytes).map_err(|e| invalid_utf8(name, e))
}

/// Borrows the NUL-terminated string argument `name` as UTF-8.
///
/// # Safety
///
/// If `ptr` is not NULL it must point to a NUL-terminated string that stays
/// valid, and is not written to, for `'a`.
pub unsafe fn c_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, FfiError> {
    let ptr = non_null(ptr, name)?;
    // SAFETY: non-NULL; the caller guarantees a NUL-terminated string that
    // lives for 'a.
    let c = unsafe { CStr::from_ptr(ptr.as_ptr()) };
    c.to_str().map_err(|e| invalid_utf8(name, e))
}

/// Borrows the NUL-terminated path argument `name`. Paths must be UTF-8, so
/// that messages can quote them and the ABI behaves alike on every platform.
///
/// # Safety
///
/// As for [`c_str`].
pub unsafe fn path<'a>(ptr: *const c_char, name: &str) -> Result<&'a Path, FfiError> {
    // SAFETY: forwarded from the caller.
    unsafe { c_str(ptr, name) }.map(Path::new)
}

fn invalid_utf8(name: &str, err: std::str::Utf8Error) -> FfiError {
    FfiError::new(
        gw_result::GW_ERR_INVALID_UTF8,
        format!(
            "argument `{name}` is not valid UTF-8 (first bad byte at offset {})",
            err.valid_up_to()
        ),
    )
}

/// A checked single-value out-parameter (`T *out`): not NULL, aligned.
/// Writing consumes it, so each output is written at most once.
#[derive(Debug)]
pub struct Out<'a, T> {
    ptr: NonNull<T>,
    _borrow: PhantomData<&'a mut T>,
}

impl<'a, T> Out<'a, T> {
    /// Checks the out-parameter `name`.
    ///
    /// # Safety
    ///
    /// If `ptr` is not NULL it must be valid for a write of one `T` (it may
    /// be uninitialised) for `'a`.
    pub unsafe fn new(ptr: *mut T, name: &str) -> Result<Out<'a, T>, FfiError> {
        let ptr = non_null(ptr, name)?;
        aligned(ptr.as_ptr(), name)?;
        Ok(Out {
            ptr,
            _borrow: PhantomData,
        })
    }

    /// Writes the output. Whatever the caller's memory held is overwritten,
    /// not dropped.
    pub fn write(self, value: T) {
        // SAFETY: `new` checked non-NULL and alignment; the caller of `new`
        // guaranteed the memory is writable for 'a.
        unsafe { self.ptr.as_ptr().write(value) }
    }
}

/// A checked caller buffer (`T *buf, size_t capacity`): NULL only with
/// capacity 0, aligned. Writing consumes it.
#[derive(Debug)]
pub struct OutSlice<'a, T> {
    ptr: *mut T,
    capacity: usize,
    name: &'static str,
    _borrow: PhantomData<&'a mut [T]>,
}

impl<'a, T> OutSlice<'a, T> {
    /// Checks the buffer `name` of `capacity` elements.
    ///
    /// # Safety
    ///
    /// If `ptr` is not NULL it must be valid for writes of `capacity` values
    /// of `T` (they may be uninitialised) for `'a`, and must not overlap any
    /// input of the same call.
    pub unsafe fn new(
        ptr: *mut T,
        capacity: usize,
        name: &'static str,
    ) -> Result<OutSlice<'a, T>, FfiError> {
        if capacity > 0 {
            non_null(ptr, name)?;
            aligned(ptr, name)?;
            fits::<T>(capacity, name)?;
        }
        Ok(OutSlice {
            ptr,
            capacity,
            name,
            _borrow: PhantomData,
        })
    }

    /// How many elements the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes the items to the start of the buffer and returns how many were
    /// written. More items than the capacity is `GW_ERR_BUFFER_TOO_SMALL` and
    /// writes nothing (entry points call [`report_size`] first, so this is a
    /// second line of defence).
    pub fn write_iter<I>(self, items: I) -> Result<usize, FfiError>
    where
        I: IntoIterator<Item = T>,
        I::IntoIter: ExactSizeIterator,
    {
        let items = items.into_iter();
        let n = items.len();
        if n > self.capacity {
            return Err(FfiError::buffer_too_small(self.name, n, self.capacity));
        }
        let mut written = 0;
        // `take` guards against an ExactSizeIterator that lies about its length.
        for item in items.take(n) {
            // SAFETY: written < n <= capacity, and `new` checked that the
            // buffer is non-NULL (capacity > 0 here), aligned and writable.
            unsafe { self.ptr.add(written).write(item) }
            written += 1;
        }
        Ok(written)
    }

    /// Copies the items to the start of the buffer; as [`OutSlice::write_iter`].
    pub fn write(self, items: &[T]) -> Result<usize, FfiError>
    where
        T: Copy,
    {
        if items.len() > self.capacity {
            return Err(FfiError::buffer_too_small(
                self.name,
                items.len(),
                self.capacity,
            ));
        }
        if !items.is_empty() {
            // SAFETY: items.len() <= capacity, the buffer is non-NULL,
            // aligned and writable (checked in `new`), and it does not
            // overlap `items` (the caller of `new` guaranteed no overlap with
            // inputs; Rust-owned data cannot overlap caller memory).
            unsafe {
                std::ptr::copy_nonoverlapping(items.as_ptr(), self.ptr, items.len());
            }
        }
        Ok(items.len())
    }
}

impl OutSlice<'_, u8> {
    /// Writes `s` and a terminating NUL; needs `s.len() + 1` bytes of
    /// capacity. Returns the bytes written, NUL included.
    pub fn write_c_str(self, s: &str) -> Result<usize, FfiError> {
        self.write_iter(s.bytes().chain(std::iter::once(0)).collect::<Vec<u8>>())
    }
}

/// The size-query step: writes `needed` to `out_len`, then fails with
/// `GW_ERR_BUFFER_TOO_SMALL` if `capacity` (of the buffer `name`, or of
/// every parallel buffer sharing that capacity) is smaller.
///
/// Calling with a NULL buffer and capacity 0 thus asks for the size. Both on
/// success and on `GW_ERR_BUFFER_TOO_SMALL`, `*out_len` holds the count
/// needed; no other output is written on failure.
pub fn report_size(
    out_len: Out<'_, usize>,
    needed: usize,
    capacity: usize,
    name: &'static str,
) -> Result<(), FfiError> {
    out_len.write(needed);
    if needed > capacity {
        Err(FfiError::buffer_too_small(name, needed, capacity))
    } else {
        Ok(())
    }
}

/// Writes `s` as a NUL-terminated string with the size-query pattern:
/// `*out_len` receives `s.len() + 1` (bytes, NUL included); a smaller buffer
/// is `GW_ERR_BUFFER_TOO_SMALL` and receives nothing.
pub fn write_string(
    s: &str,
    buf: OutSlice<'_, u8>,
    out_len: Out<'_, usize>,
) -> Result<(), FfiError> {
    report_size(out_len, s.len() + 1, buf.capacity(), buf.name)?;
    buf.write_c_str(s).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::last_error;
    use std::ptr::{null, null_mut};

    #[test]
    fn guard_maps_ok_errors_and_core_errors() {
        assert_eq!(guard(|| Ok(())), gw_result::GW_OK);

        let code = guard(|| Err(FfiError::null("engine")));
        assert_eq!(code, gw_result::GW_ERR_NULL_ARGUMENT);
        assert!(last_error().contains("`engine` is NULL"));

        let code = guard(|| Err(groupwise_core::Error::UnknownUser(42).into()));
        assert_eq!(code, gw_result::GW_ERR_UNKNOWN_USER);
        assert_eq!(last_error(), "user 42 is not in the index");
    }

    #[test]
    fn guard_success_leaves_the_last_error_alone() {
        set_last_error("earlier failure");
        assert_eq!(guard(|| Ok(())), gw_result::GW_OK);
        assert_eq!(last_error(), "earlier failure");
    }

    #[test]
    fn panics_become_gw_err_panic_with_their_message() {
        let code = guard(|| panic!("boom {}", 7));
        assert_eq!(code, gw_result::GW_ERR_PANIC);
        assert!(last_error().contains("boom 7"), "{}", last_error());

        let code = guard(|| std::panic::panic_any(12_u8));
        assert_eq!(code, gw_result::GW_ERR_PANIC);
        assert!(last_error().contains("(no message)"));

        set_last_error("");
        let value = guard_value(-1, || -> i32 { panic!("in free") });
        assert_eq!(value, -1);
        assert!(last_error().contains("in free"));
        assert_eq!(guard_value(-1, || 5), 5);
    }

    #[test]
    fn boundary_returns_codes_without_recording() {
        set_last_error("kept");
        let code = boundary(|| Ok(gw_result::GW_ERR_BUFFER_TOO_SMALL));
        assert_eq!(code, gw_result::GW_ERR_BUFFER_TOO_SMALL);
        assert_eq!(last_error(), "kept");
    }

    #[test]
    fn input_slices_accept_null_only_when_empty() {
        // SAFETY: NULL with length 0 is never dereferenced.
        let empty = unsafe { slice::<f32>(null(), 0, "v") }.expect("empty");
        assert!(empty.is_empty());

        // SAFETY: NULL with length 3 is rejected before any read.
        let err = unsafe { slice::<f32>(null(), 3, "v") }.expect_err("null");
        assert_eq!(err.code(), gw_result::GW_ERR_NULL_ARGUMENT);

        let data = [1.0_f32, 2.0, 3.0];
        // SAFETY: `data` holds 3 floats and outlives the borrow.
        let s = unsafe { slice(data.as_ptr(), 3, "v") }.expect("slice");
        assert_eq!(s, &data);

        let bytes = [0u8; 8];
        let misaligned = bytes.as_ptr().wrapping_add(1).cast::<u32>();
        // SAFETY: the misaligned pointer is rejected before any read.
        let err = unsafe { slice(misaligned, 1, "v") }.expect_err("misaligned");
        assert_eq!(err.code(), gw_result::GW_ERR_INVALID_ARGUMENT);

        // SAFETY: the oversized length is rejected before any read.
        let err = unsafe { slice(data.as_ptr(), usize::MAX / 2, "v") }.expect_err("huge");
        assert_eq!(err.code(), gw_result::GW_ERR_INVALID_ARGUMENT);
    }

    #[test]
    fn strings_must_be_utf8() {
        let ok = c"models/encoder.onnx";
        // SAFETY: a NUL-terminated literal with static lifetime.
        let p = unsafe { path(ok.as_ptr(), "path") }.expect("path");
        assert_eq!(p, Path::new("models/encoder.onnx"));

        let bad = [b'a', 0xFF, 0];
        // SAFETY: `bad` is NUL-terminated and outlives the call.
        let err = unsafe { c_str(bad.as_ptr().cast(), "name") }.expect_err("utf8");
        assert_eq!(err.code(), gw_result::GW_ERR_INVALID_UTF8);
        assert!(err.message().contains("offset 1"));

        // SAFETY: NULL is rejected before any read.
        let err = unsafe { c_str(null(), "name") }.expect_err("null");
        assert_eq!(err.code(), gw_result::GW_ERR_NULL_ARGUMENT);

        let text = b"{\"dim\": 8}";
        // SAFETY: `text` holds text.len() bytes.
        let s = unsafe { utf8(text.as_ptr().cast(), text.len(), "json") }.expect("utf8");
        assert_eq!(s, "{\"dim\": 8}");
        // SAFETY: NULL with length 0 is the empty string.
        assert_eq!(unsafe { utf8(null(), 0, "json") }.expect("empty"), "");
    }

    #[test]
    fn out_parameters_reject_null() {
        // SAFETY: NULL is rejected before any write.
        let err = unsafe { Out::<usize>::new(null_mut(), "out_len") }.expect_err("null");
        assert_eq!(err.code(), gw_result::GW_ERR_NULL_ARGUMENT);
        assert!(err.message().contains("`out_len`"));

        let mut v = 0_u64;
        // SAFETY: `v` is a live, aligned u64.
        unsafe { Out::new(&mut v, "out") }.expect("out").write(9);
        assert_eq!(v, 9);
    }

    /// Runs the size-query pattern the way an entry point does: validates,
    /// reports the size, then writes.
    fn query(items: &[u64], buf: *mut u64, capacity: usize, out_len: *mut usize) -> gw_result {
        guard(|| {
            // SAFETY: the tests pass NULL or buffers of `capacity` elements.
            let buf = unsafe { OutSlice::new(buf, capacity, "ids") }?;
            // SAFETY: the tests pass a live usize.
            let out_len = unsafe { Out::new(out_len, "out_len") }?;
            report_size(out_len, items.len(), buf.capacity(), "ids")?;
            buf.write(items).map(drop)
        })
    }

    #[test]
    fn size_query_then_write_and_nothing_written_when_too_small() {
        let items = [10_u64, 20, 30];
        let mut out_len = 0;
        assert_eq!(
            query(&items, null_mut(), 0, &mut out_len),
            gw_result::GW_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(out_len, 3);
        assert!(last_error().contains("holds 0 elements but 3 are needed"));

        let mut small = [7_u64; 2];
        out_len = 0;
        assert_eq!(
            query(&items, small.as_mut_ptr(), 2, &mut out_len),
            gw_result::GW_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(out_len, 3);
        assert_eq!(small, [7, 7], "nothing is written to a too-small buffer");

        let mut big = [7_u64; 4];
        assert_eq!(
            query(&items, big.as_mut_ptr(), 4, &mut out_len),
            gw_result::GW_OK
        );
        assert_eq!(out_len, 3);
        assert_eq!(big, [10, 20, 30, 7]);

        // A NULL buffer with a capacity is a NULL argument, and out_len is
        // not touched.
        out_len = 99;
        assert_eq!(
            query(&items, null_mut(), 4, &mut out_len),
            gw_result::GW_ERR_NULL_ARGUMENT
        );
        assert_eq!(out_len, 99);

        // Nothing to return: NULL/0 succeeds.
        assert_eq!(query(&[], null_mut(), 0, &mut out_len), gw_result::GW_OK);
        assert_eq!(out_len, 0);
    }

    #[test]
    fn write_iter_refuses_more_than_capacity() {
        let mut buf = [0_f32; 2];
        // SAFETY: `buf` holds 2 floats.
        let out = unsafe { OutSlice::new(buf.as_mut_ptr(), 2, "similarities") }.expect("buf");
        let err = out.write_iter([1.0, 2.0, 3.0]).expect_err("too many");
        assert_eq!(err.code(), gw_result::GW_ERR_BUFFER_TOO_SMALL);
        assert_eq!(buf, [0.0, 0.0]);
    }

    #[test]
    fn strings_are_written_with_their_nul_or_not_at_all() {
        let run = |buf: &mut [u8], out_len: &mut usize| {
            guard(|| {
                let ptr = if buf.is_empty() {
                    null_mut()
                } else {
                    buf.as_mut_ptr()
                };
                // SAFETY: `ptr` is NULL with capacity 0 or points to buf.len() bytes.
                let out = unsafe { OutSlice::new(ptr, buf.len(), "name") }?;
                // SAFETY: `out_len` is a live usize.
                let out_len = unsafe { Out::new(out_len, "out_len") }?;
                write_string("movielens", out, out_len)
            })
        };
        let mut out_len = 0;
        assert_eq!(
            run(&mut [], &mut out_len),
            gw_result::GW_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(out_len, 10);
        let mut small = [b'x'; 9];
        assert_eq!(
            run(&mut small, &mut out_len),
            gw_result::GW_ERR_BUFFER_TOO_SMALL
        );
        assert_eq!(small, [b'x'; 9]);
        let mut exact = [b'x'; 10];
        assert_eq!(run(&mut exact, &mut out_len), gw_result::GW_OK);
        assert_eq!(&exact, b"movielens\0");
    }
}
