//! The libmimalloc-sys functions that modelbus and the mimalloc crate call,
//! on the C library's `malloc` (AddressSanitizer's, in a fuzz build). See
//! Cargo.toml for why fuzz builds use this instead of mimalloc.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

use std::ffi::{c_char, c_int, c_long, c_void};

pub type mi_option_t = c_int;

extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn calloc(n: usize, size: usize) -> *mut c_void;
    fn realloc(p: *mut c_void, size: usize) -> *mut c_void;
    fn free(p: *mut c_void);
    fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int;
    fn malloc_usable_size(p: *mut c_void) -> usize;
}

/// What `malloc` guarantees on the 64-bit targets modelbus runs on.
const MIN_ALIGN: usize = 16;

pub unsafe extern "C" fn mi_malloc_aligned(size: usize, alignment: usize) -> *mut c_void {
    if alignment <= MIN_ALIGN {
        return malloc(size);
    }
    let mut out = std::ptr::null_mut();
    if posix_memalign(&mut out, alignment, size) != 0 {
        return std::ptr::null_mut();
    }
    out
}

pub unsafe extern "C" fn mi_zalloc_aligned(size: usize, alignment: usize) -> *mut c_void {
    if alignment <= MIN_ALIGN {
        return calloc(size.max(1), 1);
    }
    let p = mi_malloc_aligned(size, alignment);
    if !p.is_null() {
        std::ptr::write_bytes(p.cast::<u8>(), 0, size);
    }
    p
}

pub unsafe extern "C" fn mi_realloc_aligned(p: *mut c_void, newsize: usize, alignment: usize) -> *mut c_void {
    if alignment <= MIN_ALIGN {
        return realloc(p, newsize);
    }
    let new = mi_malloc_aligned(newsize, alignment);
    if !new.is_null() && !p.is_null() {
        std::ptr::copy_nonoverlapping(p.cast::<u8>(), new.cast::<u8>(), malloc_usable_size(p).min(newsize));
        free(p);
    }
    new
}

pub unsafe extern "C" fn mi_free(p: *mut c_void) {
    free(p)
}

pub unsafe extern "C" fn mi_usable_size(p: *const c_void) -> usize {
    malloc_usable_size(p as *mut c_void)
}

pub unsafe extern "C" fn mi_version() -> c_int {
    0
}

/// No statistics: null, as mimalloc returns when it cannot produce them.
pub unsafe extern "C" fn mi_stats_get_json(_buf_size: usize, _buf: *mut c_char) -> *mut c_char {
    std::ptr::null_mut()
}

pub unsafe extern "C" fn mi_collect(_force: bool) {}

pub unsafe extern "C" fn mi_option_set(_option: mi_option_t, _value: c_long) {}
