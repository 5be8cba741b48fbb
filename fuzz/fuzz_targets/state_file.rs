//! A state file of stage `development`, as every state store reads it (`state::codec`); an
//! accepted one must encode and decode to itself, and the quick start's stage is planned
//! against it and its history read.
#![no_main]

use ferry::state::codec::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(state) = decode(".ferry/state/development.json", "development", data) else { return };
    let again = decode("again", "development", &encode(&state)).expect("an encoded state decodes");
    assert_eq!(again, state, "a state survives encode and decode");
    ferry_fuzz::read_history(&state);
    ferry_fuzz::plan_and_render(&ferry_fuzz::quickstart(), &state);
});
