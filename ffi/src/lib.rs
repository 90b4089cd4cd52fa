//! C ABI of groupwise.
//!
//! Today this crate only carries the build set-up (a `cdylib` and a
//! `staticlib` named `libgroupwise`) and the version entry point; the full
//! surface (engine, encoders, index, lookalike, segments, slates) arrives with
//! the C ABI work. Conventions that every entry point will follow: panics are
//! caught and never cross the boundary, handles are opaque, and NULL is checked.

use std::ffi::c_char;

/// The groupwise version as a NUL-terminated UTF-8 string with static lifetime
/// (the caller must not free it). Safe to call from any thread.
#[no_mangle]
pub extern "C" fn gw_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_is_a_c_string_matching_the_crate() {
        // SAFETY: gw_version returns a pointer to a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(super::gw_version()) };
        assert_eq!(v.to_str().expect("utf-8"), env!("CARGO_PKG_VERSION"));
    }
}
