//! Idempotency records in the store (SPEC §6). Issue #5 fills this in: the atomic acquire, the
//! completion and the release, in Lua and in process.

/// Records of the memory store.
#[derive(Default)]
pub struct MemoryRecords {}
