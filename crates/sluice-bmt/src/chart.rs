//! The benchmark chart: req/s and LB CPU per request against concurrency,
//! one line per series, drawn as SVG by hand and rasterised to PNG with
//! resvg (pure Rust; fonts from the system, e.g. Debian's fonts-dejavu-core).

use std::fmt::Write as _;
use std::path::Path;

use crate::BmtError;

/// Width of the whole chart, in pixels.
const WIDTH: f64 = 1100.0;
/// Height of the whole chart, in pixels.
const HEIGHT: f64 = 480.0;
/// Margin around each panel's plot area: left, right, top, bottom (pixels).
const MARGIN: (f64, f64, f64, f64) = (70.0, 20.0, 60.0, 90.0);
/// Horizontal grid lines per panel.
const Y_TICKS: usize = 5;

/// Line colours, one per series, repeating after the last.
const COLOURS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line: a label and a (concurrency, value) point per measured cell.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Legend text.
    pub(crate) label: String,
    /// Points of the left panel (req/s).
    pub(crate) rps: Vec<(u32, f64)>,
    /// Points of the right panel (LB CPU µs per request); cells without a
    /// CPU figure are left out.
    pub(crate) cpu: Vec<(u32, f64)>,
}

/// Renders the chart. The x axis is categorical: the concurrency levels,
/// evenly spaced in ascending order.
pub(crate) fn svg(title: &str, levels: &[u32], series: &[Series]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, sans-serif">"#
    );
    let _ = write!(
        s,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="{}" y="24" font-size="16" text-anchor="middle">{}</text>"##,
        WIDTH / 2.0,
        escape(title)
    );
    let panel_w = WIDTH / 2.0;
    panel(
        &mut s,
        0.0,
        panel_w,
        "Requests/sec (median)",
        levels,
        series,
        |x| &x.rps,
    );
    panel(
        &mut s,
        panel_w,
        panel_w,
        "LB CPU per request (µs, median)",
        levels,
        series,
        |x| &x.cpu,
    );
    // Legend under both panels.
    let mut lx = MARGIN.0;
    let ly = HEIGHT - 22.0;
    for (i, x) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let _ = write!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}" font-size="12">{}</text>"#,
            lx + 22.0,
            lx + 27.0,
            ly + 4.0,
            escape(&x.label)
        );
        lx += 40.0 + 7.5 * x.label.chars().count() as f64;
    }
    s.push_str("</svg>\n");
    s
}

fn panel(
    s: &mut String,
    x0: f64,
    w: f64,
    title: &str,
    levels: &[u32],
    series: &[Series],
    points: impl Fn(&Series) -> &Vec<(u32, f64)>,
) {
    let (ml, mr, mt, mb) = MARGIN;
    let (left, right, top, bottom) = (x0 + ml, x0 + w - mr, mt, HEIGHT - mb);
    let max = series
        .iter()
        .flat_map(|x| points(x).iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let ymax = nice_ceiling(max);
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="14" text-anchor="middle">{}</text>"#,
        (left + right) / 2.0,
        top - 12.0,
        escape(title)
    );
    let y_of = |v: f64| bottom - (v / ymax) * (bottom - top);
    for i in 0..=Y_TICKS {
        let v = ymax * i as f64 / Y_TICKS as f64;
        let y = y_of(v);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#dddddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
    let n = levels.len().max(1);
    let x_of = |c: u32| {
        let i = levels.iter().position(|&l| l == c).unwrap_or(0);
        if n == 1 {
            (left + right) / 2.0
        } else {
            left + (right - left) * i as f64 / (n - 1) as f64
        }
    };
    for &c in levels {
        let x = x_of(c);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{}" stroke="#333333"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{c}</text>"##,
            bottom + 5.0,
            bottom + 18.0
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333333"/><line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#333333"/><text x="{}" y="{}" font-size="12" text-anchor="middle">concurrency</text>"##,
        (left + right) / 2.0,
        bottom + 36.0
    );
    if series.iter().all(|x| points(x).is_empty()) {
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#777777">no data</text>"##,
            (left + right) / 2.0,
            (top + bottom) / 2.0
        );
    }
    for (i, x) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let mut pts: Vec<(f64, f64)> = points(x).iter().map(|&(k, v)| (x_of(k), y_of(v))).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        if pts.len() > 1 {
            let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = write!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2.5"/>"#,
                path.join(" ")
            );
        }
        for (a, b) in &pts {
            let _ = write!(s, r#"<circle cx="{a:.1}" cy="{b:.1}" r="4" fill="{c}"/>"#);
        }
    }
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (1 for `v <= 0`).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn fmt_tick(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Rasterises `svg` to a PNG file with the system's fonts.
pub(crate) fn write_png(svg: &str, path: &Path) -> Result<(), BmtError> {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &opt)?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| BmtError::Chart(format!("chart size {size:?} cannot be rasterised")))?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::default(),
        &mut pixmap.as_mut(),
    );
    pixmap
        .save_png(path)
        .map_err(|e| BmtError::Chart(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(12_345.0), 20_000.0);
        assert_eq!(nice_ceiling(200.0), 200.0);
        assert_eq!(nice_ceiling(0.3), 0.5);
    }

    #[test]
    fn chart_renders_lines_and_a_png() {
        let series = vec![
            Series {
                label: "haproxy t1".into(),
                rps: vec![(50, 6000.0), (200, 6500.0)],
                cpu: vec![(50, 80.0), (200, 75.0)],
            },
            Series {
                label: "dr <xdp>".into(),
                rps: vec![(50, 9000.0), (200, 9500.0)],
                cpu: vec![],
            },
        ];
        let svg = svg("t", &[50, 200], &series);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("dr &lt;xdp&gt;"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.png");
        write_png(&svg, &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 5_000, "a blank image would compress to less");
    }
}
