//! Runs the `webwarden` binary as a user would and checks its output and
//! exit status.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const DEFAULT_LIST: &str = include_str!("../../../blacklist.csv");

fn webwarden(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webwarden"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("webwarden starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each output line is JSON"))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Returns the 1-based line of the first default-list row that starts with `prefix`.
fn default_list_line(prefix: &str) -> u64 {
    let index = DEFAULT_LIST
        .lines()
        .position(|line| line.starts_with(prefix))
        .expect("row is in the default list");
    index as u64 + 1
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn check_uses_default_list() {
    let output = webwarden(&["check", "https://www.4399.com/game", "example.org"], "");
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2);

    let blocked = &lines[0];
    assert_eq!(blocked["input"], "https://www.4399.com/game");
    assert_eq!(blocked["host"], "www.4399.com");
    assert_eq!(blocked["port"], 443);
    assert_eq!(blocked["action"], "block");
    assert_eq!(blocked["category"], "Entertainment");
    assert_eq!(blocked["rule"], ".*4399\\.com");
    assert_eq!(blocked["source"], "blacklist.csv (built-in)");
    assert_eq!(blocked["line"], default_list_line(".*4399\\.com,"));
    assert_eq!(blocked["matched_on"], "host");

    let allowed = &lines[1];
    assert_eq!(allowed["action"], "allow");
    for field in ["category", "rule", "source", "line", "matched_on"] {
        assert!(allowed[field].is_null(), "{field} should be null");
    }
}

#[test]
fn check_reads_targets_from_stdin() {
    let output = webwarden(
        &["check"],
        "www.hacker.com\n\n# comment\n203.0.113.66:443\n",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["category"], "Malicious Host");
    assert_eq!(lines[1]["ip"], "203.0.113.66");
    assert_eq!(lines[1]["matched_on"], "ip");
}

#[test]
fn invalid_target_exits_2_after_all_verdicts() {
    let output = webwarden(&["check", "bad host", "pastebin.com", "[::1"], "");
    assert_eq!(output.status.code(), Some(2));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["error"]
        .as_str()
        .unwrap()
        .contains("not allowed in a host name"));
    assert!(lines[0]["action"].is_null());
    assert_eq!(lines[1]["action"], "block");
    assert!(lines[2]["error"].as_str().unwrap().contains("IPv6"));
    assert!(stderr(&output).contains("2 target(s) were invalid"));
}

#[test]
fn missing_list_file_exits_2_with_path() {
    let output = webwarden(&["check", "--list", "/nonexistent/list.csv", "x.com"], "");
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("failed to read list /nonexistent/list.csv"),
        "{err}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn bad_rows_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_file(
        dir.path(),
        "rules.csv",
        b"# header comment\n(open,Gambling\n.*x\\.com,\n.*y\\.com,Adult,deny\n\
          ,Adult\n\"a,b,Adult\n.*bu\xcc\x88[a-z]+\\.de,IDN\na,b,c,d\n.*ok\\.example,Fine\n\
          .*\xff\\.com,Bytes\n",
    );
    let hosts = write_file(
        dir.path(),
        "hosts.txt",
        b"0.0.0.0 good.example\n999.1.1.1 bad-address.example\n0.0.0.0 exa..mple.com\n0.0.0.0\n",
    );
    let domains = write_file(dir.path(), "domains.txt", b"good.example\nbad domain\n");
    let ips = write_file(dir.path(), "ips.netset", b"192.0.2.0/24\n192.0.2.0/33\n");
    let ips_spec = format!("path={ips},format=ips");
    let hosts_spec = format!("path={hosts},format=hosts");
    let args = [
        "check",
        "--list",
        &csv,
        "--list",
        &hosts_spec,
        "--list",
        &domains,
        "--list",
        &ips_spec,
        "ok.example",
    ];
    let output = webwarden(&args, "");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json_lines(&output)[0]["category"], "Fine");

    let err = stderr(&output);
    let expected = [
        (&csv, 2, "invalid regex: unclosed group"),
        (&csv, 3, "empty category"),
        (&csv, 4, "invalid action \"deny\""),
        (&csv, 5, "empty regex"),
        (&csv, 6, "unbalanced double quote"),
        (&csv, 7, "non-ASCII"),
        (&csv, 8, "expected at most 3 columns"),
        (&csv, 10, "not valid UTF-8"),
        (&hosts, 2, "unparsable address \"999.1.1.1\""),
        (&hosts, 3, "empty label"),
        (&hosts, 4, "missing host name"),
        (&domains, 2, "expected one domain per line"),
        (&ips, 2, "unparsable address \"192.0.2.0/33\""),
    ];
    for (file, line, reason) in expected {
        let prefix = format!("warning: {file}:{line}: ");
        let found = err
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no warning for {file}:{line} in:\n{err}"));
        assert!(found.contains(reason), "{found}");
    }
    assert_eq!(err.lines().count(), expected.len(), "{err}");
}

#[test]
fn strict_mode_rejects_list_with_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_file(
        dir.path(),
        "rules.csv",
        b".*good\\.example,Fine\n(bad,Broken\n",
    );
    let output = webwarden(&["check", "--strict", "--list", &csv, "good.example"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let err = stderr(&output);
    assert!(
        err.contains(&format!("error: {csv}:2: invalid regex")),
        "{err}"
    );
    assert!(err.contains("1 bad row(s) in strict mode"), "{err}");

    let lenient = webwarden(&["check", "--list", &csv, "good.example"], "");
    assert!(lenient.status.success());
    assert_eq!(json_lines(&lenient)[0]["action"], "block");
}

#[test]
fn list_options_set_format_and_category() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_file(dir.path(), "casino", b"casino.example\n");
    let spec = format!("path={list},format=domains,category=Gambling");
    let output = webwarden(&["check", "--list", &spec, "www.casino.example"], "");
    assert!(output.status.success(), "{}", stderr(&output));
    let verdict = &json_lines(&output)[0];
    assert_eq!(verdict["category"], "Gambling");
    assert_eq!(verdict["line"], 1);

    let bad = webwarden(&["check", "--list", "path=x,format=xml", "a.com"], "");
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("invalid list format \"xml\""));
}

#[test]
fn list_stats_counts_rules_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_file(
        dir.path(),
        "mixed.csv",
        b"a\\.example,A\n.*b\\.example,B\n(.*\\.)?c\\.example,C\n.*casino.*,D\n\
          ad[0-9]+\\.example,E\n192.0.2.0/24,F\n(bad,G\na\\.example,A\n",
    );
    let output = webwarden(&["list", "stats", "--json", &csv], "");
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let total = &report["total"];
    assert_eq!(total["total"], 7);
    assert_eq!(total["exact"], 2);
    assert_eq!(total["suffix"], 1);
    assert_eq!(total["domain"], 1);
    assert_eq!(total["contains"], 1);
    assert_eq!(total["regex"], 1);
    assert_eq!(total["ip"], 1);
    assert_eq!(report["bad_row_count"], 1);
    assert_eq!(report["duplicates"], 1);
    assert_eq!(report["categories"][0], serde_json::json!(["A", 2]));
    assert!(report["memory_bytes"].as_i64().unwrap() > 0);

    let text = webwarden(&["list", "stats", &csv], "");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("load time:"), "{text}");
    assert!(text.contains(&format!("{csv}:7: invalid regex")), "{text}");
}

#[test]
fn builtin_list_combines_with_own_list() {
    let dir = tempfile::tempdir().unwrap();
    let allow = write_file(
        dir.path(),
        "allow.csv",
        b"(.*\\.)?pastebin\\.com,Paste and Code Sharing,allow\n",
    );
    let output = webwarden(
        &[
            "check",
            "--list",
            &allow,
            "--list",
            "builtin",
            "pastebin.com",
            "www.4399.com",
        ],
        "",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert_eq!(lines[0]["action"], "allow");
    assert_eq!(lines[0]["source"], allow.as_str());
    assert_eq!(lines[1]["action"], "block");
    assert_eq!(lines[1]["source"], "blacklist.csv (built-in)");
}

#[test]
fn list_without_usable_rows_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = write_file(
        dir.path(),
        "hosts.txt",
        b"0.0.0.0 a.example\n0.0.0.0 b.example\n",
    );
    let spec = format!("path={hosts},format=csv");
    let output = webwarden(&["check", "--list", &spec, "a.example"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let err = stderr(&output);
    assert!(err.contains("looks like a hosts file line"), "{err}");
    assert!(err.contains("has no usable rows"), "{err}");

    let empty = write_file(dir.path(), "empty.txt", b"# nothing yet\n");
    let output = webwarden(&["check", "--list", &empty, "a.example"], "");
    assert!(output.status.success());
    assert!(stderr(&output).contains("contains no rules"));
}

#[test]
fn list_stats_defaults_to_builtin_list() {
    let output = webwarden(&["list", "stats", "--json"], "");
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["sources"][0]["name"], "blacklist.csv (built-in)");
    assert_eq!(report["bad_row_count"], 0);
    assert!(report["total"]["total"].as_u64().unwrap() > 200);
}

#[test]
fn invalid_utf8_on_stdin_is_one_bad_target() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_webwarden"))
        .arg("check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: &[u8] = b"bad\xff.example\npastebin.com\n";
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["error"].is_string());
    assert_eq!(lines[1]["action"], "block");
}

#[test]
fn ca_export_creates_then_reuses_ca() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let first = webwarden(&["ca", "export", "--data-dir", data], "");
    assert!(first.status.success(), "{}", stderr(&first));
    let pem = String::from_utf8(first.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert!(dir.path().join("data/ca.key").exists());

    let second = webwarden(&["ca", "export", "--data-dir", data], "");
    assert_eq!(String::from_utf8(second.stdout).unwrap(), pem);

    std::fs::write(dir.path().join("data/ca.pem"), "garbage").unwrap();
    let broken = webwarden(&["ca", "export", "--data-dir", data], "");
    assert_eq!(broken.status.code(), Some(1));
    let message = stderr(&broken);
    assert!(message.contains("invalid CA certificate"), "{message}");
    assert!(message.contains("data/ca.pem"), "{message}");
}
