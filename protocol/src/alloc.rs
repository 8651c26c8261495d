//! A global allocator that keeps hostile array lengths from aborting the broker.
//!
//! Request decoding (in `kafka-protocol`) reserves `Vec` capacity from the
//! array length on the wire before it reads the elements. A 13-byte frame that
//! claims two billion elements asks for tens of gigabytes; the kernel refuses
//! such an obvious overcommit, and Rust aborts the process on allocation
//! failure. The decode itself would fail a moment later on the missing bytes.
//!
//! [`GuardedAlloc`] serves huge allocations with `MAP_NORESERVE` anonymous
//! mappings: address space is reserved, no memory is committed until touched,
//! so the doomed reservation costs nothing and the decode error is returned as
//! usual. Everything else goes to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at or above this size are served by `mmap(MAP_NORESERVE)`.
const HUGE: usize = 1 << 30;

/// See the module documentation. Install with `#[global_allocator]`.
pub struct GuardedAlloc;

// SAFETY: small allocations are forwarded to `System` unchanged. Huge ones
// come from fresh anonymous mappings, which are page aligned (alignments up to
// the page size are honoured; larger ones fall back to `System`), zero-filled
// and unmapped with the same length in `dealloc`.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE && layout.align() <= 4096 {
            return map(layout.size());
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() >= HUGE && layout.align() <= 4096 {
            return map(layout.size());
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() >= HUGE && layout.align() <= 4096 {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let huge_before = layout.size() >= HUGE && layout.align() <= 4096;
        let huge_after = new_size >= HUGE && layout.align() <= 4096;
        if !huge_before && !huge_after {
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `layout.align()` with `new_size` is valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping touches no existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}
