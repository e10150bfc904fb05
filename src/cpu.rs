//! Process-wide settings for training on the CPU: the allocator and denormal numbers.
//!
//! A training step allocates and frees tensors of megabytes every few microseconds. glibc's
//! malloc serves blocks above its mmap threshold with fresh `mmap`s and returns them on free, so
//! every step pays for page faults and zeroing of the same memory again (10% of a step in
//! profiles). Raising the thresholds keeps that memory in the heap for reuse.
//!
//! Denormal (subnormal) floats, below 1.2e-38, take a slow microcode path on x86 cores: each
//! operation on one costs about a hundred cycles. Training makes them: as attention sharpens, the
//! softmax weights of far-off keys fall to e^−87 and below, and the products and gradients that
//! touch them follow. A w256 proxy slowed from 4,900 to 3,300 tokens/s over its first 30 steps
//! for this alone. So, like TensorFlow's CPU runtime, windtunnel flushes denormal results to zero
//! and reads denormal inputs as zero (MXCSR's FTZ and DAZ bits) on every thread that computes: the
//! main thread and each thread of rayon's global pool, which is built here for that. Values that
//! small change no loss anyone can read; every thread sets the same mode, so results still do not
//! depend on the thread count.

/// Call once at program start, before any thread computes: tunes the allocator and makes the
/// main thread and rayon's global pool flush denormals.
pub fn tune_for_training() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        // SAFETY: mallopt only changes allocator parameters; it is safe to call at any time.
        const M_TRIM_THRESHOLD: libc::c_int = -1;
        const M_TOP_PAD: libc::c_int = -2;
        const M_MMAP_THRESHOLD: libc::c_int = -3;
        libc::mallopt(M_MMAP_THRESHOLD, 32 << 20); // glibc's maximum on 64-bit
        libc::mallopt(M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(M_TOP_PAD, 64 << 20);
    }
    // Only when the global pool is ours: a pool started earlier would compute without the flag,
    // and the bits of a result would depend on which thread computed it.
    if rayon::ThreadPoolBuilder::new().start_handler(|_| flush_denormals()).build_global().is_ok() {
        flush_denormals();
    }
}

/// Set this thread's floating-point mode to flush denormal results to zero and treat denormal
/// inputs as zero (x86-64; elsewhere the mode is left as it is).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        /// MXCSR bits: flush to zero (15) and denormals are zero (6).
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR register into `csr`; ldmxcsr loads it back with
        // two mode bits set (no reserved bits change, so it cannot fault).
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
        }
    }
}

#[cfg(test)]
mod tests {
    /// On x86-64 a denormal product becomes zero once the mode is set, on this thread only.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn flushing_turns_denormal_results_into_zero() {
        let result = std::thread::spawn(|| {
            let tiny = std::hint::black_box(1e-30f32);
            let before = tiny * std::hint::black_box(1e-10f32);
            super::flush_denormals();
            let after = tiny * std::hint::black_box(1e-10f32);
            (before, after)
        })
        .join()
        .unwrap();
        assert!(result.0 > 0.0 && result.0.is_subnormal());
        assert_eq!(result.1, 0.0);
    }
}
