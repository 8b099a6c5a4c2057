//! The allocator's settings. glibc gives every thread that allocates its own
//! arena (up to 8 per core), and each keeps what it freed: a scanner
//! holding 5,000 hosts sat at 107 MB with two and 91 MB with one. One arena
//! is plenty for mdb's few threads, and freed memory goes back to the
//! system after each sweep. (The static musl build has no arenas.)

/// Call first thing, before any thread starts.
pub fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Hands memory freed by a sweep back to the system.
pub fn give_back_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the heap.
    unsafe {
        libc::malloc_trim(0);
    }
}
