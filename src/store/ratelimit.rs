//! Rate-limit buckets in the store (SPEC §7). Issue #4 fills this in: the GCRA Lua script on the
//! Redis server clock and its in-process twin.

/// Per-client buckets of the memory store.
#[derive(Default)]
pub struct MemoryBuckets {}
