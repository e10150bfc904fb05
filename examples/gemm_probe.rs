//! The linear layers' three products at the bench shapes' sizes (4096 tokens), in GFLOP/s on
//! rayon's threads: forward `x·W`, `dx = dy·Wᵀ`, and the weight gradient `dW = xᵀ·dy` both as one
//! `gemm` product (parallel over the output only) and as `linear_backward_w` computes it (pieces of
//! rows in parallel, added in order).
//! `RAYON_NUM_THREADS=2 cargo run --release --example gemm_probe`
use std::time::Instant;
use windtunnel::model::gemm::{linear_backward_w, linear_backward_x, linear_forward, matmul};

fn gflops(flops: f64, f: &mut dyn FnMut()) -> f64 {
    for _ in 0..3 {
        f();
    }
    let start = Instant::now();
    for _ in 0..20 {
        f();
    }
    flops / (start.elapsed().as_secs_f64() / 20.0) / 1e9
}

fn main() {
    windtunnel::cpu::tune_for_training();
    let m = 4096;
    println!("{:>16} {:>8} {:>8} {:>14} {:>14}", "x[m×k]·W[k×n]", "forward", "dx", "dW one gemm", "dW in pieces");
    for (k, n) in [(128, 128), (128, 320), (320, 128), (256, 128), (256, 256), (256, 640), (640, 256)] {
        let values = |len: usize, seed: usize| -> Vec<f32> { (0..len).map(|i| ((i * 7919 + seed) % 1000) as f32 * 1e-3 - 0.5).collect() };
        let (x, w, dy) = (values(m * k, 1), values(k * n, 2), values(m * n, 3));
        let flops = 2.0 * (m * k * n) as f64;
        let mut dw = vec![0.0f32; k * n];
        let forward = gflops(flops, &mut || drop(std::hint::black_box(linear_forward(&x, &w, k, n))));
        let dx = gflops(flops, &mut || drop(std::hint::black_box(linear_backward_x(&dy, &w, k, n))));
        let one = gflops(flops, &mut || matmul(k, n, m, (&mut dw, n), false, (&x, (1, k)), (&dy, (n, 1)), 1.0, true));
        let pieces = gflops(flops, &mut || drop(std::hint::black_box(linear_backward_w(&x, &dy, k, n))));
        println!("{:>16} {forward:8.0} {dx:8.0} {one:14.0} {pieces:14.0}", format!("{m}×{k}·{k}×{n}"));
    }
}
