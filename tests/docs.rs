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

/// The README's Layout names every module of `src/` and every file and folder of `src/probe/`,
/// and everything it names exists: a new protocol folder or a moved module shows up here.
#[test]
fn the_layout_section_matches_the_tree() {
    let readme = readme();
    let layout = readme
        .split("\n## Layout\n")
        .nth(1)
        .expect("a Layout section");
    let tree = layout
        .split("```")
        .nth(1)
        .expect("the Layout section's tree");
    let named: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.starts_with("src/"))
        .collect();
    assert!(named.len() > 20, "{named:?}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for path in &named {
        assert!(
            root.join(path).exists(),
            "the Layout names {path}, which does not exist"
        );
    }
    for dir in ["src", "src/probe"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = if entry.path().is_dir() {
                format!("{dir}/{name}/")
            } else {
                format!("{dir}/{name}")
            };
            // A folder is named, or files in it are.
            assert!(
                named.iter().any(|n| n.starts_with(&path)),
                "the Layout lacks {path}"
            );
        }
    }
}
