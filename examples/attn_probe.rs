//! The fused causal attention alone at the bench shapes (batch 16, seq 256, head_dim 32), forward
//! and backward, in ms per layer and GFLOP/s of the causal half's products.
//! `RAYON_NUM_THREADS=2 cargo run --release --example attn_probe`
use std::time::Instant;
use windtunnel::model::attention::{self, Dims};

fn main() {
    windtunnel::cpu::tune_for_training();
    for (name, heads, kv_heads) in [("w128", 4, 2), ("w256", 8, 4)] {
        let d = Dims { batch: 16, heads, kv_heads, seq: 256, head_dim: 32 };
        let values = |len: usize, seed: usize| -> Vec<f32> { (0..len).map(|i| ((i * 7919 + seed) % 1000) as f32 * 1e-3 - 0.5).collect() };
        let (q, k, v) = (values(16 * 256 * heads * 32, 1), values(16 * 256 * kv_heads * 32, 2), values(16 * 256 * kv_heads * 32, 3));
        let grad_o = values(q.len(), 4);
        let (reps, mut forward_s, mut backward_s) = (10, 0.0, 0.0);
        for rep in 0..reps + 2 {
            let start = Instant::now();
            let (o, p) = attention::forward(d, &q, &k, &v, 0.17);
            let mid = Instant::now();
            let grads = attention::backward(d, &q, &k, &v, &p, &grad_o, 0.17);
            std::hint::black_box((o, grads));
            if rep >= 2 {
                forward_s += (mid - start).as_secs_f64() / reps as f64;
                backward_s += mid.elapsed().as_secs_f64() / reps as f64;
            }
        }
        // S = Q·Kᵀ and O = P·V over the causal half: 2 products of seq²/2 × head_dim multiply-adds.
        let flops = (d.batch * d.heads) as f64 * 2.0 * 2.0 * (d.seq * d.seq / 2) as f64 * d.head_dim as f64;
        println!(
            "{name}: forward {:.2} ms ({:.0} GFLOP/s), backward {:.2} ms ({:.0} GFLOP/s)",
            forward_s * 1e3,
            flops / forward_s / 1e9,
            backward_s * 1e3,
            2.0 * flops / backward_s / 1e9
        );
    }
}
