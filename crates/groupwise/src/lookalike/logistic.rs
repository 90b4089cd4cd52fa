//! Class-balanced, L2-regularised logistic regression fitted by Newton's
//! method (iteratively reweighted least squares).
//!
//! Embeddings are low-dimensional (tens to a few hundred), so each Newton step
//! solves a `(d+1) x (d+1)` system by Cholesky: a handful of exact steps,
//! deterministic, no learning rate to tune.

/// A fitted linear model: `score(x) = w . x + b` (the log-odds).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Logistic {
    pub w: Vec<f64>,
    pub b: f64,
}

impl Logistic {
    /// Fits on row-major `x` (`rows x dim`) with labels `y` (true = positive).
    /// Positives and negatives get equal total weight; `l2` penalises `w`
    /// (not the bias) in units of that total weight.
    pub fn fit(x: &[f32], y: &[bool], dim: usize, l2: f64, max_iter: usize) -> Logistic {
        let n = y.len();
        let pos = y.iter().filter(|&&v| v).count().max(1) as f64;
        let neg = (n as f64 - pos).max(1.0);
        let (cw_pos, cw_neg) = (n as f64 / (2.0 * pos), n as f64 / (2.0 * neg));
        let p = dim + 1;
        let mut beta = vec![0.0f64; p];
        let mut row = vec![0.0f64; p];
        for _ in 0..max_iter {
            let mut grad = vec![0.0f64; p];
            let mut hess = vec![0.0f64; p * p];
            for i in 0..n {
                for (r, v) in row.iter_mut().zip(&x[i * dim..(i + 1) * dim]) {
                    *r = f64::from(*v);
                }
                row[dim] = 1.0;
                let z: f64 = row.iter().zip(&beta).map(|(a, b)| a * b).sum();
                let prob = 1.0 / (1.0 + (-z).exp());
                let (target, cw) = if y[i] { (1.0, cw_pos) } else { (0.0, cw_neg) };
                let g = cw * (prob - target);
                let h = cw * (prob * (1.0 - prob)).max(1e-12);
                for a in 0..p {
                    grad[a] += g * row[a];
                    let ha = h * row[a];
                    for b in 0..=a {
                        hess[a * p + b] += ha * row[b];
                    }
                }
            }
            for a in 0..dim {
                grad[a] += l2 * beta[a];
                hess[a * p + a] += l2;
            }
            hess[dim * p + dim] += 1e-9; // keeps the bias row positive definite
            for a in 0..p {
                for b in 0..a {
                    hess[b * p + a] = hess[a * p + b];
                }
            }
            let Some(step) = cholesky_solve(&mut hess, &grad, p) else {
                break;
            };
            let mut change = 0.0f64;
            for (b, s) in beta.iter_mut().zip(&step) {
                *b -= s;
                change = change.max(s.abs());
            }
            if change < 1e-7 {
                break;
            }
        }
        let b = beta[dim];
        beta.truncate(dim);
        Logistic { w: beta, b }
    }

    /// The log-odds of a row.
    pub fn score(&self, x: &[f32]) -> f64 {
        self.w
            .iter()
            .zip(x)
            .map(|(w, v)| w * f64::from(*v))
            .sum::<f64>()
            + self.b
    }
}

/// Solves `A x = b` for symmetric positive definite `A` (`n x n`, overwritten
/// by its Cholesky factor). `None` when `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    let mut y = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            y[i] -= a[i * n + k] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= a[k * n + i] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4, 2], [2, 3]], b = [2, 1] -> x = [0.5, 0].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let x = cholesky_solve(&mut a, &[2.0, 1.0], 2).expect("positive definite");
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        let mut not_pd = vec![1.0, 2.0, 2.0, 1.0];
        assert!(cholesky_solve(&mut not_pd, &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn separates_two_classes_along_the_right_direction() {
        // Positives have x0 > 0, negatives x0 < 0; x1 is noise.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..200 {
            let noise = ((i * 37 % 17) as f32 - 8.0) / 8.0;
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            x.extend([sign * (0.5 + (i % 5) as f32 * 0.1), noise]);
            y.push(i % 2 == 0);
        }
        let m = Logistic::fit(&x, &y, 2, 1.0, 25);
        assert!(m.w[0] > 1.0 && m.w[0].abs() > 5.0 * m.w[1].abs(), "{m:?}");
        let correct = (0..200)
            .filter(|&i| (m.score(&x[i * 2..i * 2 + 2]) > 0.0) == y[i])
            .count();
        assert_eq!(correct, 200);
    }
}
