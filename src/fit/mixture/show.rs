//! The `fit mixture` report as a person reads it.

use std::fmt::{self, Display, Formatter};

use super::report::{MixtureReport, Prediction};

/// "web 0.412, code 0.300, books 0.288".
fn weights(domains: &[String], w: &[f64]) -> String {
    domains.iter().zip(w).map(|(d, x)| format!("{d} {x:.3}")).collect::<Vec<_>>().join(", ")
}

impl Display for MixtureReport {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} runs, {} domains, {} evaluation sets", self.source, self.runs, self.domains.len(), self.sets.len())?;
        if self.left_out > 0 {
            writeln!(f, "  ({} rows left out: not done, without weights, or without a loss)", self.left_out)?;
        }
        if let Some(n) = self.fitted_size {
            writeln!(f, "  fitted on the largest scale's runs, {} (the others are compared below)", super::report::scale_text(n, self.fitted_tokens))?;
        }
        let objective = self.objective.iter().map(|(s, w)| format!("{w:.3}·{s}")).collect::<Vec<_>>().join(" + ");
        writeln!(f, "objective: {objective}\n")?;
        writeln!(f, "cross-validation ({} folds, on the runs' objective):", self.folds)?;
        writeln!(f, "  {:<12} {:>10} {:>10}", "form", "Spearman ρ", "RMSE")?;
        for s in &self.forms {
            match (s.spearman, s.rmse) {
                (Some(r), Some(e)) => writeln!(f, "  {:<12} {r:>10.4} {e:>10.4}", s.form.name())?,
                _ => writeln!(f, "  {:<12} {}", s.form.name(), s.note.as_deref().unwrap_or("-"))?,
            }
        }
        let why = if self.chosen_by == "--form" { "named by --form".to_string() } else { "the best by cross-validation".to_string() };
        writeln!(f, "form: {} ({why})\n", self.form)?;
        self.fmt_fits(f)?;
        let interval =
            self.interval.map_or(String::new(), |i| format!(" (95% bootstrap interval {:.4} – {:.4}, {} resamples)", i.lower, i.upper, self.bootstrap));
        writeln!(f, "optimal mixture: {}", weights(&self.domains, &self.optimum.weights))?;
        writeln!(f, "  predicted objective {:.4}{interval}", self.optimum.predicted)?;
        let b = &self.best_tried;
        writeln!(f, "best tried mixture ({}): {}", b.key, weights(&self.domains, &b.weights))?;
        writeln!(f, "  its objective {:.4} (predicted {:.4})", b.actual, b.predicted)?;
        self.fmt_sizes(f)?;
        for w in &self.warnings {
            writeln!(f, "warning: {w}")?;
        }
        if !self.predictions.is_empty() {
            writeln!(f, "\npredicted objective of the mixtures in --predict:")?;
            for p in &self.predictions {
                writeln!(f, "  {:<16} {:.4}", p.key, p.predicted)?;
            }
        }
        Ok(())
    }
}

impl MixtureReport {
    fn fmt_fits(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for s in &self.fits {
            if let Some(c) = &s.coefficients {
                writeln!(f, "  {}: L = {}", s.set, self.domains.iter().zip(c).map(|(d, b)| format!("{b:.3}·{d}")).collect::<Vec<_>>().join(" + "))?;
            }
            if let Some(law) = &s.law {
                let t = self.domains.iter().zip(&law.t).map(|(d, t)| format!("{t:+.3}·{d}")).collect::<Vec<_>>().join(" ");
                writeln!(f, "  {}: L = {:.4} + {:.4}·exp({t})", s.set, law.c, law.k)?;
                if let Some(i) = &s.law_intervals {
                    writeln!(f, "    95% intervals: c {:.4} – {:.4}, k {:.4} – {:.4}", i.c.lower, i.c.upper, i.k.lower, i.k.upper)?;
                }
            }
            if let Some(n) = s.trees {
                writeln!(f, "  {}: {n} trees", s.set)?;
            }
        }
        if !self.fits.is_empty() {
            writeln!(f)?;
        }
        let capped: Vec<String> = self
            .domains
            .iter()
            .enumerate()
            .filter(|(j, _)| self.bounds.lower[*j] > 0.0 || self.bounds.upper[*j] < 1.0)
            .map(|(j, d)| format!("{:.3} ≤ {d} ≤ {:.3}", self.bounds.lower[j], self.bounds.upper[j]))
            .collect();
        if !capped.is_empty() {
            writeln!(f, "constraints: {}", capped.join(", "))?;
        }
        Ok(())
    }

    fn fmt_sizes(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.sizes.is_empty() {
            return Ok(());
        }
        writeln!(f, "\nacross scales (sizes and token counts):")?;
        for s in &self.sizes {
            let optimum = s
                .optimum
                .as_ref()
                .map_or("too few runs to fit".to_string(), |o| format!("optimum {} (predicted {:.4})", weights(&self.domains, &o.weights), o.predicted));
            let scale = super::report::scale_text(s.non_embedding_params, s.tokens);
            writeln!(f, "  {scale}, {} runs: {optimum}; best tried {} ({:.4})", s.runs, s.best_tried.key, s.best_tried.actual)?;
        }
        for a in &self.agreement {
            let (smaller, larger) = (super::report::scale_text(a.smaller, a.smaller_tokens), super::report::scale_text(a.larger, a.larger_tokens));
            writeln!(f, "  ρ between {smaller} and {larger} over {} shared mixtures: {:.3}", a.mixtures, a.spearman)?;
        }
        Ok(())
    }
}

/// `--predict` as a CSV: the key column, the weights, the predicted objective.
pub fn predictions_csv(key: &str, domains: &[String], predictions: &[Prediction]) -> String {
    let mut out = format!("{key},{},predicted_objective\n", domains.join(","));
    for p in predictions {
        let w = p.weights.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(",");
        out.push_str(&format!("{},{w},{}\n", csv_cell(&p.key), p.predicted));
    }
    out
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
