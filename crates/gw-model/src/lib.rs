//! gw-model
#![allow(missing_docs)]
pub mod compile;
pub mod load;
pub mod resources;
pub mod status;
pub mod table;
pub use compile::{CompileOptions, Compiled, compile};
