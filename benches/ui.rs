//! The dashboard's overview of a large project: 6 stages of 200 apps each (5 releases, a
//! recorded deployment per app), on the local runtime with no agent running.
//!
//! `cargo bench --bench ui` measures, with criterion:
//! - `GET /`: the whole request through the router (`tower::ServiceExt::oneshot`): loading
//!   the six stage files and states, observing, building the view model, rendering HTML;
//! - `GET /api/stages`: the same as JSON;
//! - `render`: building the view model and rendering the page from loaded data only.
//!
//! Results are in docs/PERFORMANCE.md; the aim is under 50 ms for `GET /`.

use std::hint::black_box;

use axum::body::Body;
use axum::http::Request;
use criterion::Criterion;
use ferry::config::{self, Project};
use ferry::plan::fixture;
use ferry::state::open_store;
use ferry::ui::model::{Loaded, OverviewView};
use ferry::ui::{pages, router, UiState};
use http_body_util::BodyExt;
use tower::ServiceExt;

const STAGES: [&str; 6] = ["dev", "qa", "staging", "prod-eu", "prod-us", "prod-ap"];
const APPS: usize = 200;
const RELEASES: u64 = 5;

/// The project, written under `dir`: a pipeline of three steps over the six stages.
fn project(dir: &std::path::Path) -> Project {
    std::fs::create_dir_all(dir.join("stages")).unwrap();
    std::fs::write(
        dir.join("ferry.toml"),
        "[project]\nname = \"bench\"\n\n[[pipeline.steps]]\nname = \"development\"\nstages = [\"dev\", \"qa\"]\n\n\
         [[pipeline.steps]]\nname = \"staging\"\nstages = [\"staging\"]\nrequired_checks = [\"ci/tests\"]\n\n\
         [[pipeline.steps]]\nname = \"production\"\nstages = [\"prod-eu\", \"prod-us\", \"prod-ap\"]\n",
    )
    .unwrap();
    let stages: Vec<_> = STAGES
        .iter()
        .map(|name| {
            let mut stage = fixture::large_stage(APPS, RELEASES);
            stage.name = name.to_string();
            std::fs::write(dir.join(format!("stages/{name}.toml")), fixture::stage_toml(&stage)).unwrap();
            stage
        })
        .collect();
    let project = config::load_project(dir).unwrap();
    let store = open_store(&project).unwrap();
    for stage in &stages {
        let mut state = fixture::applied(stage);
        state.serial = 0;
        store.write(&mut state).unwrap();
    }
    project
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let app = router(UiState::new(project.clone(), None));
    let runtime = &rt;
    let get = |path: &'static str| {
        let app = app.clone();
        move || {
            runtime.block_on(async {
                let response = app.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
                assert!(response.status().is_success());
                response.into_body().collect().await.unwrap().to_bytes().len()
            })
        }
    };
    let page = get("/")();
    assert!(page > 100_000, "the page holds every app ({page} bytes)");

    let loaded = Loaded::read(&project).unwrap();
    let observed = rt.block_on(ferry::ui::model::observe_all(&loaded));
    assert_eq!(loaded.stages.iter().map(|s| s.apps.len()).sum::<usize>(), STAGES.len() * APPS);

    let mut g = c.benchmark_group("ui overview 6 stages x 200 apps");
    g.sample_size(20);
    g.bench_function("GET /", |b| b.iter(get("/")));
    g.bench_function("GET /api/stages", |b| b.iter(get("/api/stages")));
    g.bench_function("render (loaded data)", |b| {
        b.iter(|| pages::render_overview(&OverviewView::build(black_box(&loaded), &observed)).into_string().len())
    });
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
