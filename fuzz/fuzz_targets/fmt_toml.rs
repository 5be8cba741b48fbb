//! A stage file in TOML, as `ferry fmt` formats it: formatting must not panic or overflow,
//! and formatting what it wrote changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_fuzz::format_twice(data, "toml");
});
