use std::time::Instant;
use burn::tensor::{Tensor, Distribution, activation::{softmax, log_softmax}};
use burn::tensor::module::linear;
use windtunnel::device::CpuBackend as B;

fn time<F: FnMut() -> Tensor<B, N>, const N: usize>(name: &str, mut f: F) {
    let _ = f().into_data();
    let t = Instant::now();
    for _ in 0..5 { let _ = f().into_data(); }
    println!("{name:30} {:8.2} ms", t.elapsed().as_secs_f64() * 200.0);
}

fn main() {
    let d = Default::default();
    let x = Tensor::<B, 3>::random([16, 256, 128], Distribution::Normal(0.0, 1.0), &d);
    let w = Tensor::<B, 2>::random([128, 128], Distribution::Normal(0.0, 0.1), &d);
    let w2 = Tensor::<B, 2>::random([128, 320], Distribution::Normal(0.0, 0.1), &d);
    let e = Tensor::<B, 2>::random([256, 128], Distribution::Normal(0.0, 0.1), &d);
    time("linear 128x128", || linear(x.clone(), w.clone(), None));
    time("linear 128x320", || linear(x.clone(), w2.clone(), None));
    time("mul elementwise", || x.clone() * x.clone());
    time("mul scalar", || x.clone() * 2.0);
    time("square mean_dim", || x.clone().square().mean_dim(2));
    time("silu", || burn::tensor::activation::silu(x.clone()));
    let q = x.clone().reshape([16, 256, 4, 32]);
    time("swap+reshape", || q.clone().swap_dims(1, 2).reshape([16, 2, 512, 32]));
    let qq = q.clone().swap_dims(1, 2).reshape([16, 2, 512, 32]);
    let kk = q.clone().swap_dims(1, 2).narrow(1, 0, 2);
    time("scores matmul", || qq.clone().matmul(kk.clone().swap_dims(2, 3)));
    let s = qq.clone().matmul(kk.clone().swap_dims(2, 3));
    time("softmax", || softmax(s.clone(), 3));
    let mask = Tensor::<B, 4>::zeros([1, 1, 512, 256], &d);
    time("add mask broadcast", || s.clone() + mask.clone());
    let full = Tensor::<B, 4>::zeros([16, 2, 512, 256], &d);
    time("add same shape", || s.clone() + full.clone());
    let m3 = Tensor::<B, 3>::zeros([1, 512, 256], &d);
    let s3 = s.clone().reshape([32, 512, 256]);
    time("add broadcast 3d", || s3.clone() + m3.clone());
    let m2 = Tensor::<B, 2>::zeros([512, 256], &d);
    let s2 = s.clone().reshape([32 * 512, 256]);
    time("mul_scalar 4d", || s.clone() * 0.5);
    let bm = Tensor::<B, 4, burn::tensor::Bool>::from_data(burn::tensor::TensorData::new(vec![false; 512*256], [1,1,512,256]), &d);
    time("mask_fill broadcast", || s.clone().mask_fill(bm.clone(), f32::NEG_INFINITY));
    let _ = (m2, s2);
    let mx = s.clone().max_dim(3);
    time("max_dim", || s.clone().max_dim(3));
    time("sub lastdim bcast", || s.clone() - mx.clone());
    time("exp", || s.clone().exp());
    time("div lastdim bcast", || s.clone() / mx.clone());
    let inv = x.clone().square().mean_dim(2);
    time("x * [b,t,1]", || x.clone() * inv.clone());
    let gain = Tensor::<B, 1>::ones([128], &d).unsqueeze::<3>();
    time("x * [1,1,w]", || x.clone() * gain.clone());
    let cos = Tensor::<B, 4>::ones([1, 256, 1, 32], &d);
    time("q * cos [1,t,1,hd]", || q.clone() * cos.clone());
    time("logits", || linear(x.clone(), e.clone().transpose(), None));
    let l = linear(x.clone(), e.clone().transpose(), None);
    time("log_softmax", || log_softmax(l.clone(), 2));
}
