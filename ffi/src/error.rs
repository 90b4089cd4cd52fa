//! Result codes, the mapping from the core's errors to them, and the
//! per-thread last-error message.
//!
//! Every fallible entry point returns a [`gw_result`]. A code tells the caller
//! *what kind* of failure happened, which is what a program branches on; the
//! message (read with [`gw_last_error_message`]) tells a person the details
//! and what to do. Several core errors share one code where a C caller would
//! not react differently (e.g. a zero vector and an empty sequence are both
//! `GW_ERR_INVALID_ARGUMENT`); the message keeps the distinction.

use std::cell::RefCell;
use std::ffi::{c_char, CStr};

/// The result of every fallible groupwise function.
///
/// `GW_OK` (0) is success; every other value is a failure, and the calling
/// thread's last-error message (`gw_last_error_message`) then describes it.
/// Values are stable: a code is never renumbered or reused, and new codes are
/// only appended, so treat values you do not know as generic failures.
/// `gw_result_name` gives each code's name as a string.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum gw_result {
    /// Success.
    GW_OK = 0,
    /// A pointer argument that must not be NULL was NULL (or a buffer pointer
    /// was NULL while its length was not 0).
    GW_ERR_NULL_ARGUMENT = 1,
    /// An argument or a configuration setting is out of its documented
    /// range, or a value cannot be used (a zero vector, an empty sequence, two
    /// ids that hash alike, ...).
    GW_ERR_INVALID_ARGUMENT = 2,
    /// A string argument is not valid UTF-8.
    GW_ERR_INVALID_UTF8 = 3,
    /// A caller buffer is too small. The function wrote the size it needs to
    /// its `out_len` argument and nothing else; call again with a buffer of
    /// at least that size.
    GW_ERR_BUFFER_TOO_SMALL = 4,
    /// A vector or tensor has the wrong number of dimensions (or the wrong
    /// shape).
    GW_ERR_DIMENSION_MISMATCH = 5,
    /// A value is NaN or infinite.
    GW_ERR_NON_FINITE = 6,
    /// A user id is not in the index.
    GW_ERR_UNKNOWN_USER = 7,
    /// A segment id does not exist (never did, retired by a rebuild, or
    /// dissolved under the privacy floor).
    GW_ERR_UNKNOWN_SEGMENT = 8,
    /// Feedback names a decision that was never made, already has feedback,
    /// or was evicted.
    GW_ERR_UNKNOWN_DECISION = 9,
    /// No encoder has the given name.
    GW_ERR_UNKNOWN_ENCODER = 10,
    /// The operation needs data-driven segments and none are built yet.
    GW_ERR_NO_SEGMENTS = 11,
    /// A seed segment has fewer usable seeds than the configured minimum.
    GW_ERR_TOO_FEW_SEEDS = 12,
    /// No user is left to score or serve.
    GW_ERR_EMPTY_POPULATION = 13,
    /// Too few users to form one segment of the privacy-floor size.
    GW_ERR_BELOW_PRIVACY_FLOOR = 14,
    /// Reading or writing a file failed.
    GW_ERR_IO = 15,
    /// A snapshot is damaged or is not a groupwise snapshot; nothing was
    /// loaded.
    GW_ERR_CORRUPT_SNAPSHOT = 16,
    /// A snapshot was written by a format version this build cannot read.
    GW_ERR_SNAPSHOT_VERSION = 17,
    /// A data or configuration file has a malformed entry.
    GW_ERR_PARSE = 18,
    /// The ONNX Runtime shared library could not be found or loaded.
    GW_ERR_ONNX_UNAVAILABLE = 19,
    /// ONNX Runtime failed while loading or running a model.
    GW_ERR_ONNX = 20,
    /// A model does not follow the encoder contract (models/README.md).
    GW_ERR_MODEL_CONTRACT = 21,
    /// An error of the core library that this version of the C ABI has no
    /// specific code for; the message says what went wrong.
    GW_ERR_OTHER = 22,
    /// Internal error: groupwise panicked (a bug; please report it with the
    /// message). The panic was caught at the boundary, but a handle the call
    /// was using may be left in an unspecified state: only free it.
    GW_ERR_PANIC = 23,
}

/// Every code, in numeric order (`ALL_CODES[i] as u32 == i`). Not in the
/// header: C callers compare against the enum's constants.
const ALL_CODES: [gw_result; 24] = [
    gw_result::GW_OK,
    gw_result::GW_ERR_NULL_ARGUMENT,
    gw_result::GW_ERR_INVALID_ARGUMENT,
    gw_result::GW_ERR_INVALID_UTF8,
    gw_result::GW_ERR_BUFFER_TOO_SMALL,
    gw_result::GW_ERR_DIMENSION_MISMATCH,
    gw_result::GW_ERR_NON_FINITE,
    gw_result::GW_ERR_UNKNOWN_USER,
    gw_result::GW_ERR_UNKNOWN_SEGMENT,
    gw_result::GW_ERR_UNKNOWN_DECISION,
    gw_result::GW_ERR_UNKNOWN_ENCODER,
    gw_result::GW_ERR_NO_SEGMENTS,
    gw_result::GW_ERR_TOO_FEW_SEEDS,
    gw_result::GW_ERR_EMPTY_POPULATION,
    gw_result::GW_ERR_BELOW_PRIVACY_FLOOR,
    gw_result::GW_ERR_IO,
    gw_result::GW_ERR_CORRUPT_SNAPSHOT,
    gw_result::GW_ERR_SNAPSHOT_VERSION,
    gw_result::GW_ERR_PARSE,
    gw_result::GW_ERR_ONNX_UNAVAILABLE,
    gw_result::GW_ERR_ONNX,
    gw_result::GW_ERR_MODEL_CONTRACT,
    gw_result::GW_ERR_OTHER,
    gw_result::GW_ERR_PANIC,
];

impl gw_result {
    /// The code for a raw value received from C, if it is one.
    pub fn from_u32(value: u32) -> Option<gw_result> {
        usize::try_from(value)
            .ok()
            .and_then(|i| ALL_CODES.get(i))
            .copied()
    }

    /// The code's C name, e.g. `GW_ERR_IO`.
    pub const fn name(self) -> &'static CStr {
        match self {
            gw_result::GW_OK => c"GW_OK",
            gw_result::GW_ERR_NULL_ARGUMENT => c"GW_ERR_NULL_ARGUMENT",
            gw_result::GW_ERR_INVALID_ARGUMENT => c"GW_ERR_INVALID_ARGUMENT",
            gw_result::GW_ERR_INVALID_UTF8 => c"GW_ERR_INVALID_UTF8",
            gw_result::GW_ERR_BUFFER_TOO_SMALL => c"GW_ERR_BUFFER_TOO_SMALL",
            gw_result::GW_ERR_DIMENSION_MISMATCH => c"GW_ERR_DIMENSION_MISMATCH",
            gw_result::GW_ERR_NON_FINITE => c"GW_ERR_NON_FINITE",
            gw_result::GW_ERR_UNKNOWN_USER => c"GW_ERR_UNKNOWN_USER",
            gw_result::GW_ERR_UNKNOWN_SEGMENT => c"GW_ERR_UNKNOWN_SEGMENT",
            gw_result::GW_ERR_UNKNOWN_DECISION => c"GW_ERR_UNKNOWN_DECISION",
            gw_result::GW_ERR_UNKNOWN_ENCODER => c"GW_ERR_UNKNOWN_ENCODER",
            gw_result::GW_ERR_NO_SEGMENTS => c"GW_ERR_NO_SEGMENTS",
            gw_result::GW_ERR_TOO_FEW_SEEDS => c"GW_ERR_TOO_FEW_SEEDS",
            gw_result::GW_ERR_EMPTY_POPULATION => c"GW_ERR_EMPTY_POPULATION",
            gw_result::GW_ERR_BELOW_PRIVACY_FLOOR => c"GW_ERR_BELOW_PRIVACY_FLOOR",
            gw_result::GW_ERR_IO => c"GW_ERR_IO",
            gw_result::GW_ERR_CORRUPT_SNAPSHOT => c"GW_ERR_CORRUPT_SNAPSHOT",
            gw_result::GW_ERR_SNAPSHOT_VERSION => c"GW_ERR_SNAPSHOT_VERSION",
            gw_result::GW_ERR_PARSE => c"GW_ERR_PARSE",
            gw_result::GW_ERR_ONNX_UNAVAILABLE => c"GW_ERR_ONNX_UNAVAILABLE",
            gw_result::GW_ERR_ONNX => c"GW_ERR_ONNX",
            gw_result::GW_ERR_MODEL_CONTRACT => c"GW_ERR_MODEL_CONTRACT",
            gw_result::GW_ERR_OTHER => c"GW_ERR_OTHER",
            gw_result::GW_ERR_PANIC => c"GW_ERR_PANIC",
        }
    }
}

/// The code a core error is reported with.
///
/// `groupwise_core::Error` is `#[non_exhaustive]`: a variant added to the core
/// after this mapping was written is reported as `GW_ERR_OTHER` (with its full
/// message) until it gets a code here.
pub fn code_of(err: &groupwise_core::Error) -> gw_result {
    use groupwise_core::Error as E;
    match err {
        E::RuntimeUnavailable { .. } => gw_result::GW_ERR_ONNX_UNAVAILABLE,
        E::Onnx { .. } => gw_result::GW_ERR_ONNX,
        E::ModelContract { .. } => gw_result::GW_ERR_MODEL_CONTRACT,
        E::ShapeMismatch { .. } | E::DimensionMismatch { .. } => {
            gw_result::GW_ERR_DIMENSION_MISMATCH
        }
        E::NonFinite { .. } => gw_result::GW_ERR_NON_FINITE,
        E::ZeroVector { .. }
        | E::EmptySequence { .. }
        | E::InvalidArgument { .. }
        | E::InvalidConfig { .. }
        | E::IdCollision { .. } => gw_result::GW_ERR_INVALID_ARGUMENT,
        E::UnknownUser(_) => gw_result::GW_ERR_UNKNOWN_USER,
        E::TooFewSeeds { .. } => gw_result::GW_ERR_TOO_FEW_SEEDS,
        E::EmptyPopulation => gw_result::GW_ERR_EMPTY_POPULATION,
        E::UnknownSegment(_) => gw_result::GW_ERR_UNKNOWN_SEGMENT,
        E::BelowPrivacyFloor { .. } => gw_result::GW_ERR_BELOW_PRIVACY_FLOOR,
        E::UnknownDecision(_) => gw_result::GW_ERR_UNKNOWN_DECISION,
        E::Parse { .. } => gw_result::GW_ERR_PARSE,
        E::CorruptSnapshot { .. } => gw_result::GW_ERR_CORRUPT_SNAPSHOT,
        E::SnapshotVersion { .. } => gw_result::GW_ERR_SNAPSHOT_VERSION,
        E::UnknownEncoder(_) => gw_result::GW_ERR_UNKNOWN_ENCODER,
        E::NoSegments => gw_result::GW_ERR_NO_SEGMENTS,
        E::Io { .. } => gw_result::GW_ERR_IO,
        _ => gw_result::GW_ERR_OTHER,
    }
}

/// A failure on its way to the C caller: the code the entry point returns
/// and the message `gw_last_error_message` will report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FfiError {
    code: gw_result,
    message: String,
}

impl FfiError {
    /// A failure with `code` (which must not be `GW_OK`; that is reported as
    /// `GW_ERR_OTHER`, since a failure has to fail).
    pub fn new(code: gw_result, message: impl Into<String>) -> FfiError {
        let code = match code {
            gw_result::GW_OK => gw_result::GW_ERR_OTHER,
            code => code,
        };
        FfiError {
            code,
            message: message.into(),
        }
    }

    /// The argument `name` was NULL.
    pub fn null(name: &str) -> FfiError {
        FfiError::new(
            gw_result::GW_ERR_NULL_ARGUMENT,
            format!("argument `{name}` is NULL; pass a valid pointer"),
        )
    }

    /// The argument `name` is out of range or unusable.
    pub fn invalid(name: &str, problem: impl std::fmt::Display) -> FfiError {
        FfiError::new(
            gw_result::GW_ERR_INVALID_ARGUMENT,
            format!("invalid argument `{name}`: {problem}"),
        )
    }

    /// The buffer `name` holds `capacity` elements and `needed` are required.
    pub fn buffer_too_small(name: &str, needed: usize, capacity: usize) -> FfiError {
        FfiError::new(
            gw_result::GW_ERR_BUFFER_TOO_SMALL,
            format!(
                "buffer `{name}` holds {capacity} elements but {needed} are needed; \
                 call again with a buffer of the size written to out_len"
            ),
        )
    }

    /// The code the entry point returns.
    pub fn code(&self) -> gw_result {
        self.code
    }

    /// The message for `gw_last_error_message`.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<groupwise_core::Error> for FfiError {
    fn from(err: groupwise_core::Error) -> FfiError {
        FfiError::new(code_of(&err), err.to_string())
    }
}

thread_local! {
    /// The message of the calling thread's most recent failure, without the
    /// terminating NUL (it never contains NUL bytes).
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `message` as the calling thread's last error.
///
/// Never panics (it runs outside `catch_unwind`): interior NUL bytes, which a
/// C string cannot hold, become `\0`; during thread teardown, when the
/// thread-local is already gone, the message is dropped.
pub fn set_last_error(message: &str) {
    let message = message.replace('\0', "\\0");
    let _ = LAST_ERROR.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = message;
        }
    });
}

/// The calling thread's last-error message ("" when nothing has failed on
/// this thread yet, or during thread teardown). Never panics.
pub fn last_error() -> String {
    LAST_ERROR
        .try_with(|last| last.try_borrow().map(|m| m.clone()).unwrap_or_default())
        .unwrap_or_default()
}

/// The name of a result code, e.g. `"GW_ERR_IO"` for `GW_ERR_IO`, as a
/// NUL-terminated string with static lifetime (do not free it). A value that
/// is not a known code gives `"GW_ERR_UNKNOWN_CODE"`. Never fails; safe to
/// call from any thread.
#[no_mangle]
pub extern "C" fn gw_result_name(result: u32) -> *const c_char {
    // Taken as u32, not gw_result: C may pass any integer, and a Rust enum
    // holding a value outside its variants would be undefined behaviour.
    gw_result::from_u32(result)
        .map_or(c"GW_ERR_UNKNOWN_CODE", gw_result::name)
        .as_ptr()
}

/// Copies the calling thread's last-error message into `buf` as a
/// NUL-terminated UTF-8 string.
///
/// The message describes the most recent failed call made *on this thread*
/// (each thread has its own; successful calls leave it unchanged, so read it
/// only right after a function returned something other than `GW_OK`). It is
/// "" if nothing has failed on this thread yet.
///
/// `*out_len` is always set to the buffer size the whole message needs, in
/// bytes, including the terminating NUL (so at least 1).
///
/// * `len >= *out_len`: the whole message is written; returns `GW_OK`.
/// * `len < *out_len`: returns `GW_ERR_BUFFER_TOO_SMALL`. If `len > 0`, `buf`
///   still receives the message truncated to at most `len - 1` bytes (cut at
///   a UTF-8 character boundary) and a NUL, so a fixed-size buffer always
///   gets a readable string. `buf` may be NULL when `len` is 0, to ask only
///   for the size.
///
/// This function never replaces the last-error message when it returns
/// `GW_ERR_BUFFER_TOO_SMALL`, so the caller can retry with a larger buffer.
/// Misuse (`out_len` NULL, or `buf` NULL with `len > 0`) returns
/// `GW_ERR_NULL_ARGUMENT` and, like every failure, records its own message.
///
/// # Safety
///
/// `buf` must be NULL or valid for writes of `len` bytes; `out_len` must be
/// NULL or valid for a write of one `size_t`.
#[no_mangle]
pub unsafe extern "C" fn gw_last_error_message(
    buf: *mut c_char,
    len: usize,
    out_len: *mut usize,
) -> gw_result {
    crate::guard::boundary(|| {
        // SAFETY: the caller guarantees `out_len` is NULL or writable.
        let out_len = unsafe { crate::guard::Out::new(out_len, "out_len") }?;
        // SAFETY: the caller guarantees `buf` is NULL or writable for `len` bytes.
        let buf = unsafe { crate::guard::OutSlice::new(buf.cast::<u8>(), len, "buf") }?;
        let message = last_error();
        let needed = message.len() + 1;
        out_len.write(needed);
        if len >= needed {
            buf.write_c_str(&message)?;
            Ok(gw_result::GW_OK)
        } else {
            if len > 0 {
                buf.write_c_str(truncate_at_char_boundary(&message, len - 1))?;
            }
            Ok(gw_result::GW_ERR_BUFFER_TOO_SMALL)
        }
    })
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
fn truncate_at_char_boundary(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn codes_are_numbered_in_order_and_round_trip() {
        for (i, code) in ALL_CODES.iter().enumerate() {
            assert_eq!(*code as usize, i);
            assert_eq!(gw_result::from_u32(i as u32), Some(*code));
        }
        assert_eq!(gw_result::from_u32(ALL_CODES.len() as u32), None);
        assert_eq!(gw_result::from_u32(u32::MAX), None);
    }

    #[test]
    fn names_are_the_c_identifiers_and_unique() {
        let names: std::collections::HashSet<_> = ALL_CODES.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), ALL_CODES.len());
        assert_eq!(gw_result::GW_ERR_IO.name(), c"GW_ERR_IO");
        assert_eq!(format!("{:?}", gw_result::GW_OK), "GW_OK");
        for code in ALL_CODES {
            // Debug of a fieldless variant is its identifier, i.e. the C name.
            assert_eq!(code.name().to_str().expect("ascii"), format!("{code:?}"));
        }
        // SAFETY: gw_result_name returns static NUL-terminated strings.
        let unknown = unsafe { CStr::from_ptr(gw_result_name(999)) };
        assert_eq!(unknown, c"GW_ERR_UNKNOWN_CODE");
    }

    #[test]
    fn core_errors_map_to_their_codes_and_keep_the_message() {
        use groupwise_core::Error as E;
        let cases: Vec<(E, gw_result)> = vec![
            (
                E::RuntimeUnavailable { reason: "x".into() },
                gw_result::GW_ERR_ONNX_UNAVAILABLE,
            ),
            (
                E::Onnx {
                    context: "c".into(),
                    message: "m".into(),
                },
                gw_result::GW_ERR_ONNX,
            ),
            (
                E::ModelContract {
                    model: PathBuf::from("m.onnx"),
                    problem: "p".into(),
                },
                gw_result::GW_ERR_MODEL_CONTRACT,
            ),
            (
                E::ShapeMismatch {
                    input: "i".into(),
                    expected: "[1]".into(),
                    got: "[2]".into(),
                },
                gw_result::GW_ERR_DIMENSION_MISMATCH,
            ),
            (
                E::DimensionMismatch {
                    what: "query".into(),
                    expected: 64,
                    got: 3,
                },
                gw_result::GW_ERR_DIMENSION_MISMATCH,
            ),
            (
                E::NonFinite {
                    what: "v".into(),
                    position: 1,
                },
                gw_result::GW_ERR_NON_FINITE,
            ),
            (
                E::ZeroVector { what: "v".into() },
                gw_result::GW_ERR_INVALID_ARGUMENT,
            ),
            (
                E::EmptySequence { row: 0 },
                gw_result::GW_ERR_INVALID_ARGUMENT,
            ),
            (E::UnknownUser(7), gw_result::GW_ERR_UNKNOWN_USER),
            (
                E::TooFewSeeds {
                    usable: 1,
                    minimum: 5,
                    unknown: 0,
                },
                gw_result::GW_ERR_TOO_FEW_SEEDS,
            ),
            (E::EmptyPopulation, gw_result::GW_ERR_EMPTY_POPULATION),
            (E::UnknownSegment(3), gw_result::GW_ERR_UNKNOWN_SEGMENT),
            (
                E::BelowPrivacyFloor {
                    users: 3,
                    floor: 30,
                },
                gw_result::GW_ERR_BELOW_PRIVACY_FLOOR,
            ),
            (E::UnknownDecision(9), gw_result::GW_ERR_UNKNOWN_DECISION),
            (
                E::InvalidArgument {
                    name: "k",
                    problem: "must be positive".into(),
                },
                gw_result::GW_ERR_INVALID_ARGUMENT,
            ),
            (
                E::InvalidConfig {
                    key: "index.ef_search".into(),
                    problem: "must be in 1..=4096, got 4000000000".into(),
                },
                gw_result::GW_ERR_INVALID_ARGUMENT,
            ),
            (
                E::Parse {
                    path: "f.csv".into(),
                    line: 2,
                    problem: "p".into(),
                },
                gw_result::GW_ERR_PARSE,
            ),
            (
                E::IdCollision {
                    first: "a".into(),
                    second: "b".into(),
                    id: 1,
                },
                gw_result::GW_ERR_INVALID_ARGUMENT,
            ),
            (
                E::CorruptSnapshot {
                    path: "s".into(),
                    problem: "p".into(),
                },
                gw_result::GW_ERR_CORRUPT_SNAPSHOT,
            ),
            (
                E::SnapshotVersion {
                    path: "s".into(),
                    found: 9,
                    oldest: 1,
                    newest: 2,
                    advice: "upgrade",
                },
                gw_result::GW_ERR_SNAPSHOT_VERSION,
            ),
            (
                E::UnknownEncoder("e".into()),
                gw_result::GW_ERR_UNKNOWN_ENCODER,
            ),
            (E::NoSegments, gw_result::GW_ERR_NO_SEGMENTS),
            (
                E::Io {
                    path: "f".into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
                gw_result::GW_ERR_IO,
            ),
        ];
        for (err, code) in cases {
            let message = err.to_string();
            let ffi = FfiError::from(err);
            assert_eq!(ffi.code(), code, "{message}");
            assert_eq!(ffi.message(), message);
        }
    }

    #[test]
    fn a_failure_never_reports_ok() {
        assert_eq!(
            FfiError::new(gw_result::GW_OK, "x").code(),
            gw_result::GW_ERR_OTHER
        );
    }

    #[test]
    fn interior_nul_bytes_are_escaped() {
        set_last_error("a\0b");
        assert_eq!(last_error(), "a\\0b");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_at_char_boundary("héllo", 2), "h");
        assert_eq!(truncate_at_char_boundary("héllo", 3), "hé");
        assert_eq!(truncate_at_char_boundary("hi", 10), "hi");
        assert_eq!(truncate_at_char_boundary("hi", 0), "");
    }

    fn read_message(len: usize) -> (gw_result, usize, Vec<u8>) {
        let mut buf = vec![0xAAu8; len];
        let mut out_len = usize::MAX;
        let ptr = if len == 0 {
            std::ptr::null_mut()
        } else {
            buf.as_mut_ptr().cast()
        };
        // SAFETY: `ptr` is NULL with len 0 or points to `len` writable bytes.
        let code = unsafe { gw_last_error_message(ptr, len, &mut out_len) };
        (code, out_len, buf)
    }

    #[test]
    fn last_error_message_size_query_full_read_and_truncation() {
        set_last_error("dimension 3, expected 64");
        let needed = "dimension 3, expected 64".len() + 1;

        let (code, out_len, _) = read_message(0);
        assert_eq!(code, gw_result::GW_ERR_BUFFER_TOO_SMALL);
        assert_eq!(out_len, needed);

        let (code, out_len, buf) = read_message(needed);
        assert_eq!(code, gw_result::GW_OK);
        assert_eq!(out_len, needed);
        assert_eq!(&buf[..], b"dimension 3, expected 64\0");

        let (code, out_len, buf) = read_message(5);
        assert_eq!(code, gw_result::GW_ERR_BUFFER_TOO_SMALL);
        assert_eq!(out_len, needed);
        assert_eq!(&buf[..], b"dime\0");

        // BUFFER_TOO_SMALL did not replace the message being read.
        assert_eq!(last_error(), "dimension 3, expected 64");
    }

    #[test]
    fn last_error_message_misuse_is_a_null_argument() {
        let mut buf = [0 as c_char; 8];
        // SAFETY: buf is writable for 8 bytes; a NULL out_len is rejected.
        let code = unsafe { gw_last_error_message(buf.as_mut_ptr(), 8, std::ptr::null_mut()) };
        assert_eq!(code, gw_result::GW_ERR_NULL_ARGUMENT);
        assert!(last_error().contains("`out_len`"));

        let mut out_len = 0;
        // SAFETY: a NULL buf with a non-zero length is rejected before any write.
        let code = unsafe { gw_last_error_message(std::ptr::null_mut(), 8, &mut out_len) };
        assert_eq!(code, gw_result::GW_ERR_NULL_ARGUMENT);
        assert!(last_error().contains("`buf`"));
    }

    #[test]
    fn last_error_is_per_thread() {
        set_last_error("main thread");
        std::thread::spawn(|| {
            assert_eq!(last_error(), "");
            set_last_error("other thread");
        })
        .join()
        .expect("thread");
        assert_eq!(last_error(), "main thread");
    }
}
