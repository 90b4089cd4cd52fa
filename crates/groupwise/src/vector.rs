//! Small dense-vector kernels shared by the index, lookalike and segments:
//! dot product, L2 normalisation and input validation.
//!
//! The dot product is written so that LLVM vectorises it (eight independent
//! accumulators), and on x86-64 a copy compiled for AVX2+FMA is picked at run
//! time when the CPU has it, so release builds need no `-C target-cpu` flag.

use crate::error::{Error, Result};

/// Dot product of two equally long slices (extra elements of the longer one are
/// ignored).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2_available() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above, cached).
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn avx2_available() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let mut sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        sum = x.mul_add(*y, sum);
    }
    sum
}

/// `out = A · Bᵀ` for row-major `a` (`m × dim`) and `b` (`n × dim`); `out`
/// (`m × n`, row-major) must hold at least `m · n` values. `matrixmultiply`'s
/// SIMD sgemm, several times faster than one dot product at a time.
pub(crate) fn gemm_abt(a: &[f32], m: usize, b: &[f32], n: usize, dim: usize, out: &mut [f32]) {
    assert!(
        a.len() >= m * dim && b.len() >= n * dim && out.len() >= m * n,
        "gemm_abt: buffers too small"
    );
    // SAFETY: `a` holds m x dim values (row stride dim), `b` holds n x dim
    // values read as its dim x n transpose (row stride 1, column stride dim),
    // and `out` has room for m x n values (row stride n), all checked above;
    // the slices outlive the call.
    unsafe {
        matrixmultiply::sgemm(
            m,
            dim,
            n,
            1.0,
            a.as_ptr(),
            dim as isize,
            1,
            b.as_ptr(),
            1,
            dim as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Euclidean norm.
#[inline]
pub fn norm(a: &[f32]) -> f32 {
    dot(a, a).sqrt()
}

/// Checks that every value is finite.
pub fn check_finite(what: &str, values: &[f32]) -> Result<()> {
    // Branch-free scan of blocks (vectorises), then locate the culprit only
    // when there is one: inputs of millions of features stay cheap to check.
    const EXP: u32 = 0x7f80_0000;
    let all_finite = |block: &[f32]| {
        block
            .iter()
            .fold(true, |ok, v| ok & (v.to_bits() & EXP != EXP))
    };
    for (b, block) in values.chunks(256).enumerate() {
        if !all_finite(block) {
            let position = b * 256 + block.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(Error::NonFinite {
                what: what.to_string(),
                position,
            });
        }
    }
    Ok(())
}

/// Checks dimension and finiteness and returns a unit-length copy.
pub fn normalized(what: &str, v: &[f32], dim: usize) -> Result<Vec<f32>> {
    if v.len() != dim {
        return Err(Error::DimensionMismatch {
            what: what.to_string(),
            expected: dim,
            got: v.len(),
        });
    }
    check_finite(what, v)?;
    // Accumulate in f64 so that tiny or huge inputs normalise accurately.
    let n = v
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if n == 0.0 || !n.is_finite() {
        return Err(Error::ZeroVector {
            what: what.to_string(),
        });
    }
    Ok(v.iter().map(|&x| (f64::from(x) / n) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum_for_all_lengths() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| f64::from(x * y)).sum();
            assert!((f64::from(dot(&a, &b)) - naive).abs() < 1e-5, "n={n}");
            assert!(
                (f64::from(dot_portable(&a, &b)) - naive).abs() < 1e-5,
                "n={n}"
            );
        }
    }

    #[test]
    fn check_finite_finds_the_first_bad_value() {
        let mut v = vec![1.0f32; 1000];
        assert!(check_finite("v", &v).is_ok());
        for (pos, bad) in [
            (999, f32::NAN),
            (300, f32::INFINITY),
            (0, f32::NEG_INFINITY),
        ] {
            v[pos] = bad;
            assert!(
                matches!(check_finite("v", &v), Err(Error::NonFinite { position, .. }) if position == pos)
            );
        }
        assert!(check_finite("v", &[f32::MAX, f32::MIN, f32::MIN_POSITIVE, -0.0]).is_ok());
    }

    #[test]
    fn normalized_checks_input() {
        let v = normalized("v", &[3.0, 4.0], 2).expect("valid");
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        assert!(matches!(
            normalized("v", &[1.0], 2),
            Err(Error::DimensionMismatch {
                expected: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            normalized("v", &[1.0, f32::NAN], 2),
            Err(Error::NonFinite { position: 1, .. })
        ));
        assert!(matches!(
            normalized("v", &[0.0, 0.0], 2),
            Err(Error::ZeroVector { .. })
        ));
        // Tiny values still normalise (f64 accumulation).
        let t = normalized("v", &[1e-30, 1e-30], 2).expect("tiny");
        assert!((norm(&t) - 1.0).abs() < 1e-6);
    }
}
