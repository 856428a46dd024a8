//! The library half of `mesh-node`: the node's settings — every `MESH_*` value resolved and
//! validated (`node_settings`), and how they are read from flags, environment and a config file
//! (`settings`) — so that tools and the fuzz targets parse a config exactly as `mesh-node run`
//! does. The libraries below take typed configurations; only this binary knows the variables.
//! The binary (`src/main.rs`) holds the commands.

pub mod node_settings;
pub mod settings;

pub use node_settings::{
    MAX_DURATION_SETTING, MAX_FEED_HISTORY, NodeSettings, PriceSourceKind, SettingsError,
};
pub use settings::SettingArgs;
