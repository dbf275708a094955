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

/// `mailprobe <args>`'s standard output.
fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(args)
        .output()
        .expect("run mailprobe");
    assert!(out.status.success(), "mailprobe {args:?}");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The lines of a `-h` section ("Commands:", "Options:", "Arguments:").
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_command_table_lists_every_command_flag_argument_and_value() {
    let readme = readme();
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `mailprobe "))
        .collect();
    let row_of = |command: &str| -> &str {
        rows.iter()
            .find(|r| r.starts_with(&format!("| `mailprobe {command} ")))
            .unwrap_or_else(|| panic!("no README row for `mailprobe {command}`"))
    };
    let top = help(&["-h"]);
    let commands: Vec<&str> = section(&top, "Commands:")
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 4, "{top}");
    for command in &commands {
        let row = row_of(command);
        let help = help(&[command, "-h"]);
        for line in section(&help, "Options:") {
            let Some(flag) = line
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .map(|w| w.trim_end_matches(','))
            else {
                continue;
            };
            if flag == "--help" {
                continue;
            }
            assert!(row.contains(flag), "{command} {flag} missing from:\n{row}");
            if let Some(values) = line
                .split("[possible values: ")
                .nth(1)
                .and_then(|v| v.split(']').next())
            {
                for v in values.split(", ") {
                    assert!(row.contains(v), "{command} {flag} {v} missing from:\n{row}");
                }
            }
        }
        for arg in section(&help, "Arguments:") {
            let name = arg.split_whitespace().next().unwrap_or_default();
            let name = name.trim_matches(|c| matches!(c, '[' | ']' | '<' | '>' | '.'));
            // `[TARGETS]...` reads `[TARGET...]` in the table.
            let singular = name.trim_end_matches('S');
            assert!(
                row.contains(singular),
                "{command} {name} missing from:\n{row}"
            );
        }
    }
    // And no row for a command that does not exist.
    for row in &rows {
        let command = row["| `mailprobe ".len()..]
            .split([' ', '`'])
            .next()
            .unwrap_or_default();
        assert!(commands.contains(&command), "stale README row: {row}");
    }
}

/// The names of the targets the shipped probes.toml probes, in its order.
fn shipped_targets() -> Vec<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/probes.toml")).unwrap();
    let doc: toml::Table = text.parse().expect("probes.toml is TOML");
    doc["target"]
        .as_array()
        .expect("[[target]] tables")
        .iter()
        .map(|t| t["name"].as_str().expect("a name").to_string())
        .collect()
}

#[test]
fn the_sample_probe_output_is_the_shipped_configs_every_target() {
    let readme = readme();
    let sample: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("`mailprobe probe` on the shipped `probes.toml`"))
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    let targets = shipped_targets();
    assert!(targets.len() >= 8, "{targets:?}");
    let rows: Vec<&str> = sample
        .iter()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        rows, targets,
        "one table row per target, in the file's order"
    );
    for t in &targets {
        let detail = format!("{t}: ");
        assert!(
            sample.iter().any(|l| l.starts_with(&detail)),
            "no detail line for {t}"
        );
    }
}
