//! Rendering plans: a changeset becomes one view model ([`view`]), which each format reads:
//! [`text`] for people at a terminal, [`json`] for machines, [`markdown`] for pull-request
//! comments, [`dot`] for `ferry graph`.

pub mod dot;
pub mod escape;
pub mod json;
pub mod markdown;
pub mod table;
pub mod text;
pub mod view;

pub use escape::{escape_controls, escape_line};
pub use view::{Action, AppView, Counts, OperationView, PlanView, StageView, JSON_FORMAT_VERSION};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixture::{app, applied, stage};
    use crate::plan::{plan, PlanOptions};

    fn view_of(desired: &crate::config::Stage, recorded: &crate::state::StageState) -> PlanView {
        let cs = plan(desired, recorded, &PlanOptions::default()).unwrap();
        PlanView { stages: vec![StageView::build(&cs, &recorded.lineage, recorded.serial, None)] }
    }

    #[test]
    fn an_empty_plan_says_so_in_every_format() {
        let s = stage("dev", [app("web", 1)]);
        let v = view_of(&s, &applied(&s));
        assert_eq!(text::render(&v, true), "No changes. Stage `dev` matches recorded state.\n");
        assert!(markdown::render(&v).starts_with("**ferry plan:** No changes. Stage `dev` matches recorded state."));
        assert!(json::render(&v).contains("\"text\": \"No changes. Stage `dev` matches recorded state.\""));
    }

    #[test]
    fn counts_open_every_format_and_colour_is_opt_in() {
        let mut s = stage("dev", [app("web", 1), app("api", 1)]);
        let state = applied(&s);
        s.apps.get_mut("web").unwrap().scale = 3;
        s.apps.insert("cron".into(), app("cron", 1));
        let v = view_of(&s, &state);
        let line = "Plan: 0 to deploy, 1 to scale, 1 to add, 0 to remove.";
        assert!(text::render(&v, false).starts_with(&format!("{line}\n")));
        assert!(!text::render(&v, false).contains('\u{1b}'));
        assert!(text::render(&v, true).contains('\u{1b}'));
        assert!(markdown::render(&v).starts_with(&format!("**ferry plan:** {line}")));
        let dot = dot::render(&v.stages[0]);
        assert!(dot.contains("\"cron/register\" -> \"cron/deploy\";"), "{dot}");
    }
}
