//! The node's TOML config file, read exactly as `mesh-node run --config` reads it: parsing and
//! then checking every setting. Any text must give settings or a named error, never a panic
//! (an interval near `u64::MAX` once overflowed a timer).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_node::SettingArgs;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = SettingArgs::from_toml(text) else { return };
    if let Ok(settings) = SettingArgs::default().resolve(file) {
        // What validates must build the node's configuration.
        settings.service_config().expect("validated settings build a service config");
        let _ = settings.provider_config();
    }
});
