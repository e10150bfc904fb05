//! Allocator tuning for training on the CPU.
//!
//! A training step allocates and frees tensors of megabytes every few microseconds. glibc's
//! malloc serves blocks above its mmap threshold with fresh `mmap`s and returns them on free, so
//! every step pays for page faults and zeroing of the same memory again (10% of a step in
//! profiles). Raising the thresholds keeps that memory in the heap for reuse.

/// Call once at program start, before large allocations.
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
}
