//! `--plot FILE.svg`: per-token latency over the generation for each framework (mean over
//! iterations at each position), and decode throughput bars with 95% confidence whiskers.

use bench_core::metrics::comparison::Comparison;
use plotters::prelude::*;

const COLORS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];

/// Mean latency (ms) of each generated position across iterations.
fn label(r: &bench_core::run::bench::BenchmarkResult) -> String {
    if r.level() == "none" {
        r.framework.clone()
    } else {
        format!("{} {}", r.framework, r.level())
    }
}

fn latency_curve(r: &bench_core::run::bench::BenchmarkResult) -> Vec<(f64, f64)> {
    let n = r.samples.iter().map(|s| s.token_times_s.len()).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let mean = r.samples.iter().map(|s| s.token_times_s[i]).sum::<f64>() / r.samples.len() as f64;
            ((i + 2) as f64, mean * 1e3) // position i is the (i+2)-th generated token
        })
        .collect()
}

pub fn render_svg(c: &Comparison) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let synthetic = if c.results.iter().any(|r| r.synthetic) { " [SYNTHETIC WEIGHTS]" } else { "" };
        let root = root
            .titled(&format!("llama3-bench: {} on {} ({} threads){synthetic}", c.settings.model, c.machine.cpu, c.settings.threads), ("sans-serif", 18))
            .map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(680);

        let curves: Vec<_> = c.results.iter().map(latency_curve).collect();
        let max_x = curves.iter().flat_map(|v| v.last().map(|p| p.0)).fold(2.0, f64::max);
        let max_y = curves.iter().flatten().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.15;
        let mut chart = ChartBuilder::on(&left)
            .caption("Per-token latency (mean over iterations)", ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(1f64..max_x + 1.0, 0f64..max_y)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("generated token")
            .y_desc("latency (ms)")
            // Tokens are counted: whole numbers on the axis, never "20.0".
            .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-6 { format!("{}", x.round() as i64) } else { String::new() })
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (r, curve)) in c.results.iter().zip(&curves).enumerate() {
            let color = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(curve.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label(r))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())?;

        let n = c.results.len().max(1);
        let top = c.results.iter().map(|r| r.tokens_per_second.mean + r.tokens_per_second.ci95).fold(0.0, f64::max).max(1e-3) * 1.2;
        let names: Vec<String> = c.results.iter().map(label).collect();
        let mut bars = ChartBuilder::on(&right)
            .caption("Decode throughput (tok/s, 95% CI)", ("sans-serif", 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(|e| e.to_string())?;
        bars.configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.26 {
                    names.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc("tokens / second")
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, r) in c.results.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let (m, ci) = (r.tokens_per_second.mean, r.tokens_per_second.ci95);
            let x = i as f64;
            bars.draw_series(std::iter::once(Rectangle::new([(x + 0.2, 0.0), (x + 0.8, m)], color.filled()))).map_err(|e| e.to_string())?;
            bars.draw_series(std::iter::once(PathElement::new(vec![(x + 0.5, m - ci), (x + 0.5, m + ci)], BLACK.stroke_width(2))))
                .map_err(|e| e.to_string())?;
            bars.draw_series(std::iter::once(Text::new(format!("{m:.1}"), (x + 0.55, m + top * 0.04), ("sans-serif", 14)))).map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// One server's (concurrency, value) points.
type ServerLine = Vec<(f64, f64)>;

/// `compare --serve --plot FILE.svg`: output throughput against concurrency, and p99 TTFT
/// against concurrency, one line per server.
pub fn render_serve_svg(c: &bench_load::report::ServeComparison) -> Result<String, String> {
    let labels: Vec<String> = c.servers.iter().map(|s| s.label.clone()).collect();
    // (concurrency, value) per server.
    let series = |f: &dyn Fn(&bench_load::metrics::ServingMetrics) -> f64| -> Vec<ServerLine> {
        labels
            .iter()
            .map(|l| c.levels.iter().filter_map(|lv| lv.results.iter().find(|r| &r.label == l).map(|r| (lv.concurrency as f64, f(&r.metrics)))).collect())
            .collect()
    };
    let panels: [(&str, &str, Vec<ServerLine>); 2] = [
        ("Output throughput vs concurrency", "output tokens / second", series(&|m| m.output_throughput)),
        ("p99 time to first token vs concurrency", "p99 TTFT (ms)", series(&|m| m.ttft_ms.p99)),
    ];
    let max_x = c.levels.iter().map(|l| l.concurrency).max().unwrap_or(1) as f64;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1100, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let s = &c.settings;
        // A model given as a path: its file name is enough for a title.
        let model = std::path::Path::new(&s.model).file_name().map_or(s.model.clone(), |f| f.to_string_lossy().into_owned());
        let synthetic = if c.servers.iter().any(|s| s.synthetic) { " [SYNTHETIC WEIGHTS]" } else { "" };
        let title = format!(
            "llama3-bench --serve: {model}{synthetic} on {} (--parallel {}, {} threads, {} out tokens)",
            c.machine.cpu, s.parallel, s.threads, s.output_len
        );
        let root = root.titled(&title, ("sans-serif", 17)).map_err(|e| e.to_string())?;
        let (left, right) = root.split_horizontally(550);
        for (area, (caption, y_desc, lines)) in [left, right].iter().zip(panels) {
            let top = lines.iter().flatten().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 15))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.5f64..max_x + 0.5, 0f64..top)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("concurrency (requests in flight)")
                .y_desc(y_desc)
                .x_label_formatter(&|x| if (x - x.round()).abs() < 1e-6 { format!("{}", x.round() as i64) } else { String::new() })
                .draw()
                .map_err(|e| e.to_string())?;
            for (i, (label, points)) in labels.iter().zip(&lines).enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
