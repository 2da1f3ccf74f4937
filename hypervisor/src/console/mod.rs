//! The console op group: guests' output rings, the input queues the control
//! domain fills, and (bare metal) their live effect.
#![forbid(unsafe_code)]

pub mod input;
pub mod live;
pub mod out;
pub mod ring;
pub mod stamp;
pub mod wake;
