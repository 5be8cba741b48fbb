//! Planner and renderer benchmarks on a large generated stage: 1,000 apps × 20 releases.
//!
//! `cargo bench --bench plan` runs criterion. `cargo bench --bench plan -- --generate DIR`
//! instead writes two projects for timing the whole `ferry plan` process
//! (`scripts/bench-plan.sh`): `DIR/no-change` (state matches the file) and
//! `DIR/all-change` (every app activates a new release with a new config) and
//! `DIR/no-state` (a stage never applied: every app is new, ferry's counterpart of
//! `terraform plan` with no state).

use std::hint::black_box;
use std::path::Path;

use criterion::Criterion;
use ferry::config::Stage;
use ferry::plan::{fixture, plan, PlanOptions};
use ferry::render::{self, PlanView, StageView};
use ferry::state::StageState;

const APPS: usize = 1_000;
const RELEASES: u64 = 20;

/// The stage every app ran before the all-change plan: one release back, other env.
fn previous(stage: &Stage) -> Stage {
    let mut prev = stage.clone();
    for app in prev.apps.values_mut() {
        app.active = Some(RELEASES - 1);
        app.config.env.insert("VAR_0".into(), "previous".into());
    }
    prev
}

fn view(stage: &Stage, recorded: &StageState) -> PlanView {
    let cs = plan(stage, recorded, &PlanOptions::default()).expect("plannable");
    PlanView { stages: vec![StageView::build(&cs, &recorded.lineage, recorded.serial, Some("stages/bench.toml"))] }
}

fn benches(c: &mut Criterion) {
    let stage = fixture::large_stage(APPS, RELEASES);
    let same = fixture::applied(&stage);
    let before = fixture::applied(&previous(&stage));
    let options = PlanOptions::default();
    assert!(plan(&stage, &same, &options).unwrap().is_empty());
    assert_eq!(plan(&stage, &before, &options).unwrap().apps().len(), APPS);

    let mut g = c.benchmark_group("plan 1000 apps x 20 releases");
    g.sample_size(20);
    g.bench_function("planner: no change", |b| b.iter(|| plan(black_box(&stage), black_box(&same), &options)));
    g.bench_function("planner: all change", |b| b.iter(|| plan(black_box(&stage), black_box(&before), &options)));
    g.bench_function("planner: first deploy", |b| {
        let empty = StageState::new("bench");
        b.iter(|| plan(black_box(&stage), black_box(&empty), &options))
    });
    let changed = view(&stage, &before);
    g.bench_function("view model: all change", |b| {
        let cs = plan(&stage, &before, &options).unwrap();
        b.iter(|| StageView::build(black_box(&cs), "l", 1, None))
    });
    g.bench_function("render text: all change", |b| b.iter(|| render::text::render(black_box(&changed), false)));
    g.bench_function("render json: all change", |b| b.iter(|| render::json::render(black_box(&changed))));
    g.bench_function("render markdown: all change", |b| b.iter(|| render::markdown::render(black_box(&changed))));
    let unchanged = view(&stage, &same);
    g.bench_function("render text: no change", |b| b.iter(|| render::text::render(black_box(&unchanged), false)));
    g.finish();
}

/// Write a project with `stage` as its stage file and `recorded` as its state (none: a
/// stage never applied).
fn write_project(dir: &Path, stage: &Stage, recorded: Option<&StageState>) {
    let write = |rel: &str, text: &str| {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("ferry.toml", "[project]\nname = \"bench\"\n\n[state]\nbackend = \"local\"\n");
    write("stages/bench.toml", &fixture::stage_toml(stage));
    if let Some(recorded) = recorded {
        write(".ferry/state/bench.json", &serde_json::to_string_pretty(recorded).unwrap());
    }
}

fn generate(dir: &Path) {
    let stage = fixture::large_stage(APPS, RELEASES);
    write_project(&dir.join("no-change"), &stage, Some(&fixture::applied(&stage)));
    write_project(&dir.join("all-change"), &stage, Some(&fixture::applied(&previous(&stage))));
    write_project(&dir.join("no-state"), &stage, None);
    eprintln!(
        "wrote {0}/no-change, {0}/all-change and {0}/no-state ({APPS} apps × {RELEASES} releases)",
        dir.display()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--generate") {
        generate(Path::new(args.get(i + 1).expect("--generate DIR")));
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
