//! The plain TOML reader against the `toml` crate: whatever the plain reader reads, the
//! `toml` crate must read the same (it may decline anything, never differ).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(plain) = ferry::config::fast_toml::plain::from_str::<Value>(text) {
        assert_eq!(Some(plain), toml::from_str::<Value>(text).ok(), "{text:?}");
    }
});
