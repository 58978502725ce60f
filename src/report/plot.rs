//! The report's plots, drawn with plotters into SVG strings that the page
//! inlines. Text is left to the browser (SVG `<text>`), so no font files
//! are needed.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// A task's colour in every plot (GQA blue, NLVR2 red, others after).
pub fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(140, 86, 75),
    ];
    C[i % C.len()]
}

/// A point with its spread: x, mean, standard deviation.
pub type Point = (f64, f64, f64);

/// One line of a line plot.
pub struct Line {
    /// Legend text.
    pub name: String,
    /// Colour.
    pub colour: RGBColor,
    /// Drawn faint (a baseline).
    pub faint: bool,
    /// Points, sorted by x.
    pub points: Vec<Point>,
}

/// One series of a grouped bar chart: a value (mean, sd) per category.
pub struct Bars {
    /// Legend text.
    pub name: String,
    /// Colour.
    pub colour: RGBColor,
    /// Per category (none: no value).
    pub values: Vec<Option<(f64, f64)>>,
}

fn range(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = (hi - lo).abs().max(1e-9);
    let p = if span < 1e-6 {
        pad.max(1.0)
    } else {
        span * 0.1
    };
    (lo - p, hi + p)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, at: SeriesLabelPosition) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)
}

/// Lines with error bars (mean ± sd at each x).
pub fn lines(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Line],
    size: (u32, u32),
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let pts = series.iter().flat_map(|s| s.points.iter());
        let (xl, xh) = pts
            .clone()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
                (a.0.min(p.0), a.1.max(p.0))
            });
        let (yl, yh) = pts.fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| {
            (a.0.min(p.1 - p.2), a.1.max(p.1 + p.2))
        });
        let (x0, x1) = range(xl, xh, xl.abs() * 0.5);
        let (y0, y1) = range(yl, yh, 2.0);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        for s in series {
            let c = if s.faint {
                s.colour.mix(0.45)
            } else {
                s.colour.to_rgba()
            };
            let width = if s.faint { 1 } else { 2 };
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().map(|p| (p.0, p.1)),
                    c.stroke_width(width),
                ))
                .map_err(err)?
                .label(&s.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|p| Circle::new((p.0, p.1), 3, c.filled())),
                )
                .map_err(err)?;
            chart
                .draw_series(
                    s.points
                        .iter()
                        .filter(|p| p.2 > 0.0)
                        .map(|p| ErrorBar::new_vertical(p.0, p.1 - p.2, p.1, p.1 + p.2, c, 8)),
                )
                .map_err(err)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// Grouped bars with sd whiskers, one group per category.
pub fn grouped_bars(
    title: &str,
    categories: &[String],
    y_desc: &str,
    series: &[Bars],
    size: (u32, u32),
) -> Result<String, String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let vals = series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .collect::<Vec<_>>();
        let lo = vals.iter().map(|v| v.0 - v.1).fold(0.0f64, f64::min);
        let hi = vals.iter().map(|v| v.0 + v.1).fold(0.0f64, f64::max);
        let (y0, y1) = range(lo, hi, 1.0);
        let (y0, y1) = (if lo >= 0.0 { 0.0 } else { y0 }, y1);
        let n = categories.len().max(1);
        let labels: Vec<String> = categories.to_vec();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n + 1)
            .x_label_formatter(&|x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        let k = series.len().max(1) as f64;
        let w = 0.8 / k;
        for (j, s) in series.iter().enumerate() {
            let c = s.colour;
            let left = |i: usize| i as f64 - 0.4 + j as f64 * w;
            chart
                .draw_series(s.values.iter().enumerate().filter_map(|(i, v)| {
                    v.map(|(m, _)| {
                        Rectangle::new([(left(i) + 0.01, 0.0), (left(i) + w - 0.01, m)], c.filled())
                    })
                }))
                .map_err(err)?
                .label(&s.name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
            chart
                .draw_series(s.values.iter().enumerate().filter_map(|(i, v)| {
                    v.filter(|v| v.1 > 0.0).map(|(m, sd)| {
                        ErrorBar::new_vertical(left(i) + w / 2.0, m - sd, m, m + sd, BLACK, 6)
                    })
                }))
                .map_err(err)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

/// A node of the lineage graph.
pub struct Node {
    /// Label, e.g. `vqa@3`.
    pub label: String,
    /// Colour index (by module).
    pub group: usize,
    /// Column (generation).
    pub layer: usize,
}

/// An edge of the lineage graph: from, to, and whether it is a teacher's
/// supervision (drawn dashed) rather than a parent.
pub type Edge = (usize, usize, bool);

const NODE_W: i32 = 180;
const NODE_H: i32 = 22;

/// The lineage graph, generations left to right.
pub fn lineage(nodes: &[Node], edges: &[Edge]) -> Result<String, String> {
    let layers = nodes.iter().map(|n| n.layer).max().map_or(1, |m| m + 1);
    let mut rows = vec![0usize; layers];
    let mut pos = Vec::with_capacity(nodes.len());
    for n in nodes {
        pos.push((n.layer, rows[n.layer]));
        rows[n.layer] += 1;
    }
    let tallest = rows.iter().copied().max().unwrap_or(1).max(1);
    let (col, row) = (260i32, 30i32);
    let w = (layers as i32 * col + 40).max(400) as u32;
    let h = (tallest as i32 * row + 70) as u32;
    let at = |i: usize| -> (i32, i32) {
        let (l, r) = pos[i];
        (30 + l as i32 * col, 50 + r as i32 * row)
    };
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        draw_lineage(&root, nodes, edges, &at)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}

fn draw_lineage(
    root: &DrawingArea<SVGBackend, Shift>,
    nodes: &[Node],
    edges: &[Edge],
    at: &dyn Fn(usize) -> (i32, i32),
) -> Result<(), String> {
    root.draw(&Text::new(
        "solid: parent -> child; dashed: teacher -> student",
        (30, 16),
        ("sans-serif", 13).into_font().color(&BLACK.mix(0.7)),
    ))
    .map_err(err)?;
    let grey = BLACK.mix(0.45);
    for &(a, b, teacher) in edges {
        let (x0, y0) = at(a);
        let (x1, y1) = at(b);
        let (x0, y0, x1, y1) = (x0 + NODE_W, y0 + NODE_H / 2, x1, y1 + NODE_H / 2);
        if teacher {
            let steps = (((x1 - x0).pow(2) + (y1 - y0).pow(2)) as f64).sqrt() / 8.0;
            let n = steps.max(1.0) as i32;
            for k in (0..n).step_by(2) {
                let p = |t: i32| (x0 + (x1 - x0) * t / n, y0 + (y1 - y0) * t / n);
                root.draw(&PathElement::new(vec![p(k), p(k + 1)], grey))
                    .map_err(err)?;
            }
        } else {
            root.draw(&PathElement::new(
                vec![(x0, y0), (x1, y1)],
                grey.stroke_width(2),
            ))
            .map_err(err)?;
        }
        root.draw(&Circle::new((x1, y1), 3, grey.filled()))
            .map_err(err)?;
    }
    for (i, n) in nodes.iter().enumerate() {
        let (x, y) = at(i);
        let c = colour(n.group);
        root.draw(&Rectangle::new(
            [(x, y), (x + NODE_W, y + NODE_H)],
            c.mix(0.18).filled(),
        ))
        .map_err(err)?;
        root.draw(&Rectangle::new(
            [(x, y), (x + NODE_W, y + NODE_H)],
            c.stroke_width(1),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            n.label.clone(),
            (x + 6, y + 5),
            ("sans-serif", 13).into_font().color(&BLACK),
        ))
        .map_err(err)?;
    }
    Ok(())
}
