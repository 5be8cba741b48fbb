//! A saved plan file (`ferry plan -o FILE`), as `ferry commit FILE` reads it; an accepted one
//! is rendered as the commit prints it, and must write and read back to itself.
#![no_main]

use std::path::Path;

use ferry::plan::SavedPlan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(plan) = SavedPlan::from_json(Path::new("plan.json"), text) else { return };
    let again = SavedPlan::from_json(Path::new("again"), &plan.to_json()).expect("a written plan reads");
    assert_eq!(again, plan, "a plan survives writing and reading");
    let _ = plan.check_fresh(&plan.lineage, plan.serial, &plan.input_hash);
    ferry_fuzz::render_all(&plan.changeset, &plan.lineage, plan.serial);
});
