//! Batch production throughput (tokens/s) for each data source. Data must never stall training:
//! the trainer's bench shapes run at thousands to tens of thousands of tokens/s on 2 cores.
//!
//! `cargo bench --bench data`

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use windtunnel::data::{self, files::TokenDtype, DataSpec, TextSpec, TokensSpec};

const BATCH: usize = 16;
const SEQ: usize = 256;

fn bench_source(c: &mut Criterion, name: &str, spec: &DataSpec, dir: &Path) {
    let source = data::open(spec, 0, dir).unwrap();
    let mut group = c.benchmark_group("data");
    group.throughput(Throughput::Elements((BATCH * (SEQ + 1)) as u64));
    let mut step = 0u64;
    group.bench_function(name, |b| {
        b.iter(|| {
            step += 1;
            data::train_batch(&*source, step, BATCH, SEQ).unwrap()
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    // A 64 MB token file and a 16 MB text file.
    let tokens: Vec<u8> = (0..32u32 << 20).flat_map(|i| ((i.wrapping_mul(2654435761) >> 16) as u16).to_le_bytes()).collect();
    std::fs::write(dir.path().join("t.bin"), tokens).unwrap();
    let text: Vec<u8> = (0..16u32 << 20).map(|i| b'a' + (i.wrapping_mul(2654435761) >> 27) as u8 % 26).collect();
    std::fs::write(dir.path().join("t.txt"), text).unwrap();

    bench_source(c, "synthetic", &DataSpec::default(), dir.path());
    let tokens = DataSpec::Tokens(TokensSpec { path: "t.bin".into(), dtype: Some(TokenDtype::U16), vocab: Some(65536), eval_path: None, eval_fraction: 0.01 });
    bench_source(c, "tokens_u16_mmap", &tokens, dir.path());
    let text = DataSpec::Text(TextSpec { path: "t.txt".into(), eval_path: None, eval_fraction: 0.01 });
    bench_source(c, "text_bytes_mmap", &text, dir.path());
}

criterion_group!(data_benches, benches);
criterion_main!(data_benches);
