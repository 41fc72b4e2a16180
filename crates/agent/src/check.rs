//! `webwarden check`: one JSON verdict per target, from the arguments or
//! from standard input, one target per line.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use webwarden_policy::{Policy, Target};

use crate::{lists, CliError, ListArgs};

/// Arguments of `webwarden check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    lists: ListArgs,
    /// URLs, hosts, host:port pairs or IP addresses. Without any, targets
    /// are read from standard input, one per line.
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,
}

/// One output line. Fields that do not apply are null.
#[derive(Debug, Default, Serialize)]
struct CheckOutput<'a> {
    input: &'a str,
    host: Option<&'a str>,
    ip: Option<String>,
    port: Option<u16>,
    action: Option<&'static str>,
    category: Option<&'a str>,
    rule: Option<&'a str>,
    source: Option<&'a str>,
    line: Option<u32>,
    matched_on: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs the command. Exits with 2 when any target was invalid, after
/// printing every verdict.
pub fn run(args: &CheckArgs) -> Result<ExitCode, CliError> {
    let policy = lists::load(&args.lists.lists, args.lists.strict)?;
    lists::print_bad_rows(policy.bad_rows(), policy.bad_row_count(), "warning");
    let mut out = io::stdout().lock();
    let mut invalid = 0usize;
    if args.targets.is_empty() {
        // Lines are read as bytes so that one line of invalid UTF-8 becomes
        // an invalid target instead of ending the run.
        for line in io::stdin().lock().split(b'\n') {
            let line = String::from_utf8_lossy(&line?).into_owned();
            let input = line.trim();
            if input.is_empty() || input.starts_with('#') {
                continue;
            }
            invalid += usize::from(!write_verdict(&mut out, &policy, input)?);
        }
    } else {
        for input in &args.targets {
            invalid += usize::from(!write_verdict(&mut out, &policy, input)?);
        }
    }
    out.flush()?;
    if invalid > 0 {
        eprintln!("error: {invalid} target(s) were invalid; see the \"error\" fields");
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one verdict line; returns whether the target was valid.
fn write_verdict(out: &mut impl Write, policy: &Policy, input: &str) -> Result<bool, CliError> {
    let target = match Target::parse(input) {
        Ok(target) => target,
        Err(err) => {
            let output = CheckOutput {
                input,
                error: Some(err.to_string()),
                ..CheckOutput::default()
            };
            write_line(out, &output)?;
            return Ok(false);
        }
    };
    let verdict = policy.evaluate(&target);
    let rule = verdict.rule;
    let output = CheckOutput {
        input,
        host: Some(target.host().as_str()),
        ip: target.ip().map(|ip| ip.to_string()),
        port: target.port(),
        action: Some(verdict.action.as_str()),
        category: rule.map(|r| r.category),
        rule: rule.map(|r| r.rule),
        source: rule.map(|r| r.source),
        line: rule.map(|r| r.line),
        matched_on: rule.map(|r| r.matched_on.as_str()),
        error: None,
    };
    write_line(out, &output)?;
    Ok(true)
}

fn write_line(out: &mut impl Write, output: &CheckOutput<'_>) -> Result<(), CliError> {
    serde_json::to_writer(&mut *out, output).map_err(|err| CliError::Failed(err.into()))?;
    out.write_all(b"\n")?;
    Ok(())
}
