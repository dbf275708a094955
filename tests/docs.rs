//! The README stays true to the code: every failure class is documented with its meaning, and
//! the README starts with the two commands CI and new users run.

use mailprobe::probe::classify::FailureClass;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

#[test]
fn every_failure_class_is_documented_with_its_description() {
    let readme = readme();
    let rows: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
    for class in FailureClass::ALL {
        let row = format!("| `{}` | {} |", class.as_str(), class.description());
        assert!(rows.contains(&row.as_str()), "README lacks the row:\n{row}");
    }
}

#[test]
fn readme_opens_with_the_demo_and_test_commands_and_ci_runs_the_latter() {
    let readme = readme();
    let first: Vec<&str> = readme.lines().take(6).collect();
    assert!(
        first.iter().any(|l| l.starts_with("sudo scripts/demo")),
        "{first:?}"
    );
    assert!(
        first.iter().any(|l| l.starts_with("sudo scripts/test")),
        "{first:?}"
    );
    let ci = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/run")).unwrap();
    assert!(ci.lines().any(|l| l.trim() == "scripts/test"), "{ci}");
}
