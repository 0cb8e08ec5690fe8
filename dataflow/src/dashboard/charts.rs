//! The dashboard's charts, drawn on the server as SVG with plotters (nothing is fetched by the
//! browser, no JavaScript chart library).

use plotters::prelude::*;

const W: u32 = 560;
const H: u32 = 300;
const PALETTE: [RGBColor; 4] = [
    RGBColor(0x1f, 0x6f, 0xb5),
    RGBColor(0xe0, 0x7b, 0x24),
    RGBColor(0xc0, 0x39, 0x2b),
    RGBColor(0x2e, 0x9e, 0x5b),
];

/// A message instead of a chart.
fn empty(title: &str, why: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"80\"><text x=\"8\" \
         y=\"24\" font-family=\"sans-serif\" font-size=\"15\">{}</text><text x=\"8\" y=\"52\" \
         font-family=\"sans-serif\" font-size=\"13\" fill=\"#777\">{}</text></svg>",
        escape(title),
        escape(why)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A bar chart of `(label, value)`.
pub fn bars(title: &str, data: &[(String, f64)]) -> String {
    if data.is_empty() {
        return empty(title, "no data yet");
    }
    let mut out = String::new();
    let max = data.iter().map(|d| d.1).fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.12 } else { 1.0 };
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = data.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(if n > 6 { 70 } else { 30 })
            .y_label_area_size(60)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..top)?;
        let labels: Vec<String> = data.iter().map(|d| d.0.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(n)
            .x_label_style(("sans-serif", 11).into_font().transform(if n > 6 {
                FontTransform::Rotate90
            } else {
                FontTransform::None
            }))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|y| short(*y))
            .draw()?;
        chart.draw_series(data.iter().enumerate().map(|(i, d)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), d.1),
                ],
                PALETTE[0].filled(),
            );
            bar.set_margin(0, 0, 4, 4);
            bar
        }))?;
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => out,
        Err(e) => empty(title, &format!("chart failed: {e}")),
    }
}

/// A line chart: one point per x label for each named series.
pub fn lines(title: &str, xs: &[String], series: &[(&str, Vec<f64>)]) -> String {
    if xs.is_empty() {
        return empty(title, "no data yet");
    }
    let mut out = String::new();
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.12 } else { 1.0 };
    let drawn = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut out, (W, H)).into_drawing_area();
        root.fill(&WHITE)?;
        let n = xs.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0..n.max(2) - 1, 0.0..top)?;
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .x_labels(n.min(12))
            .x_label_formatter(&|i| xs.get(*i).cloned().unwrap_or_default())
            .y_label_formatter(&|y| short(*y))
            .draw()?;
        for (k, (name, ys)) in series.iter().enumerate() {
            let color = PALETTE[k % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    ys.iter().enumerate().map(|(i, y)| (i, *y)),
                    color.stroke_width(2),
                ))?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart.draw_series(
                ys.iter()
                    .enumerate()
                    .map(|(i, y)| Circle::new((i, *y), 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 11))
            .draw()?;
        root.present()?;
        Ok(())
    })();
    match drawn {
        Ok(()) => out,
        Err(e) => empty(title, &format!("chart failed: {e}")),
    }
}

/// 1234567 → "1.2M".
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_labels() {
        let svg = bars(
            "Offers",
            &[("concerts".into(), 12.0), ("travel".into(), 3.0)],
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("concerts") && svg.contains("travel") && svg.contains("Offers"));
        let svg = lines(
            "Cash back",
            &["2026-01".into(), "2026-02".into()],
            &[("paid", vec![1.0, 2.0]), ("earned", vec![2.0, 1.5])],
        );
        assert!(svg.contains("2026-02") && svg.contains("earned"), "{svg}");
        assert!(bars("x", &[]).contains("no data yet"));
        assert_eq!(short(1_234_567.0), "1.2M");
    }
}
