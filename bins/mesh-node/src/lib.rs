//! The library half of `mesh-node`: how the node reads its settings, so that tools and the fuzz
//! targets parse a config file exactly as `mesh-node run` does. The binary (`src/main.rs`)
//! holds the commands.

pub mod settings;

pub use settings::SettingArgs;
