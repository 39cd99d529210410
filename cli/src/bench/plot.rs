//! The SVG charts of `shmpipe bench --plot`, drawn with `plotters` (SVG
//! backend): the headline figure (message rate relative to the pipe), the
//! streaming throughput against message size (log-log, with its legend in a
//! column of its own), and round-trip p50 latency in µs (log scale).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{size_label, Results};

const W: u32 = 1400;
const H: u32 = 900;
const FONT: &str = "sans-serif";
/// The series' colours, 0xRRGGBB, one per transport in report order.
const COLORS: [u32; 12] = [
    0x000000, 0xe6194b, 0x3cb44b, 0x4363d8, 0xf58231, 0x911eb4, 0x42d4f4, 0xf032e6, 0x9a6324,
    0x808000, 0x469990, 0x800000,
];

/// The colour of the `i`-th series.
fn color(i: usize) -> RGBColor {
    let [_, r, g, b] = COLORS[i % COLORS.len()].to_be_bytes();
    RGBColor(r, g, b)
}

const SPIN: RGBColor = RGBColor(0x43, 0x63, 0xd8);
const BLOCK: RGBColor = RGBColor(0xf5, 0x82, 0x31);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// The message size of the headline and latency charts: 64 B if measured,
/// else the smallest size of at least 64 B, else the smallest.
fn headline_size(res: &Results) -> usize {
    let sizes = &res.sizes;
    sizes
        .iter()
        .copied()
        .find(|&n| n == 64)
        .or_else(|| sizes.iter().copied().find(|&n| n >= 64))
        .unwrap_or(sizes.first().copied().unwrap_or(64))
}

/// Draw every chart of `res` as one SVG document; `records` is
/// `limit-records` in MB/s next to each size measured (drawn as the
/// throughput chart's dashed ceiling).
///
/// # Errors
/// A message if plotters fails to lay out a chart.
pub fn svg(res: &Results, records: &[(usize, f64)]) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| format!("plot: {e}"))?;
        let (top, bottom) = root.split_vertically(360);
        let (thr, lat) = bottom.split_horizontally(760);
        let (thr_chart, thr_legend) = thr.split_horizontally(560);
        headline(&top, res).map_err(|e| format!("plot (headline): {e}"))?;
        throughput(&thr_chart, &thr_legend, res, records)
            .map_err(|e| format!("plot (throughput): {e}"))?;
        latency(&lat, res).map_err(|e| format!("plot (latency): {e}"))?;
        root.present().map_err(|e| format!("plot: {e}"))?;
    }
    Ok(out)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A log axis over `vals`: from the smallest divided by `below` to the
/// largest times `above`, or `empty` when there is nothing to show.
fn log_range(vals: &[f64], empty: (f64, f64), below: f64, above: f64) -> (f64, f64) {
    if vals.is_empty() {
        return empty;
    }
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(0.0, f64::max);
    (lo / below, hi * above)
}

/// The upper end of a segmented axis of `n` slots (plotters' segmented
/// range `0..k` has `k + 1` slots).
fn last_index(n: usize) -> usize {
    n.saturating_sub(1).max(1)
}

/// Horizontal bars: each transport's message rate / the pipe's, at the
/// headline size, with the figure printed at the end of each bar.
fn headline(area: &Area, res: &Results) -> DrawResult {
    let size = headline_size(res);
    // (name, x pipe, x ringfire) at the headline size.
    let rows: Vec<(&str, Option<f64>, Option<f64>)> = res
        .transports
        .iter()
        .map(|t| {
            let c = t.results.iter().find(|c| c.size == size);
            (
                t.name,
                c.and_then(|c| c.ratio_to_pipe),
                c.and_then(|c| c.ratio_to_ringfire),
            )
        })
        .collect();
    let n = rows.len().max(1);
    let max = rows.iter().filter_map(|r| r.1).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Message rate relative to a pipe, {} messages (x pipe, and x ringfire in brackets; higher is faster)",
                size_label(size)
            ),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(170)
        .build_cartesian_2d(0f64..max * 1.4, (0..last_index(n)).into_segmented())?;
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).map_or(String::new(), |s| s.to_string()),
            _ => String::new(),
        })
        .x_desc("message rate / the pipe's")
        .x_label_formatter(&|v| {
            if max >= 10.0 {
                format!("{v:.0}x")
            } else {
                format!("{v:.1}x")
            }
        })
        .draw()?;
    for (i, (name, r, rf)) in rows.iter().enumerate() {
        let color = color(i);
        let y0 = SegmentValue::Exact(i);
        let y1 = SegmentValue::Exact(i + 1);
        match r {
            Some(r) => {
                let mut bar = Rectangle::new([(0.0, y0), (*r, y1)], color.mix(0.8).filled());
                bar.set_margin(3, 3, 0, 0);
                chart.draw_series(std::iter::once(bar))?;
                let label = match rf {
                    Some(rf) => format!("{r:.2}x  ({rf:.2}x ringfire)"),
                    None => format!("{r:.2}x"),
                };
                chart.draw_series(std::iter::once(Text::new(
                    label,
                    (*r + max * 0.01, SegmentValue::CenterOf(i)),
                    (FONT, 13),
                )))?;
            }
            None => {
                chart.draw_series(std::iter::once(Text::new(
                    format!("{name}: not measured"),
                    (max * 0.01, SegmentValue::CenterOf(i)),
                    (FONT, 13),
                )))?;
            }
        }
    }
    Ok(())
}

/// MB/s against message size, log-log, one line per transport and a dashed
/// one for `limit-records` (`records`: size, MB/s); the legend is drawn in
/// `legend`, beside the chart, so no label covers a line.
fn throughput(area: &Area, legend: &Area, res: &Results, records: &[(usize, f64)]) -> DrawResult {
    let vals: Vec<f64> = res
        .transports
        .iter()
        .flat_map(|t| t.results.iter().filter_map(|c| c.mb_per_sec))
        .chain(records.iter().map(|r| r.1))
        .filter(|v| *v > 0.0)
        .collect();
    let (lo, hi) = log_range(&vals, (1.0, 10.0), 1.5, 1.5);
    let log2 = |n: usize| (n.max(1) as f64).log2();
    let xmin = res.sizes.first().map_or(3.0, |&s| log2(s));
    let xmax = res.sizes.last().map_or(16.0, |&s| log2(s)).max(xmin + 1.0);
    let mut chart = ChartBuilder::on(area)
        .caption("Streaming throughput vs message size", (FONT, 18))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(xmin - 0.3..xmax + 0.3, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("message size (log scale)")
        .y_desc("MB/s (log scale)")
        .x_label_formatter(&|v| {
            // Key points are whole powers of two: label them as sizes.
            if (v - v.round()).abs() < 1e-6 && *v >= 0.0 {
                size_label(1usize << (v.round() as u32).min(40))
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()?;
    for (i, t) in res.transports.iter().enumerate() {
        let color = color(i);
        let pts: Vec<(f64, f64)> = t
            .results
            .iter()
            .filter_map(|c| c.mb_per_sec.filter(|v| *v > 0.0).map(|v| (log2(c.size), v)))
            .collect();
        chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        let y = 60 + i as i32 * 20;
        legend.draw(&PathElement::new(
            vec![(4, y), (26, y)],
            color.stroke_width(3),
        ))?;
        legend.draw(&Text::new(t.name, (32, y - 7), (FONT, 13)))?;
    }
    let pts: Vec<(f64, f64)> = records
        .iter()
        .filter(|r| r.1 > 0.0)
        .map(|&(size, v)| (log2(size), v))
        .collect();
    if !pts.is_empty() {
        chart.draw_series(DashedLineSeries::new(pts, 6, 4, BLACK.stroke_width(2)))?;
        let y = 60 + res.transports.len() as i32 * 20;
        let dash = |x: i32| PathElement::new(vec![(x, y), (x + 8, y)], BLACK.stroke_width(3));
        legend.draw(&dash(4))?;
        legend.draw(&dash(18))?;
        legend.draw(&Text::new(
            "limit-records (ceiling)",
            (32, y - 7),
            (FONT, 13),
        ))?;
    }
    Ok(())
}

/// Round-trip p50 latency at the headline size: a busy-poll and a
/// blocking bar per transport, in µs on a log scale.
fn latency(area: &Area, res: &Results) -> DrawResult {
    let size = headline_size(res);
    let us = |ns: u64| ns as f64 / 1000.0;
    let rows: Vec<(&str, Option<f64>, Option<f64>)> = res
        .transports
        .iter()
        .filter_map(|t| {
            let c = t.results.iter().find(|c| c.size == size)?;
            let pick = |l: &Option<super::report::LatencyFigures>| {
                l.as_ref().map(|l| us(l.p50_ns)).filter(|v| *v > 0.0)
            };
            Some((t.name, pick(&c.latency.spin), pick(&c.latency.blocking)))
        })
        .collect();
    let vals: Vec<f64> = rows.iter().flat_map(|r| [r.1, r.2]).flatten().collect();
    // Headroom above the tallest bar keeps the legend clear of the bars.
    let (lo, hi) = log_range(&vals, (0.1, 10.0), 2.0, 12.0);
    let n = rows.len().max(1);
    let names: Vec<&str> = rows.iter().map(|r| r.0).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Round-trip p50 latency, {} messages", size_label(size)),
            (FONT, 18),
        )
        .margin(12)
        .x_label_area_size(130)
        .y_label_area_size(60)
        // Three slots per transport: busy-poll bar, blocking bar, gap.
        .build_cartesian_2d(
            (0..last_index(3 * n)).into_segmented(),
            (lo..hi).log_scale(),
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(3 * n)
        .x_label_formatter(&|_| String::new()) // names are drawn below, downwards
        .y_desc("round trip p50, µs (log scale)")
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else if *v >= 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()?;
    let bar = |slot: usize, v: f64, color: RGBColor| {
        let mut r = Rectangle::new(
            [
                (SegmentValue::Exact(slot), lo),
                (SegmentValue::Exact(slot + 1), v),
            ],
            color.filled(),
        );
        r.set_margin(0, 0, 1, 1);
        r
    };
    let spin: Vec<_> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.1.map(|v| bar(3 * i, v, SPIN)))
        .collect();
    let block: Vec<_> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.2.map(|v| bar(3 * i + 1, v, BLOCK)))
        .collect();
    chart
        .draw_series(spin)?
        .label("busy-poll receiver")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], SPIN.filled()));
    chart
        .draw_series(block)?
        .label("blocking receiver")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], BLOCK.filled()));
    // Transport names under their bars, reading downwards from the axis
    // (plotters centres rotated tick labels on the axis, cutting them).
    let base = area.get_base_pixel();
    let font = (FONT, 12).into_font().transform(FontTransform::Rotate90);
    for (i, name) in names.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(SegmentValue::Exact(3 * i + 1), lo));
        area.draw(&Text::new(
            name.to_string(),
            (x - base.0 + 6, y - base.1 + 8),
            font.clone(),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()?;
    Ok(())
}
