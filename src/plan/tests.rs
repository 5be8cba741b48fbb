//! Planner tests: each kind of change gives the operations and edges it should, and the
//! properties that hold for any stage and state (proptest).

use proptest::prelude::*;

use super::fixture::{app, applied, apply, digest, stage};
use super::*;
use crate::config::{ReleaseTask, RunOn, Stage};
use crate::state::StageState;

fn ids(cs: &Changeset) -> Vec<String> {
    cs.operations.iter().map(Operation::id).collect()
}

fn has_edge(cs: &Changeset, from: &str, to: &str) -> bool {
    cs.edges.iter().any(|e| e.from == from && e.to == to)
}

fn task(name: &str, run_on: RunOn) -> ReleaseTask {
    ReleaseTask {
        name: name.into(),
        command: vec![name.into()],
        timeout: crate::config::Duration::from_millis(1000),
        run_on,
    }
}

fn plan_ok(desired: &Stage, recorded: &StageState) -> Changeset {
    plan(desired, recorded, &PlanOptions::default()).unwrap()
}

/// The deploy operation's description and the kind it will be recorded as.
fn deploy_label(cs: &Changeset) -> (String, Option<crate::state::DeploymentKind>) {
    cs.operations
        .iter()
        .find_map(|op| match op {
            Operation::Deploy { description, record_as, .. } => Some((description.clone(), *record_as)),
            _ => None,
        })
        .expect("a deploy")
}

#[test]
fn going_back_to_an_earlier_deployment_is_a_rollback_and_going_forward_again_is_not() {
    let mut state = applied(&stage("dev", [app("web", 1)])); // v1: release 1
    let two = stage("dev", [app("web", 2)]);
    apply(&two, &mut state); // v2: release 2
    let mut back = two.clone();
    back.apps.get_mut("web").unwrap().active = Some(1);
    let (description, kind) = deploy_label(&plan_ok(&back, &state));
    assert!(description.starts_with("Rollback to v1 (release 1"), "{description}");
    assert_eq!(kind, Some(crate::state::DeploymentKind::Rollback));
    apply(&back, &mut state); // v3: back on release 1
    let (description, kind) = deploy_label(&plan_ok(&two, &state));
    assert!(description.starts_with("Activate release 2"), "{description}");
    assert_eq!(kind, None);
}

#[test]
fn a_new_app_gets_the_full_chain() {
    let mut web = app("web", 2);
    web.config.release_tasks = vec![task("migrate", RunOn::Release), task("seed", RunOn::EveryDeploy)];
    let s = stage("dev", [web]);
    let cs = plan_ok(&s, &StageState::new("dev"));
    assert_eq!(ids(&cs), ["web/verify", "web/register", "web/task/migrate", "web/task/seed", "web/deploy"]);
    assert!(has_edge(&cs, "web/task/seed", "web/deploy"));
    let Operation::Deploy { kind, from, description, .. } = &cs.operations[4] else { panic!() };
    assert_eq!((*kind, from.is_none()), (DeployKind::Activate, true));
    assert!(description.starts_with("Activate release 2 (sha256:"), "{description}");
}

#[test]
fn no_changes_after_applying_and_reordering_changes_nothing() {
    let s = stage("dev", [app("web", 2), app("api", 1)]);
    let state = applied(&s);
    assert!(plan_ok(&s, &state).is_empty());
    // The model of a reordered file is the same model: maps are sorted.
    let reordered = stage("dev", [app("api", 1), app("web", 2)]);
    assert!(plan_ok(&reordered, &state).is_empty());
}

#[test]
fn scale_only_is_a_scale() {
    let mut s = stage("dev", [app("web", 1)]);
    let state = applied(&s);
    s.apps.get_mut("web").unwrap().scale = 4;
    let cs = plan_ok(&s, &state);
    assert_eq!(ids(&cs), ["web/scale"]);
    let Operation::Scale { description, .. } = &cs.operations[0] else { panic!() };
    assert_eq!(description, "Scale 1 → 4");
}

#[test]
fn config_change_redeploys_the_same_release_running_only_every_deploy_tasks() {
    let mut web = app("web", 1);
    web.config.release_tasks = vec![task("migrate", RunOn::Release), task("warm", RunOn::EveryDeploy)];
    web.config.env.insert("RAILS_ENV".into(), "staging".into());
    let mut s = stage("dev", [web]);
    let state = applied(&s);
    let w = s.apps.get_mut("web").unwrap();
    w.config.env.insert("RAILS_ENV".into(), "production".into());
    w.config.env.insert("FEATURE_X".into(), "1".into());
    w.scale = 2;
    let cs = plan_ok(&s, &state);
    assert_eq!(ids(&cs), ["web/verify", "web/register", "web/task/warm", "web/deploy"]);
    let Operation::Deploy { kind, description, .. } = &cs.operations[3] else { panic!() };
    assert_eq!(*kind, DeployKind::Config);
    assert_eq!(description, "Config change: +FEATURE_X ~RAILS_ENV; scale 1 → 2");
}

#[test]
fn activation_runs_release_tasks() {
    let mut web = app("web", 2);
    web.config.release_tasks = vec![task("migrate", RunOn::Release)];
    web.active = Some(1);
    let mut s = stage("dev", [web]);
    let state = applied(&s);
    s.apps.get_mut("web").unwrap().active = Some(2);
    assert_eq!(ids(&plan_ok(&s, &state)), ["web/verify", "web/register", "web/task/migrate", "web/deploy"]);
}

#[test]
fn depends_on_orders_deploys_across_apps_even_through_unchanged_apps() {
    let mut web = app("web", 1);
    web.depends_on = vec!["api".into()];
    let mut api = app("api", 1);
    api.depends_on = vec!["db".into()];
    let mut s = stage("dev", [web, api, app("db", 1)]);
    let state = applied(&s);
    for name in ["web", "db"] {
        s.apps.get_mut(name).unwrap().config.cpu = 512;
    }
    let cs = plan_ok(&s, &state);
    assert!(has_edge(&cs, "db/deploy", "web/deploy"), "{:?}", cs.edges);
    let cs = plan_ok(&s, &StageState::new("dev"));
    assert!(has_edge(&cs, "api/deploy", "web/deploy") && has_edge(&cs, "db/deploy", "api/deploy"));
    assert!(!has_edge(&cs, "db/deploy", "web/deploy"), "only direct edges when every app changes");
}

#[test]
fn removal_needs_allow_remove_and_names_the_apps() {
    let s = stage("dev", [app("web", 1), app("old", 1)]);
    let state = applied(&s);
    let mut s2 = stage("dev", [app("web", 1), app("idle", 1)]);
    s2.apps.get_mut("idle").unwrap().active = None;
    let idle_state = {
        let mut st = state.clone();
        apply(&stage("dev", [app("web", 1), app("old", 1), app("idle", 1)]), &mut st);
        st
    };
    let err = plan(&s2, &idle_state, &PlanOptions::default()).unwrap_err().to_string();
    assert!(err.contains("`idle` (declared with no `active` release), `old` (no longer in the stage file)"), "{err}");
    assert!(err.contains("--allow-remove"), "{err}");
    let cs = plan(&s2, &idle_state, &PlanOptions { allow_remove: true }).unwrap();
    assert_eq!(ids(&cs), ["idle/remove", "old/remove"]);
}

#[test]
fn a_rebound_release_id_is_refused() {
    let mut s = stage("dev", [app("web", 1)]);
    let state = applied(&s);
    s.apps.get_mut("web").unwrap().releases.insert(1, digest("other", 1));
    let err = plan(&s, &state, &PlanOptions::default()).unwrap_err().to_string();
    assert!(err.contains("release 1 of app `web`") && err.contains("immutable"), "{err}");
}

#[test]
fn old_revisions_are_pruned_after_the_deploy_that_retires_them() {
    let mut s = stage("dev", [app("web", 1)]);
    let mut state = applied(&s);
    for cpu in 1..=KEEP_REVISIONS as u32 + 1 {
        s.apps.get_mut("web").unwrap().config.cpu = 256 + cpu;
        apply(&s, &mut state);
    }
    let web = &state.apps["web"];
    assert_eq!(web.revisions.len(), KEEP_REVISIONS + 1, "the active one and KEEP inactive");
    assert!(plan_ok(&s, &state).is_empty());
    s.apps.get_mut("web").unwrap().config.cpu = 100;
    let cs = plan_ok(&s, &state);
    assert_eq!(ids(&cs).last().unwrap(), "web/prune");
    assert!(has_edge(&cs, "web/deploy", "web/prune"));
}

// ---- properties -------------------------------------------------------------------------

const NAMES: [&str; 5] = ["api", "cron", "db", "web", "worker"];

fn arb_app(index: usize) -> impl Strategy<Value = Option<crate::config::App>> {
    let name = NAMES[index];
    (
        any::<bool>(),
        prop::option::of(1u64..=3),
        0u32..4,
        prop::collection::btree_map("[A-C]", "[xy]", 0..3),
        prop::sample::select(vec![256u32, 512]),
        0usize..3,
        prop::collection::vec(any::<bool>(), index),
        prop::bool::ANY,
    )
        .prop_map(move |(present, active, scale, env, cpu, tasks, deps, sensitive)| {
            if !present {
                return None;
            }
            let mut a = app(name, 3);
            a.active = active;
            a.scale = scale;
            a.config.env = env;
            a.config.cpu = cpu;
            if sensitive {
                a.config.sensitive_env.insert("A".into());
            }
            let all = [task("migrate", RunOn::Release), task("warm", RunOn::EveryDeploy)];
            a.config.release_tasks = all.into_iter().take(tasks).collect();
            // Only on apps earlier in NAMES: acyclic, as validation guarantees.
            a.depends_on = deps.iter().enumerate().filter(|(_, d)| **d).map(|(i, _)| NAMES[i].to_string()).collect();
            Some(a)
        })
}

fn arb_stage() -> impl Strategy<Value = Stage> {
    (arb_app(0), arb_app(1), arb_app(2), arb_app(3), arb_app(4)).prop_map(|(a, b, c, d, e)| {
        let apps: Vec<_> = [a, b, c, d, e].into_iter().flatten().collect();
        let present: Vec<String> = apps.iter().map(|a| a.name.clone()).collect();
        let mut s = stage("dev", apps);
        for a in s.apps.values_mut() {
            a.depends_on.retain(|d| present.contains(d));
        }
        s
    })
}

/// A recorded state: the result of applying zero to three earlier stages.
fn arb_state() -> impl Strategy<Value = StageState> {
    prop::collection::vec(arb_stage(), 0..3).prop_map(|history| {
        let mut state = StageState::new("dev");
        for s in &history {
            apply(s, &mut state);
        }
        state
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn recording_a_plan_then_planning_again_plans_nothing(desired in arb_stage(), recorded in arb_state()) {
        let cs = plan(&desired, &recorded, &PlanOptions { allow_remove: true }).unwrap();
        let mut state = recorded.clone();
        for op in cs.apply_order().unwrap() {
            record(op, &mut state, &Outcome::succeeded(super::fixture::fixed_time()));
        }
        let again = plan(&desired, &state, &PlanOptions::default()).unwrap();
        prop_assert!(again.is_empty(), "second plan: {:?}", ids(&again));
    }

    #[test]
    fn the_graph_is_acyclic_and_the_order_respects_every_edge(desired in arb_stage(), recorded in arb_state()) {
        let cs = plan(&desired, &recorded, &PlanOptions { allow_remove: true }).unwrap();
        prop_assert!(!petgraph::algo::is_cyclic_directed(&cs.graph().unwrap()));
        let order: Vec<String> = cs.apply_order().unwrap().iter().map(|o| o.id()).collect();
        prop_assert_eq!(order.len(), cs.operations.len());
        for e in &cs.edges {
            let (a, b) = (order.iter().position(|i| *i == e.from), order.iter().position(|i| *i == e.to));
            prop_assert!(a < b, "{} must come before {}", e.from, e.to);
        }
        // A saved plan holds the changeset exactly.
        let json = serde_json::to_string(&cs).unwrap();
        prop_assert_eq!(serde_json::from_str::<Changeset>(&json).unwrap(), cs);
    }
}

mod drift {
    use super::*;
    use crate::runtime::live::{DefinitionChange, LiveService, LiveStage};
    use crate::runtime::RevisionId;

    /// What runs for `web`: present with `desired` tasks and `changes` to its definition.
    fn live(desired: u32, changes: &[(&str, &str, &str)]) -> LiveStage {
        let service = LiveService {
            app: "web".into(),
            present: true,
            revision: Some(RevisionId("web:9".into())),
            desired,
            changes: changes
                .iter()
                .map(|(f, r, l)| DefinitionChange {
                    field: f.to_string(),
                    recorded: r.to_string(),
                    live: l.to_string(),
                })
                .collect(),
            running: None,
            cause: None,
        };
        LiveStage { services: [("web".to_string(), service)].into() }
    }

    fn refreshed(desired: &Stage, state: &StageState, live: &LiveStage) -> Changeset {
        plan_refreshed(desired, state, live, &PlanOptions::default()).unwrap()
    }

    #[test]
    fn what_runs_as_recorded_is_no_change() {
        let s = stage("dev", [app("web", 1)]);
        let cs = refreshed(&s, &applied(&s), &live(1, &[]));
        assert!(cs.is_empty() && cs.drift.is_empty() && cs.refreshed, "{cs:?}");
        assert!(!plan_ok(&s, &applied(&s)).refreshed);
    }

    #[test]
    fn a_changed_definition_is_deployed_back_with_the_recorded_release_and_config() {
        let s = stage("dev", [app("web", 1)]);
        let state = applied(&s);
        let cs = refreshed(&s, &state, &live(3, &[("container.web.environment.DEBUG", "", "1")]));
        assert_eq!(ids(&cs), ["web/verify", "web/register", "web/deploy"]);
        assert!(has_edge(&cs, "web/register", "web/deploy"));
        let Operation::Deploy { from, to, description, kind, .. } = &cs.operations[2] else { panic!() };
        let active = state.apps["web"].active.as_ref().unwrap();
        assert_eq!((to.release, &to.config, to.scale, *kind), (active.release, &active.config, 1, DeployKind::Config));
        assert_eq!(from.as_ref(), Some(&Running { scale: active.scale, ..to.clone() }));
        assert_eq!(description, "Revert drift: desired count 1 → 3; task definition: 1 field differs");
        assert_eq!(cs.drift[0].revision.as_deref(), Some("web:9"));
        // Applied, the recorded state is what it was: the next refresh against the same
        // (now reverted) service plans nothing.
        let mut after = state.clone();
        apply(&s, &mut after);
        assert!(refreshed(&s, &after, &live(1, &[])).is_empty());
    }

    #[test]
    fn a_changed_count_alone_is_scaled_back_and_a_file_scale_starts_from_the_live_count() {
        let s = stage("dev", [app("web", 1)]);
        let state = applied(&s);
        let cs = refreshed(&s, &state, &live(4, &[]));
        assert_eq!(ids(&cs), ["web/scale"]);
        let Operation::Scale { from, to, description, .. } = &cs.operations[0] else { panic!() };
        assert_eq!((*from, *to), (4, 1));
        assert!(description.starts_with("Revert drift: desired count 4 → 1 (release 1"), "{description}");

        let mut bigger = s.clone();
        bigger.apps.get_mut("web").unwrap().scale = 2;
        let cs = refreshed(&bigger, &state, &live(4, &[]));
        assert_eq!(ids(&cs), ["web/scale"]);
        let Operation::Scale { from, to, .. } = &cs.operations[0] else { panic!() };
        assert_eq!((*from, *to), (4, 2));
        // A definition drift with a file scale: one deploy at the file's count.
        let cs = refreshed(&bigger, &state, &live(1, &[("memory", "512", "1024")]));
        assert_eq!(ids(&cs), ["web/verify", "web/register", "web/deploy"]);
        let Operation::Deploy { to, .. } = &cs.operations[2] else { panic!() };
        assert_eq!(to.scale, 2);
    }

    #[test]
    fn a_missing_service_is_deployed_and_a_file_change_deploys_anyway() {
        let s = stage("dev", [app("web", 1)]);
        let state = applied(&s);
        let mut gone = live(0, &[]);
        gone.services.get_mut("web").unwrap().present = false;
        let cs = refreshed(&s, &state, &gone);
        assert_eq!(ids(&cs), ["web/verify", "web/register", "web/deploy"]);
        assert_eq!(cs.drift[0].summary(), "service missing");
        assert_eq!(cs.drift[0].tasks, None, "the runtime counts no tasks");

        let two = stage("dev", [app("web", 2)]);
        let cs = refreshed(&two, &state, &live(3, &[("cpu", "256", "512")]));
        assert_eq!(ids(&cs), ids(&plan_ok(&two, &state)), "the file's deploy puts it back");
        assert_eq!(cs.drift.len(), 1, "and the drift is still shown");
    }

    #[test]
    fn a_service_the_local_agent_lost_is_tasks_not_running_with_the_cause() {
        let mut s = stage("dev", [app("web", 1)]);
        s.apps.get_mut("web").unwrap().scale = 2;
        let state = applied(&s);
        let mut gone = live(0, &[]);
        let web = gone.services.get_mut("web").unwrap();
        (web.present, web.running, web.cause) = (false, Some(0), Some("the local agent is not running".into()));
        let cs = refreshed(&s, &state, &gone);
        assert_eq!(ids(&cs), ["web/verify", "web/register", "web/deploy"]);
        assert_eq!(cs.drift[0].summary(), "0 of 2 tasks running");
        assert_eq!(cs.drift[0].cause.as_deref(), Some("the local agent is not running"));
        let Operation::Deploy { description, .. } = &cs.operations[2] else { panic!() };
        assert_eq!(description, "Revert drift: 0 of 2 tasks running");

        // An app recorded at scale 0 runs nothing by design: nothing is missed.
        let mut idle = s.clone();
        idle.apps.get_mut("web").unwrap().scale = 0;
        assert!(refreshed(&idle, &applied(&idle), &gone).is_empty());
    }

    #[test]
    fn sensitive_env_values_are_masked() {
        let mut s = stage("dev", [app("web", 1)]);
        s.apps.get_mut("web").unwrap().config.sensitive_env.insert("TOKEN".into());
        let state = applied(&s);
        let cs = refreshed(&s, &state, &live(1, &[("container.web.environment.TOKEN", "abc", "xyz")]));
        let c = &cs.drift[0].changes[0];
        assert_eq!((c.recorded.as_str(), c.live.as_str()), ("(sensitive)", "(sensitive, changed)"));
    }

    #[test]
    fn service_settings_are_counted_apart_and_planned_back_as_a_deploy() {
        let s = stage("dev", [app("web", 1)]);
        let state = applied(&s);
        let settings = [("service.tags.team", "shop", "ops"), ("service.enableExecuteCommand", "true", "false")];
        let cs = refreshed(&s, &state, &live(1, &settings));
        let d = &cs.drift[0];
        assert_eq!(d.summary(), "service: 2 settings differ");
        // The service runs the recorded revision: no live revision to name.
        assert_eq!(d.revision, None);
        assert!(cs.operations.iter().any(|op| matches!(op, Operation::Deploy { .. })), "{:?}", cs.operations);
        let both = [("container.web.image", "a", "b"), settings[0]];
        let cs = refreshed(&s, &state, &live(1, &both));
        assert_eq!(cs.drift[0].summary(), "task definition: 1 field differs; service: 1 setting differs");
        assert_eq!(cs.drift[0].revision.as_deref(), Some("web:9"));
    }
}
