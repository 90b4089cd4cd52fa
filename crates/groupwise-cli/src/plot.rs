//! Pictures a person can open in a browser: plain SVG, written directly (a
//! scatter of users coloured by segment, line charts over rounds). Small
//! enough that a plotting crate with font rendering would cost more than it
//! saves.

use std::fmt::Write as _;

/// Colour-blind-friendly palette (Okabe–Ito, then Tableau 10 for more groups).
const PALETTE: [&str; 18] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
    "#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1", "#FF9DA7",
    "#9C755F", "#BAB0AC",
];

/// Colour of group `i`.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The two leading principal axes of the rows of `points` (`n × dim`),
/// weighted by `weights`, by power iteration with deflation. Deterministic.
pub fn principal_axes(points: &[f32], dim: usize, weights: &[f64]) -> [Vec<f64>; 2] {
    let n = points.len() / dim.max(1);
    let total: f64 = weights.iter().take(n).sum::<f64>().max(f64::MIN_POSITIVE);
    let mut mean = vec![0.0f64; dim];
    for (row, &w) in points.chunks_exact(dim).zip(weights) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += w * f64::from(x) / total;
        }
    }
    let mut cov = vec![0.0f64; dim * dim];
    for (row, &w) in points.chunks_exact(dim).zip(weights) {
        let c: Vec<f64> = row
            .iter()
            .zip(&mean)
            .map(|(&x, m)| f64::from(x) - m)
            .collect();
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] += w * c[i] * c[j] / total;
            }
        }
    }
    let mut axes: [Vec<f64>; 2] = [vec![0.0; dim], vec![0.0; dim]];
    for (a, axis) in axes.iter_mut().enumerate() {
        // A fixed, non-degenerate start vector.
        let mut v: Vec<f64> = (0..dim)
            .map(|i| 1.0 + (i as f64 * 0.618 + a as f64).sin())
            .collect();
        for _ in 0..500 {
            let mut next: Vec<f64> = (0..dim)
                .map(|i| (0..dim).map(|j| cov[i * dim + j] * v[j]).sum())
                .collect();
            let norm = next.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm <= 0.0 {
                break;
            }
            next.iter_mut().for_each(|x| *x /= norm);
            v = next;
        }
        // Deflate: remove this axis before finding the next.
        let lambda: f64 = (0..dim)
            .map(|i| v[i] * (0..dim).map(|j| cov[i * dim + j] * v[j]).sum::<f64>())
            .sum();
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] -= lambda * v[i] * v[j];
            }
        }
        *axis = v;
    }
    axes
}

/// A scatter plot: `xy` points, `group` of each (index into `legend`).
pub fn scatter_svg(title: &str, xy: &[(f64, f64)], group: &[usize], legend: &[String]) -> String {
    let (w, h, margin, legend_w) = (900.0, 640.0, 40.0, 300.0);
    let (min_x, max_x) = bounds(xy.iter().map(|p| p.0));
    let (min_y, max_y) = bounds(xy.iter().map(|p| p.1));
    let sx = |x: f64| margin + (x - min_x) / (max_x - min_x) * (w - legend_w - 2.0 * margin);
    let sy = |y: f64| h - margin - (y - min_y) / (max_y - min_y) * (h - 2.0 * margin - 20.0);
    let mut svg = header(w, h, title);
    for (&(x, y), &g) in xy.iter().zip(group) {
        let _ = writeln!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.6" fill="{}" fill-opacity="0.7"/>"#,
            sx(x),
            sy(y),
            colour(g)
        );
    }
    legend_block(&mut svg, w - legend_w + 10.0, legend);
    svg.push_str("</svg>\n");
    svg
}

/// One line of a chart: a name, a y value per x, and an optional band
/// (low, high) per x.
pub struct Series {
    /// Legend name.
    pub name: String,
    /// y per x.
    pub y: Vec<f64>,
    /// Shaded band per x.
    pub band: Option<Vec<(f64, f64)>>,
}

/// A line chart of `series` over the shared `x`.
pub fn lines_svg(
    title: &str,
    x_label: &str,
    y_label: &str,
    x: &[f64],
    series: &[Series],
) -> String {
    let (w, h, margin, legend_w) = (900.0, 560.0, 60.0, 260.0);
    let (min_x, max_x) = bounds(x.iter().copied());
    let all_y = series.iter().flat_map(|s| {
        s.y.iter()
            .copied()
            .chain(s.band.iter().flatten().flat_map(|&(a, b)| [a, b]))
    });
    let (min_y, max_y) = bounds(all_y.chain([0.0]));
    let sx = |v: f64| margin + (v - min_x) / (max_x - min_x) * (w - legend_w - 2.0 * margin);
    let sy = |v: f64| h - margin - (v - min_y) / (max_y - min_y) * (h - 2.0 * margin - 20.0);
    let mut svg = header(w, h, title);
    // Axes with end labels.
    let _ = writeln!(
        svg,
        r##"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#444"/><line x1="{0}" y1="{1}" x2="{0}" y2="{3}" stroke="#444"/>"##,
        margin,
        h - margin,
        w - legend_w - margin,
        margin + 20.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.0}" y="{:.0}" font-size="12">{}</text><text x="{:.0}" y="{:.0}" font-size="12">{}</text>"#,
        (w - legend_w) / 2.0,
        h - 15.0,
        escape(x_label),
        margin + 6.0,
        margin + 12.0,
        escape(y_label)
    );
    for (v, anchor_y) in [(min_y, h - margin), (max_y, margin + 20.0)] {
        let _ = writeln!(
            svg,
            r#"<text x="{:.0}" y="{:.0}" font-size="11" text-anchor="end">{}</text>"#,
            margin - 5.0,
            anchor_y + 4.0,
            short(v)
        );
    }
    for (v, anchor_x) in [(min_x, margin), (max_x, w - legend_w - margin)] {
        let _ = writeln!(
            svg,
            r#"<text x="{:.0}" y="{:.0}" font-size="11" text-anchor="middle">{}</text>"#,
            anchor_x,
            h - margin + 15.0,
            short(v)
        );
    }
    for (i, Series { y: ys, band, .. }) in series.iter().enumerate() {
        if let Some(band) = band {
            let upper = x
                .iter()
                .zip(band)
                .map(|(&a, &(_, hi))| format!("{:.1},{:.1}", sx(a), sy(hi)));
            let lower = x
                .iter()
                .zip(band)
                .rev()
                .map(|(&a, &(lo, _))| format!("{:.1},{:.1}", sx(a), sy(lo)));
            let pts: Vec<String> = upper.chain(lower).collect();
            let _ = writeln!(
                svg,
                r#"<polygon points="{}" fill="{}" fill-opacity="0.15" stroke="none"/>"#,
                pts.join(" "),
                colour(i)
            );
        }
        let pts: Vec<String> = x
            .iter()
            .zip(ys)
            .map(|(&a, &b)| format!("{:.1},{:.1}", sx(a), sy(b)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            pts.join(" "),
            colour(i)
        );
    }
    let names: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
    legend_block(&mut svg, w - legend_w + 10.0, &names);
    svg.push_str("</svg>\n");
    svg
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

fn header(w: f64, h: f64, title: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="24" font-size="15" font-weight="bold">{}</text>
"##,
        escape(title)
    )
}

fn legend_block(svg: &mut String, x: f64, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        let y = 50.0 + i as f64 * 18.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.0}" y="{:.0}" width="11" height="11" fill="{}"/><text x="{:.0}" y="{:.0}" font-size="11">{}</text>"#,
            y - 9.0,
            colour(i),
            x + 16.0,
            y,
            escape(name)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_axes_find_the_spread_direction() {
        // Points along (1, 1, 0) with a little spread along (0, 0, 1).
        let mut pts = Vec::new();
        for i in -10..=10 {
            let t = i as f32;
            pts.extend([t, t, 0.1 * (i % 3) as f32]);
        }
        let w = vec![1.0; 21];
        let [a, b] = principal_axes(&pts, 3, &w);
        let s = std::f64::consts::FRAC_1_SQRT_2;
        assert!(
            (a[0].abs() - s).abs() < 0.01 && (a[1].abs() - s).abs() < 0.01,
            "{a:?}"
        );
        assert!(b[2].abs() > 0.99, "{b:?}");
    }

    #[test]
    fn svg_is_well_formed_and_escapes_text() {
        let svg = scatter_svg(
            "a < b",
            &[(0.0, 0.0), (1.0, 2.0)],
            &[0, 1],
            &["x & y".into(), "z".into()],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt; b") && svg.contains("x &amp; y"));
        assert_eq!(svg.matches("<circle").count(), 2);
    }
}
