//! The daemon's allocator settings. glibc's malloc is tuned for throughput across many
//! threads, not for a small process that runs for months: it gives each thread that allocates
//! its own arena, and each time a large block is freed it raises its mmap threshold, after
//! which the next large, short-lived buffers (a 300 KB metrics page, a rendered status page)
//! come from the heap and leave it fragmented. `mxwarden run` asks for one arena and a fixed
//! threshold, so large buffers get their own mappings and go back to the system when freed,
//! and once a minute hands whole free pages inside the heap back as well
//! (`release_free_pages`): what a scrape or a page render freed between long-lived blocks.

/// Applies the settings; call it before the daemon starts its threads. Elsewhere than on
/// glibc it does nothing.
pub fn tune_for_a_long_running_process() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const LARGE: libc::c_int = 128 * 1024;
        // SAFETY: mallopt only sets allocator parameters; it is called before other threads
        // exist, and a refused setting (return 0) leaves glibc's default in place.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
            libc::mallopt(libc::M_MMAP_THRESHOLD, LARGE);
            libc::mallopt(libc::M_TRIM_THRESHOLD, LARGE);
        }
    }
}

/// Returns the whole pages that are free inside the heap to the system (glibc's
/// `malloc_trim`); a walk over a heap of a few MiB, microseconds. Elsewhere than on glibc it
/// does nothing.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free memory to the system; it is thread-safe.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
