//! The distance hnsw_rs sees: cosine distance on unit vectors that cannot panic.
//!
//! hnsw_rs panics when a distance is NaN and asserts that distances are not
//! negative; its own `DistDot` can round to a tiny negative number for two
//! identical unit vectors and trip that assertion. Every vector stored in the
//! index is finite and unit-length (checked on insert), so `1 - dot` is finite;
//! clamping it to `[0, 2]` removes the rounding case.

use hnsw_rs::prelude::Distance;

use crate::vector::dot;

/// Cosine distance `1 - <a, b>` on unit vectors, clamped to `[0, 2]`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    #[inline]
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        (1.0 - dot(va, vb)).clamp(0.0, 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_vectors_are_at_distance_zero_never_below() {
        let d = CosineDistance;
        // A unit vector whose dot with itself rounds above 1.
        let v =
            crate::vector::normalized("v", &[0.1, 0.7, 0.3, 0.9, 0.2, 0.05, 0.6, 0.33, 0.41], 9)
                .expect("valid");
        assert_eq!(d.eval(&v, &v), 0.0f32.max(1.0 - dot(&v, &v)));
        assert!(d.eval(&v, &v) >= 0.0);
        let w: Vec<f32> = v.iter().map(|x| -x).collect();
        assert!((d.eval(&v, &w) - 2.0).abs() < 1e-6);
    }
}
