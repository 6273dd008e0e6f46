//! Exports for file serving and downloads (docs/DOWNLOADS.md).

use super::context::xxnet_ctx;
use super::guard_code;
use super::rpc::{context, read_str};
use crate::codes::*;
use std::os::raw::{c_char, c_int};

/// Counters read with `xxnet_files_stats`. Counts are since xxnet_new.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct xxnet_file_stats {
    /// Blocks received, checked and written to the download cache.
    pub blocks_fetched: u64,
    /// Blocks that arrived corrupt (a granule's CRC did not match) and were requested again.
    pub blocks_refetched: u64,
    /// Blocks this node served to other nodes.
    pub blocks_served: u64,
    /// Bytes written to the download cache.
    pub bytes_fetched: u64,
    /// Bytes of file data served to other nodes.
    pub bytes_served: u64,
    /// Downloads completed and verified (one per content, however many requesters joined).
    pub downloads_done: u64,
    /// Cached files evicted to make room.
    pub evictions: u64,
    /// Bytes the download cache holds now (partial files at their full size).
    pub cache_bytes: u64,
    /// Distinct contents this node serves now (updated as the served directories are hashed).
    pub served_files: u64,
}

/// A host string for a path, a name or an md5: text that is not UTF-8 is a bad path.
///
/// # Safety
/// `s` is NULL or points to a NUL-terminated string.
unsafe fn read_path<'a>(s: *const c_char) -> Result<&'a str, c_int> {
    read_str(s).map_err(|c| match c {
        XXNET_E_INVALID_ARG => XXNET_E_BAD_PATH,
        c => c,
    })
}

/// Serves the files under directory `dir` (and its subdirectories) to other
/// nodes by content: a peer asks for an md5 and size, never for a path. The
/// directory is hashed in the background by the files thread (requests
/// arriving meanwhile wait); a file added later is found through the name a
/// requester gives, which must lie inside `dir` (symbolic links are not
/// followed out of it). May be called for several directories.
/// XXNET_E_BAD_PATH if `dir` is not an existing directory.
#[no_mangle]
pub extern "C" fn xxnet_files_serve(ctx: *mut xxnet_ctx, dir: *const c_char) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let dir = unsafe { read_path(dir) }?;
        ctx.files_serve(dir)
    })
}

/// Downloads the content with md5 `md5_hex` (32 hex digits) and `size`
/// bytes from `node` into the download cache (config download_dir). On
/// XXNET_OK writes the task id (never 0) to `*task` (may be NULL); then
/// XXNET_EVENT_DOWNLOAD_PROGRESS events may follow, and exactly one
/// XXNET_EVENT_DOWNLOAD_DONE (with the file's local path) or
/// XXNET_EVENT_DOWNLOAD_FAILED (with the reason).
///
/// Content already in the cache is DONE at once (its last-used time is
/// refreshed); content already downloading is joined: the bytes travel once
/// and every task gets its own result. Partial files survive a restart and
/// are resumed by the next request for them. `file_name` is a hint for the
/// source (a relative path under a served directory) and is kept in the
/// index; it is never used as a local path.
///
/// Returns at once, without an event: XXNET_E_BAD_PATH (md5 not 32 hex
/// digits; file name absolute, with `..`, `.`, `\\` or a NUL byte, longer
/// than 1024 bytes or with a component longer than 255), XXNET_E_NO_SPACE
/// (size above download_quota), XXNET_E_UNKNOWN_NODE, XXNET_E_INVALID_ARG
/// (no download_dir configured), XXNET_E_SHUTDOWN, XXNET_E_NULL_POINTER.
#[no_mangle]
pub extern "C" fn xxnet_download(
    ctx: *mut xxnet_ctx,
    node: *const c_char,
    md5_hex: *const c_char,
    file_name: *const c_char,
    size: u64,
    task: *mut u64,
) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let node = unsafe { read_str(node) }.map_err(|c| match c {
            XXNET_E_INVALID_ARG => XXNET_E_UNKNOWN_NODE,
            c => c,
        })?;
        let md5 = unsafe { read_path(md5_hex) }?;
        let name = unsafe { read_path(file_name) }?;
        let t = ctx.download(node, md5, name, size)?;
        if let Some(out) = unsafe { task.as_mut() } {
            *out = t;
        }
        Ok(())
    })
}

/// Cancels a running download task: its XXNET_EVENT_DOWNLOAD_FAILED with
/// XXNET_E_CANCELLED comes from the next poll and nothing else follows for
/// it. Other tasks of the same content go on; when none is left the
/// transfer stops and the partial file stays in the cache for a later
/// resume. XXNET_E_UNKNOWN_TASK if the task is not running (finished,
/// failed or cancelled already, or never existed).
#[no_mangle]
pub extern "C" fn xxnet_download_cancel(ctx: *mut xxnet_ctx, task: u64) -> c_int {
    guard_code(|| context(ctx)?.download_cancel(task))
}

/// Releases the file of a task that ended with XXNET_EVENT_DOWNLOAD_DONE.
/// Until then the file is in use and never evicted; afterwards it stays in
/// the cache (a later download of it is DONE at once) but may be evicted,
/// least recently used first, when room is needed. An open file survives
/// its eviction (POSIX semantics). XXNET_E_UNKNOWN_TASK if the task did not
/// end with DONE or was released already.
#[no_mangle]
pub extern "C" fn xxnet_download_release(ctx: *mut xxnet_ctx, task: u64) -> c_int {
    guard_code(|| context(ctx)?.download_release(task))
}

/// Fills `*out` with the download counters.
#[no_mangle]
pub extern "C" fn xxnet_files_stats(ctx: *mut xxnet_ctx, out: *mut xxnet_file_stats) -> c_int {
    guard_code(|| {
        let ctx = context(ctx)?;
        let out = unsafe { out.as_mut() }.ok_or(XXNET_E_NULL_POINTER)?;
        let s = ctx.files_stats();
        *out = xxnet_file_stats {
            blocks_fetched: s.blocks_fetched,
            blocks_refetched: s.blocks_refetched,
            blocks_served: s.blocks_served,
            bytes_fetched: s.bytes_fetched,
            bytes_served: s.bytes_served,
            downloads_done: s.downloads_done,
            evictions: s.evictions,
            cache_bytes: s.cache_bytes,
            served_files: s.served_files,
        };
        Ok(())
    })
}
