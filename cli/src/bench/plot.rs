//! A plain, hand-written SVG: streaming throughput against message size
//! (log-log), and a bar chart of round-trip p50 latency (log scale).

use std::fmt::Write as _;

use super::report::{ns, size_label, Results};

const W: f64 = 1280.0;
const H: f64 = 560.0;
const COLORS: [&str; 12] = [
    "#000000", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#9a6324", "#808000", "#469990", "#800000",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Decades covering [lo, hi] (both > 0).
fn decades(lo: f64, hi: f64) -> (i32, i32) {
    let a = lo.log10().floor() as i32;
    let b = (hi.log10().ceil() as i32).max(a + 1);
    (a, b)
}

struct Panel {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Panel {
    fn frame(&self, s: &mut String, title: &str, ylabel: &str) {
        let _ = writeln!(
            s,
            r##"<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            self.x, self.y, self.w, self.h
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="15" text-anchor="middle">{}</text>"##,
            self.x + self.w / 2.0,
            self.y - 12.0,
            esc(title)
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>"##,
            self.x - 58.0,
            self.y + self.h / 2.0,
            self.x - 58.0,
            self.y + self.h / 2.0,
            esc(ylabel)
        );
    }

    /// Horizontal grid lines and labels for a log y axis.
    fn log_y(&self, s: &mut String, (a, b): (i32, i32), label: impl Fn(f64) -> String) {
        for d in a..=b {
            let y = self.y + self.h - (d - a) as f64 / (b - a) as f64 * self.h;
            let _ = writeln!(
                s,
                r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                self.x,
                self.x + self.w,
                self.x - 4.0,
                y + 4.0,
                esc(&label(10f64.powi(d)))
            );
        }
    }

    fn y_of(&self, v: f64, (a, b): (i32, i32)) -> f64 {
        let f = (v.log10() - a as f64) / (b - a) as f64;
        self.y + self.h - f.clamp(0.0, 1.0) * self.h
    }
}

pub fn svg(res: &Results) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    throughput(&mut s, res);
    latency(&mut s, res);
    s.push_str("</svg>\n");
    s
}

fn throughput(s: &mut String, res: &Results) {
    let p = Panel {
        x: 80.0,
        y: 50.0,
        w: 420.0,
        h: 420.0,
    };
    p.frame(s, "Streaming throughput vs message size", "MB/s (log)");
    let vals: Vec<f64> = res
        .transports
        .iter()
        .flat_map(|t| t.results.iter().filter_map(|c| c.mb_per_sec))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(0.0, f64::max);
    if vals.is_empty() {
        return;
    }
    let ya = decades(lo, hi);
    p.log_y(s, ya, |v| {
        if v >= 1.0 {
            format!("{v:.0}")
        } else {
            format!("{v}")
        }
    });
    let sizes = &res.sizes;
    let (xmin, xmax) = (
        (sizes[0] as f64).log2(),
        (sizes[sizes.len() - 1] as f64).log2(),
    );
    let span = (xmax - xmin).max(1.0);
    let x_of = |size: usize| p.x + ((size as f64).log2() - xmin) / span * p.w;
    for &size in sizes {
        let x = x_of(size);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"##,
            p.y,
            p.y + p.h,
            p.y + p.h + 16.0,
            esc(&size_label(size))
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" font-size="12" text-anchor="middle">message size (log)</text>"##,
        p.x + p.w / 2.0,
        p.y + p.h + 36.0
    );
    for (i, t) in res.transports.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = t
            .results
            .iter()
            .filter_map(|c| c.mb_per_sec.filter(|v| *v > 0.0).map(|v| (c.size, v)))
            .map(|(size, v)| format!("{:.1},{:.1}", x_of(size), p.y_of(v, ya)))
            .collect();
        if pts.len() > 1 {
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"##,
                pts.join(" ")
            );
        }
        for pt in &pts {
            let (x, y) = pt.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(s, r##"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"##);
        }
        let ly = p.y + 10.0 + i as f64 * 17.0;
        let lx = p.x + p.w + 14.0;
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}" font-size="12">{}</text>"##,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            esc(t.name)
        );
    }
}

fn latency(s: &mut String, res: &Results) {
    let size = res
        .sizes
        .iter()
        .copied()
        .find(|&n| n >= 64)
        .unwrap_or(res.sizes[0]);
    let p = Panel {
        x: 720.0,
        y: 50.0,
        w: 520.0,
        h: 380.0,
    };
    p.frame(
        s,
        &format!("Round-trip p50 latency, {} messages", size_label(size)),
        "ns (log)",
    );
    let rows: Vec<(&str, Option<u64>, Option<u64>)> = res
        .transports
        .iter()
        .filter_map(|t| {
            let c = t.results.iter().find(|c| c.size == size)?;
            Some((
                t.name,
                c.latency.spin.as_ref().map(|l| l.p50_ns),
                c.latency.blocking.as_ref().map(|l| l.p50_ns),
            ))
        })
        .collect();
    let vals: Vec<f64> = rows
        .iter()
        .flat_map(|r| [r.1, r.2])
        .flatten()
        .filter(|v| *v > 0)
        .map(|v| v as f64)
        .collect();
    if vals.is_empty() {
        return;
    }
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(0.0, f64::max);
    let ya = decades(lo, hi);
    p.log_y(s, ya, |v| ns(v as u64));
    let slot = p.w / rows.len() as f64;
    let bw = slot * 0.35;
    for (i, (name, spin, block)) in rows.iter().enumerate() {
        let x0 = p.x + i as f64 * slot + slot * 0.15;
        for (j, (v, color)) in [(spin, "#4363d8"), (block, "#f58231")]
            .into_iter()
            .enumerate()
        {
            if let Some(v) = v.filter(|v| *v > 0) {
                let y = p.y_of(v as f64, ya);
                let _ = writeln!(
                    s,
                    r##"<rect x="{:.1}" y="{y:.1}" width="{bw:.1}" height="{:.1}" fill="{color}"><title>{} {}: {}</title></rect>"##,
                    x0 + j as f64 * bw,
                    p.y + p.h - y,
                    esc(name),
                    if j == 0 { "spin" } else { "blocking" },
                    ns(v)
                );
            }
        }
        let tx = x0 + bw;
        let ty = p.y + p.h + 10.0;
        let _ = writeln!(
            s,
            r##"<text x="{tx:.1}" y="{ty:.1}" font-size="11" text-anchor="end" transform="rotate(-45 {tx:.1} {ty:.1})">{}</text>"##,
            esc(name)
        );
    }
    for (j, (label, color)) in [("spin (busy-poll)", "#4363d8"), ("blocking", "#f58231")]
        .into_iter()
        .enumerate()
    {
        let lx = p.x + 10.0 + j as f64 * 150.0;
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}" font-size="12">{label}</text>"##,
            p.y + 8.0,
            lx + 16.0,
            p.y + 18.0
        );
    }
}
