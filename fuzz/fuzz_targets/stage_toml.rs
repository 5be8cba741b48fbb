//! A stage file in TOML, as `ferry validate` and `ferry plan` load it; an accepted one is
//! planned against an empty state and the plan rendered.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(stage) = ferry_fuzz::load_stage(data, "toml") {
        ferry_fuzz::plan_and_render(&stage, &ferry::state::StageState::new("development"));
    }
});
