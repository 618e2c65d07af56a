//! The waiting room's domain (SPEC §5): tokens, identities, admission and eta arithmetic. No HTTP
//! types and no store calls here: `store/queue.rs` keeps the state (one Lua script per operation
//! and its in-memory twin), `routes/queue.rs` speaks HTTP.
//!
//! Every decision that involves time is a pure function with `now` passed in, so the Lua scripts
//! (which read the Redis server clock) and the memory store (which reads the process clock) share
//! one tested definition.
pub mod adaptive;
pub mod admission;
pub mod events;
pub mod identity;
pub mod labels;
pub mod polling;
pub mod token;

pub use admission::{Admission, eta_secs};
pub use identity::Identity;
pub use labels::EventLabels;
pub use token::{EventTag, ReservationToken, WaitingToken};
