//! A small figure model (panels of series on linear or log axes) and its one renderer, to SVG
//! text or a PNG image. Every chart of `plot/charts.rs` is built as a `Figure`, so axes, ticks,
//! fonts, legends and colours look the same on all of them.
//!
//! Log axes are drawn with our own ticks: decades (10⁴, 10⁵, …) with light 2–9 minor lines when
//! the data span more than a decade, "nice" 1-2-5 values otherwise (a loss between 2.5 and 4 on a
//! log axis still gets labelled ticks; plotters' own log scale would give none).

use std::ops::Range;

use plotters::chart::SeriesAnno;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, KeyPointWeight, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;

/// The bundled font (DejaVu Sans, Bitstream Vera licence: assets/fonts/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font checked in with the source; a failure here is a bug.
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            panic!("the bundled font assets/fonts/DejaVuSans.ttf does not parse");
        }
    });
}

#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub title: String,
    pub panels: Vec<Panel>,
    /// Pixel size of one panel; the figure is `panels` side by side (at most 3 per row).
    pub panel_size: (u32, u32),
    /// One y range for every panel, so panels side by side compare at a glance.
    pub share_y: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub legend: LegendPosition,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegendPosition {
    UpperRight,
    UpperLeft,
    LowerLeft,
    LowerRight,
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub label: String,
    pub log: bool,
}

impl Axis {
    pub fn log(label: &str) -> Self {
        Self { label: label.to_string(), log: true }
    }
    pub fn linear(label: &str) -> Self {
        Self { label: label.to_string(), log: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Line {
        width: u32,
    },
    Dashed {
        width: u32,
    },
    Markers {
        size: u32,
    },
    LineMarkers {
        width: u32,
        size: u32,
    },
    /// A large filled marker with a black edge (an optimum).
    Highlight {
        size: u32,
    },
    /// A filled area between `points` (x, upper) and `lower` (x, lower).
    Band,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: Option<String>,
    pub color: RGBColor,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
    /// The lower edge of a band (same x as `points`).
    pub lower: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(label: Option<String>, color: RGBColor, style: Style, points: Vec<(f64, f64)>) -> Self {
        Self { label, color, style, points, lower: Vec::new() }
    }
    pub fn band(label: Option<String>, color: RGBColor, x: &[f64], lower: &[f64], upper: &[f64]) -> Self {
        let points = x.iter().zip(upper).map(|(&x, &u)| (x, u)).collect();
        let lower = x.iter().zip(lower).map(|(&x, &l)| (x, l)).collect();
        Self { label, color, style: Style::Band, points, lower }
    }
}

/// Errors of drawing (plotters' backend errors, made into text).
#[derive(Debug, thiserror::Error)]
#[error("drawing `{figure}` failed: {message}")]
pub struct DrawError {
    figure: String,
    message: String,
}

impl Figure {
    fn grid(&self) -> (usize, usize) {
        let cols = if self.panels.len() == 4 { 2 } else { self.panels.len().clamp(1, 3) };
        (self.panels.len().div_ceil(cols).max(1), cols)
    }

    /// Pixel size of the whole figure.
    pub fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        (self.panel_size.0 * cols as u32, self.panel_size.1 * rows as u32 + TITLE_HEIGHT)
    }

    /// The figure as an SVG document.
    pub fn to_svg(&self) -> Result<String, DrawError> {
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, self.size()).into_drawing_area();
            self.draw(&root).map_err(|e| self.error(e))?;
            root.present().map_err(|e| self.error(e))?;
        }
        Ok(svg)
    }

    /// The figure as a PNG image (RGB, 8 bits).
    pub fn to_png(&self) -> Result<Vec<u8>, DrawError> {
        register_font();
        let (w, h) = self.size();
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
            self.draw(&root).map_err(|e| self.error(e))?;
            root.present().map_err(|e| self.error(e))?;
        }
        let mut png_bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut png_bytes, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| self.error(e))?;
        writer.write_image_data(&rgb).map_err(|e| self.error(e))?;
        writer.finish().map_err(|e| self.error(e))?;
        Ok(png_bytes)
    }

    fn error(&self, e: impl std::fmt::Display) -> DrawError {
        DrawError { figure: self.title.clone(), message: e.to_string() }
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(TITLE_HEIGHT);
        // Shrink a long title to the figure's width (DejaVu Sans: about 0.55 em per character).
        let width = self.size().0 as f64;
        let size = (width / (0.56 * self.title.chars().count().max(1) as f64)).clamp(12.0, 22.0);
        title.titled(&self.title, (FAMILY, size).into_font().color(&BLACK))?;
        let (rows, cols) = self.grid();
        let shared_y = self.share_y.then(|| {
            let ys = self.panels.iter().flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().chain(&s.lower).map(|p| p.1)));
            AxisRange::fit(ys, self.panels.first().is_some_and(|p| p.y.log))
        });
        for (area, panel) in body.split_evenly((rows, cols)).iter().zip(&self.panels) {
            draw_panel(area, panel, shared_y.clone())?;
        }
        Ok(())
    }
}

const TITLE_HEIGHT: u32 = 34;

/// A panel's chart: its drawing area with the panel's two axes.
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<AxisRange, AxisRange>>;

/// What drawing on a backend `DB` can fail with.
type DrawResult<T, DB> = Result<T, DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// One panel: its axes (over its own values, or the figure's shared y range), its series, and
/// its legend when a series has a label.
fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel, shared_y: Option<AxisRange>) -> DrawResult<(), DB> {
    let values = |coordinate: fn(&(f64, f64)) -> f64| panel.series.iter().flat_map(move |s| s.points.iter().chain(&s.lower).map(coordinate));
    let x = AxisRange::fit(values(|p| p.0), panel.x.log);
    let y = shared_y.unwrap_or_else(|| AxisRange::fit(values(|p| p.1), panel.y.log));
    let mut chart = draw_axes(area, panel, &x, &y)?;
    let mut labelled = false;
    for series in &panel.series {
        labelled |= draw_series(&mut chart, series, &x, &y)?;
    }
    if labelled {
        draw_legend(&mut chart, panel.legend)?;
    }
    Ok(())
}

/// The panel's title, axes, tick labels and grid lines.
fn draw_axes<'a, DB: DrawingBackend>(area: &'a DrawingArea<DB, Shift>, panel: &Panel, x: &AxisRange, y: &AxisRange) -> DrawResult<Chart<'a, DB>, DB> {
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FAMILY, 17))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x.clone(), y.clone())?;
    let (fx, fy) = (x.clone(), y.clone());
    let x_format = move |v: &f64| fx.format(*v);
    let y_format = move |v: &f64| fy.format(*v);
    chart
        .configure_mesh()
        .x_desc(panel.x.label.as_str())
        .y_desc(panel.y.label.as_str())
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 14))
        .bold_line_style(RGBColor(205, 205, 205))
        .light_line_style(RGBColor(238, 238, 238))
        .axis_style(RGBColor(90, 90, 90))
        .draw()?;
    Ok(chart)
}

/// One series in its style, its points that the axes can show, with its legend entry when it has
/// a label. Whether it has one (a series with no point to show draws nothing and has none).
fn draw_series<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, series: &Series, x: &AxisRange, y: &AxisRange) -> DrawResult<bool, DB> {
    let shown = |points: &[(f64, f64)]| -> Vec<(f64, f64)> { points.iter().copied().filter(|&p| x.shows(p.0) && y.shows(p.1)).collect() };
    let points = shown(&series.points);
    if points.is_empty() {
        return Ok(false);
    }
    let color = series.color;
    let anno = match series.style {
        Style::Line { width } => chart.draw_series(LineSeries::new(points, color.stroke_width(width)))?,
        Style::Dashed { width } => chart.draw_series(DashedLineSeries::new(points, 7, 5, color.stroke_width(width)))?,
        Style::Markers { size } => chart.draw_series(points.iter().map(|&p| Circle::new(p, size, color.filled())))?,
        Style::LineMarkers { width, size } => {
            chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, size, color.filled())))?
        }
        Style::Highlight { size } => {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, size, color.filled())))?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, size, BLACK.stroke_width(2))))?
        }
        Style::Band => {
            let outline: Vec<(f64, f64)> = points.iter().copied().chain(shown(&series.lower).into_iter().rev()).collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, color.mix(0.22).filled())))?
        }
    };
    if let Some(label) = &series.label {
        legend_entry(anno, label, series.style, color);
    }
    Ok(series.label.is_some())
}

/// The series' entry in the legend: its label, and a sample of its style at the entry's position
/// (a short line, a dashed one, a marker, a line through a marker, an edged marker, or a patch of
/// the band).
fn legend_entry<'a, DB: DrawingBackend + 'a>(anno: &mut SeriesAnno<'a, DB>, label: &str, style: Style, color: RGBColor) {
    let line = move |from: i32, to: i32, width: u32| PathElement::new(vec![(from, 0), (to, 0)], color.stroke_width(width));
    let marker = move |size: u32| Circle::new((11, 0), size, color.filled());
    let anno = anno.label(label);
    match style {
        Style::Line { width } => anno.legend(move |at| EmptyElement::at(at) + line(0, 22, width)),
        Style::Dashed { width } => anno.legend(move |at| EmptyElement::at(at) + line(0, 8, width) + line(13, 22, width)),
        Style::Markers { size } => anno.legend(move |at| EmptyElement::at(at) + marker(size)),
        Style::LineMarkers { width, size } => anno.legend(move |at| EmptyElement::at(at) + line(0, 22, width) + marker(size)),
        Style::Highlight { size } => anno.legend(move |at| EmptyElement::at(at) + marker(size) + Circle::new((11, 0), size, BLACK.stroke_width(2))),
        Style::Band => anno.legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 22, y + 5)], color.mix(0.22).filled())),
    };
}

/// The legend box of the labelled series, where the panel puts it (nowhere for `None`).
fn draw_legend<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, legend: LegendPosition) -> DrawResult<(), DB> {
    let position = match legend {
        LegendPosition::UpperRight => SeriesLabelPosition::UpperRight,
        LegendPosition::UpperLeft => SeriesLabelPosition::UpperLeft,
        LegendPosition::LowerLeft => SeriesLabelPosition::LowerLeft,
        LegendPosition::LowerRight => SeriesLabelPosition::LowerRight,
        LegendPosition::None => return Ok(()),
    };
    chart
        .configure_series_labels()
        .position(position)
        .margin(8)
        .legend_area_size(28)
        .label_font((FAMILY, 12))
        .background_style(WHITE.mix(0.88))
        .border_style(RGBColor(170, 170, 170))
        .draw()
}

/// One axis: its range, linear or log, and its tick values.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisRange {
    lo: f64,
    hi: f64,
    log: bool,
    major: Vec<f64>,
    minor: Vec<f64>,
}

impl AxisRange {
    /// The range that shows every finite value (positive ones on a log axis), padded by 4%.
    pub fn fit(values: impl Iterator<Item = f64>, log: bool) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            let t = if log { v.log10() } else { v };
            lo = lo.min(t);
            hi = hi.max(t);
        }
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-9 {
            let pad = if log { 0.1 } else { lo.abs().max(1.0) * 0.1 };
            (lo, hi) = (lo - pad, hi + pad);
        }
        let pad = (hi - lo) * 0.04;
        let (lo, hi) = (lo - pad, hi + pad);
        let (major, minor) = if log { log_ticks(lo, hi) } else { (nice_ticks(lo, hi, 6), Vec::new()) };
        Self { lo, hi, log, major, minor }
    }

    fn transform(&self, v: f64) -> f64 {
        if self.log {
            v.log10()
        } else {
            v
        }
    }

    /// Whether a value can be placed on this axis (finite, and positive on a log axis).
    pub fn shows(&self, v: f64) -> bool {
        v.is_finite() && (!self.log || v > 0.0)
    }

    /// Tick label: plain numbers in [10⁻³, 10⁴), powers of ten outside.
    pub fn format(&self, v: f64) -> String {
        format_tick(v)
    }

    pub fn major_ticks(&self) -> &[f64] {
        &self.major
    }
}

impl Ranged for AxisRange {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = (self.transform(*value) - self.lo) / (self.hi - self.lo);
        let px = limit.0 as f64 + t * (limit.1 - limit.0) as f64;
        px.clamp(-1e6, 1e6).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        match hint.weight() {
            KeyPointWeight::Bold => self.major.clone(),
            KeyPointWeight::Any => self.major.iter().chain(&self.minor).copied().collect(),
        }
    }

    fn range(&self) -> Range<f64> {
        if self.log {
            10f64.powf(self.lo)..10f64.powf(self.hi)
        } else {
            self.lo..self.hi
        }
    }
}

/// Ticks of a log axis spanning log10 values [lo, hi]: (labelled, light).
fn log_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<f64>) {
    let in_range = |v: f64| v.log10() >= lo - 1e-9 && v.log10() <= hi + 1e-9;
    let decades: Vec<i32> = ((lo.floor() as i32)..=(hi.ceil() as i32)).collect();
    let at = |mults: &[f64]| -> Vec<f64> { decades.iter().flat_map(|&k| mults.iter().map(move |m| m * 10f64.powi(k))).filter(|&v| in_range(v)).collect() };
    let mut major = at(&[1.0]);
    let mut minor = at(&[2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if major.len() > 8 {
        // Many decades: label every second or third one.
        let step = major.len().div_ceil(7);
        let first = major[0].log10().round() as i64;
        minor.extend(major.iter().filter(|v| (v.log10().round() as i64 - first) % step as i64 != 0));
        major.retain(|v| (v.log10().round() as i64 - first) % step as i64 == 0);
        minor.retain(|v| (v.log10().fract().abs() < 1e-9) || major.len() < 3);
    } else if major.len() < 3 {
        major = at(&[1.0, 2.0, 5.0]);
        if major.len() < 3 {
            // Under a decade: "nice" values of the data itself (still placed logarithmically).
            major = nice_ticks(10f64.powf(lo), 10f64.powf(hi), 5);
        }
        minor.retain(|v| !major.iter().any(|m| (m - v).abs() < 1e-9 * v.abs()));
    }
    (major, minor)
}

/// About `target` round values (1, 2, 2.5 or 5 × 10^k apart) inside [lo, hi]; at least 3 when
/// the range allows.
fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let raw = (hi - lo) / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&s| s >= raw).unwrap_or(10.0 * magnitude);
    // Round to the step's decimals so 3 × 0.2 prints as 0.6.
    let scale = 10f64.powi((2 - step.log10().floor() as i32).max(0));
    let ticks: Vec<f64> = ((lo / step).ceil() as i64..=(hi / step).floor() as i64).map(|i| (i as f64 * step * scale).round() / scale).collect();
    if ticks.len() < 3 && target < 40 {
        return nice_ticks(lo, hi, target * 2);
    }
    ticks
}

const SUPERSCRIPT: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];

fn superscript(k: i32) -> String {
    let digits: String = k.unsigned_abs().to_string().chars().map(|c| SUPERSCRIPT[c.to_digit(10).unwrap_or(0) as usize]).collect();
    if k < 0 {
        format!("⁻{digits}")
    } else {
        digits
    }
}

fn format_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (1e-3..1e4).contains(&a) {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        return s.to_string();
    }
    let k = a.log10().floor() as i32;
    let mantissa = v / 10f64.powi(k);
    if (mantissa.abs() - 1.0).abs() < 1e-6 {
        format!("{}10{}", if v < 0.0 { "−" } else { "" }, superscript(k))
    } else {
        let m = format!("{mantissa:.2}");
        format!("{}×10{}", m.trim_end_matches('0').trim_end_matches('.'), superscript(k))
    }
}

/// Colour for position t ∈ [0, 1] on the viridis map (small models dark blue, large yellow).
pub fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 6] = [(68, 1, 84), (65, 68, 135), (42, 120, 142), (34, 168, 132), (122, 209, 81), (223, 207, 37)];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 } * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Colour of the i-th of `count` ordered things (e.g. model sizes), on viridis.
pub fn ordered_color(i: usize, count: usize) -> RGBColor {
    viridis(if count <= 1 { 0.35 } else { i as f64 / (count - 1) as f64 * 0.92 })
}

/// Categorical colours (Tableau 10), for things without an order.
pub fn category_color(i: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TAB10[i % TAB10.len()];
    RGBColor(r, g, b)
}

pub const GREY: RGBColor = RGBColor(110, 110, 110);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_over_decades_ticks_at_powers_of_ten() {
        let a = AxisRange::fit([1e4, 3e6].into_iter(), true);
        assert_eq!(a.major_ticks(), &[1e4, 1e5, 1e6]);
        assert_eq!(a.format(1e5), "10⁵");
        assert_eq!(a.format(2e18), "2×10¹⁸");
        assert_eq!(a.format(0.003), "0.003");
    }

    #[test]
    fn narrow_log_axis_still_gets_labelled_ticks() {
        let a = AxisRange::fit([2.6, 3.9].into_iter(), true);
        assert!(a.major_ticks().len() >= 3, "{:?}", a.major_ticks());
        assert!(a.major_ticks().iter().all(|&v| (2.4..4.2).contains(&v)));
    }

    #[test]
    fn linear_ticks_are_round() {
        assert_eq!(nice_ticks(0.0, 1.0, 5), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(-0.013, 0.021, 6), vec![-0.01, 0.0, 0.01, 0.02]);
        assert_eq!(nice_ticks(-0.013, 0.021, 12), vec![-0.01, -0.005, 0.0, 0.005, 0.01, 0.015, 0.02]);
    }

    #[test]
    fn a_figure_renders_to_svg_and_png() {
        let fig = Figure {
            title: "test".into(),
            panels: vec![Panel {
                title: "p".into(),
                x: Axis::log("tokens"),
                y: Axis::linear("loss"),
                series: vec![
                    Series::new(Some("a".into()), category_color(0), Style::LineMarkers { width: 2, size: 3 }, vec![(1e3, 3.0), (1e4, 2.5)]),
                    Series::new(None, GREY, Style::Dashed { width: 1 }, vec![(1e3, 2.0), (1e4, 2.0)]),
                    Series::band(Some("band".into()), GREY, &[1e3, 1e4], &[1.9, 2.0], &[2.2, 2.1]),
                ],
                legend: LegendPosition::UpperRight,
            }],
            panel_size: (400, 300),
            share_y: false,
        };
        let svg = fig.to_svg().unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("tokens"));
        let png = fig.to_png().unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
