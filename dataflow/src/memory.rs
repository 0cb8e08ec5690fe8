//! Handing the allocator's free pages back to the operating system while a run goes on.

/// How often a worker hands free pages back while it runs.
pub const RELEASE_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Returns the calling thread's free allocator pages to the operating system now.
#[cfg(feature = "mimalloc")]
#[allow(unsafe_code)]
pub fn release_free_memory() {
    // SAFETY: `mi_collect` takes no pointers and only walks the calling thread's heap and the
    // allocator's arenas; it is safe to call from any thread at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Without mimalloc there is nothing to do.
#[cfg(not(feature = "mimalloc"))]
pub fn release_free_memory() {}
