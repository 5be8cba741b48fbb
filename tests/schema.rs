//! Integration tests: the JSON Schemas in `schema/` are what the code generates, document
//! every optional key's default, and — checked by an independent validator (Python
//! `jsonschema`) — accept every example file and reject a misspelled key.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::python::python_venv;
use crate::support::{repo_root, TestProject};

/// (kind for `ferry schema`, checked-in file).
const SCHEMAS: [(&str, &str); 2] = [("project", "schema/ferry.schema.json"), ("stage", "schema/stage.schema.json")];

#[test]
fn checked_in_schemas_match_the_code() {
    for (kind, file) in SCHEMAS {
        let run = TestProject::empty().run(&["schema", kind]);
        run.expect_code(0);
        let checked_in = std::fs::read_to_string(repo_root().join(file)).unwrap_or_default();
        assert!(
            run.stdout() == checked_in,
            "{file} is out of date with the Rust types in src/config/file.rs; regenerate it:\n\n    \
             ferry schema {kind} > {file}\n\n(from a checkout: `cargo run -q -- schema {kind} > {file}`)\n"
        );
    }
}

/// Every optional key tells editors its default: a `default` value, or a description
/// saying what the default is (for derived ones such as "the project name") or that it has
/// none (keys required by another key's value, such as an ecs runtime's `region`).
#[test]
fn every_optional_key_documents_its_default() {
    fn visit(name: &str, schema: &Value, missing: &mut Vec<String>) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (key, prop) in props {
            let described = prop.get("description").and_then(Value::as_str).is_some_and(|d| !d.is_empty());
            let defaulted = prop.get("default").is_some()
                || prop
                    .get("description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.contains("Default:") || d.contains("no default"));
            if !described || (!required.contains(&key.as_str()) && !defaulted) {
                missing.push(format!("{name}.{key}"));
            }
        }
    }
    let mut missing = Vec::new();
    for (_, file) in SCHEMAS {
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(repo_root().join(file)).unwrap()).unwrap();
        visit(file, &schema, &mut missing);
        for (name, def) in schema["definitions"].as_object().unwrap() {
            visit(&format!("{file}#{name}"), def, &mut missing);
        }
    }
    assert!(missing.is_empty(), "keys without a description or a documented default: {missing:#?}");
}

/// Converts TOML files to JSON and validates each against a schema. Arguments: pairs of
/// schema path and TOML path. Prints `{"toml path": ["error", …]}` as JSON.
const VALIDATE: &str = r#"
import json, sys
try:
    import tomllib
except ModuleNotFoundError:
    import tomli as tomllib
import jsonschema

args = sys.argv[1:]
report = {}
for schema_path, toml_path in zip(args[0::2], args[1::2]):
    with open(schema_path) as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    with open(toml_path, "rb") as f:
        doc = tomllib.load(f)
    validator = jsonschema.Draft7Validator(schema)
    report[toml_path] = sorted(
        "/".join(str(p) for p in e.absolute_path) + ": " + e.message for e in validator.iter_errors(doc)
    )
print(json.dumps(report))
"#;

fn validate_with_python(pairs: &[(PathBuf, PathBuf)]) -> serde_json::Map<String, Value> {
    let venv = python_venv(&["jsonschema==4.23.0", "tomli==2.0.1; python_version < '3.11'"]);
    let args: Vec<String> =
        pairs.iter().flat_map(|(s, t)| [s.display().to_string(), t.display().to_string()]).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = venv.run_script(VALIDATE, &args);
    assert!(out.status.success(), "the validator script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    match serde_json::from_slice(&out.stdout).expect("the script prints JSON") {
        Value::Object(map) => map,
        other => panic!("unexpected report {other}"),
    }
}

/// Every TOML file of every example project, with the schema it must satisfy. (HCL stages
/// are checked through the TOML versions they mirror.)
fn example_files() -> Vec<(PathBuf, PathBuf)> {
    let root = repo_root();
    let mut pairs = Vec::new();
    let mut projects: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("ferry.toml").is_file())
        .collect();
    projects.sort();
    for project in projects {
        pairs.push((root.join("schema/ferry.schema.json"), project.join("ferry.toml")));
        let mut stages: Vec<PathBuf> = std::fs::read_dir(project.join("stages"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        stages.sort();
        pairs.extend(stages.into_iter().map(|s| (root.join("schema/stage.schema.json"), s)));
    }
    pairs
}

#[test]
fn every_example_file_satisfies_the_schema() {
    let pairs = example_files();
    assert!(pairs.len() >= 7, "expected the quickstart and ecs examples, found {pairs:?}");
    let report = validate_with_python(&pairs);
    assert_eq!(report.len(), pairs.len());
    let failures: Vec<String> = report
        .iter()
        .filter(|(_, errors)| !errors.as_array().unwrap().is_empty())
        .map(|(file, errors)| format!("{file}: {errors}"))
        .collect();
    assert!(failures.is_empty(), "example files rejected by the schema:\n{}", failures.join("\n"));
}

#[test]
fn the_schema_rejects_misspelled_keys_and_bad_values() {
    let project = TestProject::from_fixture("python-web");
    let stage = project.read("stages/development.toml");
    assert!(stage.contains("healthy_threshold = 2"));
    project.write("typo.toml", &stage.replace("healthy_threshold = 2", "healthy_treshold = 2"));
    project.write("typo-project.toml", &project.read("ferry.toml").replace("stages = ", "stage = "));
    project.write(
        "bad-values.toml",
        &stage
            .replace("port = 18080", "port = 70000")
            .replace("sha256:08a9", "sha256:08A9")
            .replace("[apps.web.env]", "[apps.web.secrets]\nTOKEN = \"hunter2\"\n\n[apps.web.env]"),
    );
    let schema = |name: &str| repo_root().join("schema").join(name);
    let at = |name: &str| project.path().join(name);
    let report = validate_with_python(&[
        (schema("stage.schema.json"), at("typo.toml")),
        (schema("ferry.schema.json"), at("typo-project.toml")),
        (schema("stage.schema.json"), at("bad-values.toml")),
    ]);
    let errors = |name: &str| -> Vec<String> {
        report[&at(name).display().to_string()]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        errors("typo.toml"),
        ["apps/web/health: Additional properties are not allowed ('healthy_treshold' was unexpected)"]
    );
    assert_eq!(errors("typo-project.toml").len(), 2, "{:?}", errors("typo-project.toml"));
    assert!(errors("typo-project.toml").iter().any(|e| e.contains("'stage' was unexpected")));
    let bad = errors("bad-values.toml");
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(bad.iter().any(|e| e.starts_with("apps/web/port: 70000 is greater than the maximum")), "{bad:?}");
    assert!(bad.iter().any(|e| e.starts_with("apps/web/releases/1: 'sha256:08A9")), "{bad:?}");
    assert!(bad.iter().any(|e| e.starts_with("apps/web/secrets/TOKEN: 'hunter2' does not match")), "{bad:?}");
}
