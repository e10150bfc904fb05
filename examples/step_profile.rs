//! Where a training step's time goes: forward, backward, optimizer, for one bench shape.
//! `cargo run --release --example step_profile -- 128 4 4 2` (`STEPS=20` for more than 6 steps)
use std::time::Instant;
use windtunnel::data::{self, DataSpec};
use windtunnel::device::CpuBackend;
use windtunnel::model::mup::MupConfig;
use windtunnel::model::shape::ModelShape;
use windtunnel::model::transformer::Transformer;
use windtunnel::train::optimizer::{AdamW, AdamWConfig};
use windtunnel::train::run::batch_tensors;

fn main() {
    windtunnel::cpu::tune_for_training();
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    let (width, depth, heads, kv) =
        (a.first().copied().unwrap_or(128), a.get(1).copied().unwrap_or(4), a.get(2).copied().unwrap_or(4), a.get(3).copied().unwrap_or(2));
    let shape = ModelShape { width, depth, heads, kv_heads: kv, ffn_width: width * 5 / 2, vocab: 256 };
    let (batch, seq) = (16, 256);
    let device = Default::default();
    let mup = MupConfig { base_width: width, ..MupConfig::default() };
    let source = data::open(&DataSpec::default(), 0, std::path::Path::new(".")).unwrap();
    let mut model = Transformer::<CpuBackend>::new(&shape, &mup, seq, 0, &device);
    let mut opt = AdamW::new(AdamWConfig::default(), &model, &mup);
    let (mut tf, mut tb, mut to) = (0.0, 0.0, 0.0);
    let steps: u64 = std::env::var("STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(6).max(2);
    for step in 0..steps {
        let b = data::train_batch(&*source, step, batch, seq).unwrap();
        let (i, t) = batch_tensors::<CpuBackend>(&b, &device);
        let t0 = Instant::now();
        let loss = model.loss(i, t);
        let _v = loss.clone().into_scalar();
        let t1 = Instant::now();
        let g = loss.backward();
        let t2 = Instant::now();
        let (m, _) = opt.step(model, g, 1e-3);
        model = m;
        let t3 = Instant::now();
        if step > 0 {
            tf += (t1 - t0).as_secs_f64();
            tb += (t2 - t1).as_secs_f64();
            to += (t3 - t2).as_secs_f64();
        }
    }
    let n = (steps - 1) as f64;
    let total = (tf + tb + to) / n;
    println!("forward {:.3}s backward {:.3}s optimizer {:.3}s  total {:.3}s  {:.0} tokens/s", tf / n, tb / n, to / n, total, (batch * seq) as f64 / total);
}
