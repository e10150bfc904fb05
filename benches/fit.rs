//! The data-model fit on the 240 Chinchilla points: the full 4500-start L-BFGS grid, and 1000
//! bootstrap refits warm-started from it.
//!
//! `cargo bench --bench fit`

use criterion::{criterion_group, criterion_main, Criterion};
use windtunnel::fit::bootstrap::resample_fits;
use windtunnel::fit::form::Form;
use windtunnel::fit::input::{points, Columns, Table};
use windtunnel::fit::law::fit;

fn benches(c: &mut Criterion) {
    let table = Table::observations(std::path::Path::new("analysis/data/chinchilla_svg_extracted_data.csv")).unwrap();
    let columns = Columns { n: "Model Size".into(), tokens: None, flops: Some("Training FLOP".into()), loss: "loss".into(), grid: None };
    let pts = points(&table, &columns, 5, None).unwrap().points;
    let mut group = c.benchmark_group("fit");
    group.sample_size(10);
    group.bench_function("chinchilla_4500_starts", |b| b.iter(|| fit(Form::Chinchilla, &pts, 1e-3).unwrap()));
    let law = fit(Form::Chinchilla, &pts, 1e-3).unwrap().law;
    group.bench_function("chinchilla_1000_bootstrap_refits", |b| b.iter(|| resample_fits(&Form::Chinchilla.into(), &pts, &law, 1e-3, 1000, 0, false)));
    group.finish();
}

criterion_group!(fit_benches, benches);
criterion_main!(fit_benches);
