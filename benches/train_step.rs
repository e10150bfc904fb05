//! A full training step — forward, backward, AdamW with clipping — in tokens/s, for the two
//! shapes the README quotes: width 128 × 4 layers × 4 heads (2 kv heads) and width 256 × 8 layers
//! × 8 heads (4 kv heads), sequence 256, batch 16, vocab 256.
//!
//! `cargo bench --bench train_step`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use windtunnel::data::{self, DataSpec};
use windtunnel::device::CpuBackend;
use windtunnel::model::mup::MupConfig;
use windtunnel::model::shape::ModelShape;
use windtunnel::model::transformer::Transformer;
use windtunnel::train::optimizer::{AdamW, AdamWConfig};
use windtunnel::train::run::batch_tensors;

const BATCH: usize = 16;
const SEQ: usize = 256;

fn bench_shape(c: &mut Criterion, name: &str, shape: ModelShape) {
    let device = Default::default();
    let mup = MupConfig { base_width: shape.width, ..MupConfig::default() };
    let source = data::open(&DataSpec::default(), 0, std::path::Path::new(".")).unwrap();
    let mut model = Some(Transformer::<CpuBackend>::new(&shape, &mup, SEQ, 0, &device));
    let mut optimizer = AdamW::new(AdamWConfig::default(), model.as_ref().unwrap(), &mup);
    let mut step = 0u64;
    let mut group = c.benchmark_group("train_step");
    group.throughput(Throughput::Elements((BATCH * SEQ) as u64));
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter(|| {
            let batch = data::train_batch(&*source, step, BATCH, SEQ).unwrap();
            step += 1;
            let (inputs, targets) = batch_tensors::<CpuBackend>(&batch, &device);
            let m = model.take().unwrap();
            let loss = m.loss(inputs, targets);
            let value = loss.clone().into_scalar();
            let (m, _) = optimizer.step(m, loss.backward(), 1e-3);
            model = Some(m);
            value
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    windtunnel::cpu::tune_for_training();
    bench_shape(c, "w128_l4_h4_kv2", ModelShape { width: 128, depth: 4, heads: 4, kv_heads: 2, ffn_width: 320, vocab: 256 });
    bench_shape(c, "w256_l8_h8_kv4", ModelShape { width: 256, depth: 8, heads: 8, kv_heads: 4, ffn_width: 640, vocab: 256 });
}

criterion_group!(train_benches, benches);
criterion_main!(train_benches);
