//! Runs `webwarden list build` as an administrator would: UT1-style
//! category folders, hosts files and domain lists in, one CSV list out, which
//! `webwarden check --strict` must load and which must decide targets as the
//! sources do.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn webwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_webwarden"))
        .args(args)
        .output()
        .expect("webwarden starts")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Returns the rows of a built list, without its `#` header.
fn rows(csv: &str) -> Vec<&str> {
    csv.lines().filter(|line| !line.starts_with('#')).collect()
}

/// The fixture sources: a UT1-style tree, a hosts file, a domain list and
/// an allow list.
struct Fixture {
    dir: tempfile::TempDir,
    ut1: String,
    hosts: String,
    domains: String,
    allow: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write_file(
            root,
            "ut1/gambling/domains",
            "bet365.com\ncasino.example\nwww.casino.example\n192.0.2.10\n# comment\nBücher.de\n",
        );
        write_file(
            root,
            "ut1/games/domains",
            "bet365.com\n4399.com\nplay.casino.example\ngames.example\n",
        );
        write_file(
            root,
            "ut1/games/urls",
            "games.example/path\nfoo.example/#p2\n",
        );
        write_file(
            root,
            "ut1/malware/domains",
            "evil.example\nbad..example\nhttp://x.example/\n198.51.100.7\n",
        );
        write_file(root, "ut1/malware/expressions", "evil[0-9]+\\.example\n");
        let hosts = write_file(
            root,
            "hosts.txt",
            "# ad servers\r\n127.0.0.1 localhost\r\n::1 localhost ip6-localhost\r\n\
             255.255.255.255 broadcasthost\r\n0.0.0.0 ads.tracker.example   # inline\r\n\
             0.0.0.0 ADS.tracker.example.\r\n\
             0.0.0.0 pixel.tracker.example metrics.tracker.example\r\n\
             0.0.0.0 casino.example\r\n0.0.0.0 www.4399.com\r\n\
             not-an-address foo.example\r\n0.0.0.0 203.0.113.9\r\n",
        );
        let domains = write_file(
            root,
            "trackers.txt",
            "tracker.example\n*.cdn.example\nstatic.cdn.example\n",
        );
        let allow = write_file(root, "allow.txt", "good.casino.example\n");
        Fixture {
            ut1: root.join("ut1").display().to_string(),
            hosts,
            domains,
            allow,
            dir,
        }
    }

    fn output_path(&self) -> PathBuf {
        self.dir.path().join("built.csv")
    }

    /// Returns the arguments that build every source into `output`.
    fn build_args(&self, output: &Path) -> Vec<String> {
        vec![
            "list".to_owned(),
            "build".to_owned(),
            self.ut1.clone(),
            format!("path={},format=hosts,category=Ads", self.hosts),
            format!("path={},category=Trackers", self.domains),
            "--allow".to_owned(),
            format!("path={},category=Company", self.allow),
            "--output".to_owned(),
            output.display().to_string(),
        ]
    }

    /// Returns the `--list` values that load the same sources in the same order.
    fn source_lists(&self) -> Vec<String> {
        let mut lists: Vec<String> = ["gambling", "games", "malware"]
            .iter()
            .map(|category| {
                format!(
                    "path={}/{category}/domains,format=domains,category={category}",
                    self.ut1
                )
            })
            .collect();
        lists.push(format!("path={},format=hosts,category=Ads", self.hosts));
        lists.push(format!("path={},category=Trackers", self.domains));
        lists.push(format!("path={},category=Company,action=allow", self.allow));
        lists
    }
}

fn build(fixture: &Fixture) -> (Output, String) {
    let output_path = fixture.output_path();
    let args = fixture.build_args(&output_path);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = webwarden(&args);
    let csv = fs::read_to_string(&output_path).unwrap_or_default();
    (output, csv)
}

/// Runs `check` over `targets` with the given `--list` values and returns
/// each verdict's action and category.
fn verdicts(lists: &[String], strict: bool, targets: &[&str]) -> Vec<(String, String)> {
    let mut args = vec!["check".to_owned()];
    if strict {
        args.push("--strict".to_owned());
    }
    for list in lists {
        args.push("--list".to_owned());
        args.push(list.clone());
    }
    args.extend(targets.iter().map(|t| t.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = webwarden(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let verdict: Value = serde_json::from_str(line).unwrap();
            let category = verdict["category"].as_str().unwrap_or("-").to_owned();
            (verdict["action"].as_str().unwrap().to_owned(), category)
        })
        .collect()
}

const TARGETS: [&str; 26] = [
    "bet365.com",
    "www.bet365.com",
    "4399.com",
    "www.4399.com",
    "casino.example",
    "www.casino.example",
    "play.casino.example",
    "good.casino.example",
    "x.good.casino.example",
    "bücher.de",
    "https://www.Bücher.de/buch",
    "evil.example",
    "games.example",
    "ads.tracker.example",
    "x.ads.tracker.example",
    "pixel.tracker.example",
    "tracker.example",
    "cdn.example",
    "a.cdn.example",
    "static.cdn.example",
    "192.0.2.10",
    "198.51.100.7",
    "203.0.113.9",
    "203.0.113.10",
    "localhost",
    "unrelated.example",
];

#[test]
fn build_writes_expected_rows() {
    let fixture = Fixture::new();
    let (output, csv) = build(&fixture);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
    let expected = [
        "(.*\\.)?4399\\.com,games",
        "(.*\\.)?bet365\\.com,gambling",
        "(.*\\.)?xn--bcher-kva\\.de,gambling",
        "(.*\\.)?good\\.casino\\.example,Company,allow",
        "(.*\\.)?casino\\.example,gambling",
        ".+\\.cdn\\.example,Trackers",
        "(.*\\.)?evil\\.example,malware",
        "(.*\\.)?games\\.example,games",
        "ads\\.tracker\\.example,Ads",
        "metrics\\.tracker\\.example,Ads",
        "pixel\\.tracker\\.example,Ads",
        "(.*\\.)?tracker\\.example,Trackers",
        "192\\.0\\.2\\.10,gambling",
        "198\\.51\\.100\\.7,malware",
        "203\\.0\\.113\\.9,Ads",
    ];
    assert_eq!(rows(&csv), expected);
    assert!(
        csv.starts_with("# Built by `webwarden list build`"),
        "{csv}"
    );
}

#[test]
fn built_list_loads_strictly_and_blocks() {
    let fixture = Fixture::new();
    let (output, _) = build(&fixture);
    assert!(output.status.success(), "{}", stderr(&output));
    let built = vec![fixture.output_path().display().to_string()];
    let targets = [
        "https://www.bet365.com/",
        "play.casino.example",
        "good.casino.example",
        "www.bücher.de",
        "localhost",
    ];
    let found = verdicts(&built, true, &targets);
    let expected = [
        ("block", "gambling"),
        ("block", "gambling"),
        ("allow", "Company"),
        ("block", "gambling"),
        ("allow", "-"),
    ];
    for ((target, (action, category)), (want_action, want_category)) in
        targets.iter().zip(&found).zip(expected)
    {
        assert_eq!(action, want_action, "{target}");
        assert_eq!(category, want_category, "{target}");
    }
}

#[test]
fn built_list_decides_as_sources_do() {
    let fixture = Fixture::new();
    let (output, _) = build(&fixture);
    assert!(output.status.success(), "{}", stderr(&output));
    let built = vec![fixture.output_path().display().to_string()];
    let from_built = verdicts(&built, true, &TARGETS);
    let from_sources = verdicts(&fixture.source_lists(), false, &TARGETS);
    for ((target, built), sources) in TARGETS.iter().zip(&from_built).zip(&from_sources) {
        assert_eq!(built, sources, "{target}");
    }
}

#[test]
fn report_counts_each_source() {
    let fixture = Fixture::new();
    let (output, _) = build(&fixture);
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);

    // rows, invalid, local, duplicate, covered, written
    let expected: [(&str, [usize; 6]); 6] = [
        ("gambling/domains", [5, 0, 0, 0, 1, 4]),
        ("games/domains", [4, 0, 0, 1, 1, 2]),
        ("malware/domains", [2, 2, 0, 0, 0, 2]),
        ("hosts.txt", [7, 1, 4, 1, 2, 4]),
        ("trackers.txt", [3, 0, 0, 0, 1, 2]),
        ("allow.txt", [1, 0, 0, 0, 0, 1]),
    ];
    for (source, counts) in expected {
        let line = err
            .lines()
            .find(|line| line.ends_with(source))
            .unwrap_or_else(|| panic!("no report line for {source} in:\n{err}"));
        let numbers: Vec<usize> = line
            .split_whitespace()
            .take(6)
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(numbers, counts, "{line}");
    }
    let total = err.lines().find(|l| l.ends_with("total")).unwrap();
    assert!(total.trim_start().starts_with("22 "), "{total}");
    assert!(
        err.contains("category conflicts: 7 (1 duplicate and 3 covered"),
        "{err}"
    );
    assert!(err.contains("3 row(s) kept their own category"), "{err}");
    assert!(
        err.contains("skipped 1 `urls` file(s) with 2 line(s)"),
        "{err}"
    );
    assert!(
        err.contains("skipped 1 other file(s) in category folders: expressions"),
        "{err}"
    );
    assert!(err.contains("wrote 15 row(s) to "), "{err}");
    for (category, count) in [("gambling", 4), ("games", 2), ("Ads", 4), ("Company", 1)] {
        let line = err
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{category} ")))
            .unwrap_or_else(|| panic!("no count for {category} in:\n{err}"));
        assert!(line.ends_with(&format!(" {count}")), "{line}");
    }
}

#[test]
fn invalid_lines_are_warnings_with_file_and_line() {
    let fixture = Fixture::new();
    let (output, _) = build(&fixture);
    assert!(output.status.success(), "{}", stderr(&output));
    let err = stderr(&output);
    let malware = format!("{}/malware/domains", fixture.ut1);
    let expected = [
        (&malware, 2, "empty label"),
        (&malware, 3, "found a URL"),
        (&fixture.hosts, 10, "unparsable address \"not-an-address\""),
    ];
    for (file, line, reason) in expected {
        let prefix = format!("warning: {file}:{line}: ");
        let found = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no warning for {file}:{line} in:\n{err}"));
        assert!(found.contains(reason), "{found}");
    }
    let warnings = err.lines().filter(|l| l.starts_with("warning:")).count();
    assert_eq!(warnings, expected.len(), "{err}");
}

#[test]
fn stdout_output_is_deterministic() {
    let fixture = Fixture::new();
    let mut args = fixture.build_args(Path::new("unused"));
    args.truncate(args.len() - 2);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = webwarden(&args);
    let second = webwarden(&args);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(!first.stdout.is_empty());
    assert_eq!(first.stdout, second.stdout);

    let (_, csv) = build(&fixture);
    assert_eq!(String::from_utf8(first.stdout).unwrap(), csv);
}

#[test]
fn source_order_decides_category_conflicts() {
    let fixture = Fixture::new();
    let games = format!("{}/games", fixture.ut1);
    let gambling = format!("{}/gambling", fixture.ut1);
    let output = webwarden(&["list", "build", &games, &gambling]);
    assert!(output.status.success(), "{}", stderr(&output));
    let csv = String::from_utf8(output.stdout).unwrap();
    assert!(rows(&csv).contains(&"(.*\\.)?bet365\\.com,games"), "{csv}");
    // play.casino.example came first, with another category, so it stays
    // ahead of casino.example.
    let built = rows(&csv);
    let play = built.iter().position(|r| r.contains("play\\.casino"));
    let casino = built.iter().position(|r| r.starts_with("(.*\\.)?casino"));
    assert!(play.is_some(), "{csv}");
    assert!(play < casino, "{csv}");
}

#[test]
fn default_category_applies_to_plain_paths() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_file(dir.path(), "list.txt", "a.example\nb.a.example\n");
    let output = webwarden(&["list", "build", &list, "--category", "Ads"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let csv = String::from_utf8(output.stdout).unwrap();
    assert_eq!(rows(&csv), ["(.*\\.)?a\\.example,Ads"]);

    let output = webwarden(&["list", "build", &list]);
    let csv = String::from_utf8(output.stdout).unwrap();
    assert_eq!(rows(&csv), ["(.*\\.)?a\\.example,Uncategorized"]);
}

#[cfg(unix)]
#[test]
fn output_through_symlink_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_file(dir.path(), "list.txt", "a.example\n");
    let target = write_file(dir.path(), "real.csv", "old\n");
    let link = dir.path().join("link.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let link_arg = link.display().to_string();
    let output = webwarden(&["list", "build", &list, "-o", &link_arg]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    let csv = fs::read_to_string(&target).unwrap();
    assert_eq!(rows(&csv), ["(.*\\.)?a\\.example,Uncategorized"]);
}

#[test]
fn bad_inputs_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let csv = write_file(dir.path(), "rules.csv", ".*a\\.com,Ads\n");
    let urls = write_file(dir.path(), "urls.txt", "a.example/x\nb.example/y\n");
    let good = write_file(dir.path(), "good.txt", "a.example\n");
    fs::create_dir_all(dir.path().join("empty")).unwrap();
    let cases = [
        (
            vec![format!("{root}/missing.txt")],
            format!("failed to read source {root}/missing.txt"),
        ),
        (
            vec![format!("path={root}/x,format=xml")],
            "invalid list format \"xml\"".to_owned(),
        ),
        (vec![csv.clone()], format!("{csv} looks like a CSV list")),
        (
            vec![format!("path={csv},format=csv")],
            "format=csv is not a build input".to_owned(),
        ),
        (
            vec![format!("{root}/empty")],
            format!("the folder {root}/empty contains no `domains` file"),
        ),
        (
            vec![urls.clone()],
            format!("source {urls} has no usable rows"),
        ),
        (
            vec![
                good.clone(),
                "--output".to_owned(),
                format!("{root}/no/such/dir/out.csv"),
            ],
            format!("failed to create {root}/no/such/dir/out.csv"),
        ),
        (vec![], "no sources to build from".to_owned()),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["list", "build"];
        args.extend(extra.iter().map(String::as_str));
        let output = webwarden(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            stderr(&output)
        );
        let err = stderr(&output);
        assert!(err.contains(&expected), "{extra:?}: {err}");
        assert!(output.stdout.is_empty(), "{extra:?}");
    }
    let output = webwarden(&["list", "build", &urls]);
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "error: {urls}:1: expected a domain but found a URL"
        )),
        "{err}"
    );
}

#[test]
fn failed_build_keeps_old_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = write_file(dir.path(), "out.csv", "(.*\\.)?old\\.example,Ads\n");
    let missing = format!("{}/missing.txt", dir.path().display());
    let output = webwarden(&["list", "build", &missing, "-o", &out]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "(.*\\.)?old\\.example,Ads\n"
    );
    let leftovers = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(leftovers, 1);
}
