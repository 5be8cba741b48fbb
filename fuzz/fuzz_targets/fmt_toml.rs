//! A stage file in TOML, as `ferry fmt` formats it: formatting it (and formatting what it
//! wrote) must not panic or overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferry_fuzz::format_twice(data, "toml");
});
